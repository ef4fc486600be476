//! The #X device on VT-x under Bochs, or under QEMU on KVM where the host has VT-x
//! (`Machine::vtx`, vmm_tests::emu::vtx; `HV_ACCEL=kvm|bochs` chooses): the hypervisor boots
//! from the GRUB ISO (vmm_tests::emu), serves 9P on COM1, and each test drives guests from
//! vmm-tests/guests through segment/ and vmx/ as a remote vmx(1) would: a segment
//! created, sized and filled over 9P, map and regs written, `go` on ctl, exits read from
//! `wait`. The kernel runs `selftest=vmx` first (VMXON, a real-mode guest, the entry
//! trampoline), which the first test checks in the log.

use ninep_client::{om, Client};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::fixtures::pingpong::{self, map_all, VmFiles, FLAT32};
use vmm_tests::guests;

const OWNER: &str = "eve";
/// The owner's secret where tests reach the kernel over TCP (an e1000 on Bochs's slirp).
const SECRET: &str = "opensesame";

/// The booted hypervisor and a 9P client attached to its root over COM1 or TCP.
struct Hv {
    c: Client,
    m: Machine,
    /// CPUs in the machine: with more than one, every VM must run on another CPU.
    cpus: u32,
}

impl Hv {
    /// On `HV_CPUS` CPUs (1 unless set).
    fn boot() -> Hv {
        Hv::boot_on(Opts::default().cpus)
    }

    fn boot_on(cpus: u32) -> Hv {
        let m = Machine::vtx(Opts {
            cmdline: format!("owner={OWNER} serve=uart selftest=vmx"),
            virtio_ports: 0,
            cpus,
            ..Opts::default()
        });
        let c = m.client(OWNER, "");
        c.set_timeout(Some(Duration::from_secs(120)));
        let hv = Hv { c, m, cpus };
        assert_eq!(
            field(&hv.status(), "cpus"),
            u64::from(cpus),
            "{}",
            hv.status()
        );
        hv
    }

    /// The same over TCP: the owner presents the secret in the attach name.
    fn boot_tcp() -> Hv {
        let m = Machine::vtx(Opts {
            cmdline: format!("owner={OWNER} secret={SECRET} serve=uart,net selftest=vmx"),
            virtio_ports: 0,
            nic: Some(Nic::E1000),
            ..Opts::default()
        });
        let c = m.tcp_client(OWNER, &format!("!{SECRET}"));
        c.set_timeout(Some(Duration::from_secs(120)));
        Hv {
            c,
            m,
            cpus: Opts::default().cpus,
        }
    }

    /// A segment named `name` holding `image` (pingpong::segment).
    fn segment(&self, name: &str, image: &[u8]) {
        pingpong::segment(&self.c, name, image);
    }

    /// A new VM (vmx/clone opened ORDWR|ORCLOSE, as vmx(1) does).
    fn vm(&self) -> Vm {
        let vm = vm_on(&self.c);
        if self.cpus > 1 {
            assert_ne!(placed(self, &vm.n), 0, "vm {} on the boot CPU", vm.n);
        }
        vm
    }

    fn status(&self) -> String {
        vmm_tests::status::read(&self.c)
    }

    fn memfree(&self) -> u64 {
        field(&self.status(), "memfree")
    }

    /// Waits until `status` shows no VM and no segment; returns it.
    fn await_empty(&self) -> String {
        let start = Instant::now();
        loop {
            let st = self.status();
            if st.contains("vms 0") && st.contains("segments 0") {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "left: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A new VM made through client `c`.
fn vm_on(c: &Client) -> Vm {
    Vm {
        c: c.clone(),
        f: VmFiles::clone(c),
    }
}

/// A `key value` line's value from a status or regs text.
use vmm_tests::status::num as field;

/// A wait line: its first word and `key value` pairs.
#[derive(Debug)]
struct Exit {
    line: String,
    what: String,
    qual: u64,
}

impl Exit {
    fn parse(line: &str) -> Exit {
        let mut w = line.split_whitespace();
        let what = w.next().unwrap_or("").to_string();
        let qual = w
            .next()
            .and_then(|q| u64::from_str_radix(q.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        Exit {
            line: line.to_string(),
            what,
            qual,
        }
    }

    fn get(&self, key: &str) -> u64 {
        let f: Vec<&str> = self.line.split_whitespace().collect();
        let i = f
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.line));
        u64::from_str_radix(f[i + 1].trim_start_matches("0x"), 16).unwrap()
    }

    fn pc(&self) -> u64 {
        self.get("pc")
    }

    /// The pc after the exiting instruction.
    fn next(&self) -> u64 {
        self.get("pc") + self.get("ilen")
    }
}

/// A VM's files (its number, ctl, wait: `vm.n`, `vm.cmd`) and the client to open more.
struct Vm {
    c: Client,
    f: VmFiles,
}

impl std::ops::Deref for Vm {
    type Target = VmFiles;
    fn deref(&self) -> &VmFiles {
        &self.f
    }
}

impl Vm {
    fn path(&self, f: &str) -> String {
        format!("vmx/{}/{f}", self.n)
    }

    /// Adds ranges to the map (no OTRUNC).
    fn map_add(&self, lines: &str) {
        let m = self.c.open(&self.path("map"), om::WRITE).unwrap();
        m.write_str(lines)
            .unwrap_or_else(|e| panic!("map {lines:?}: {e}"));
    }

    fn map(&self, lines: &str) {
        let m = self
            .c
            .open(&self.path("map"), om::WRITE | om::TRUNC)
            .unwrap();
        m.write_str(lines)
            .unwrap_or_else(|e| panic!("map {lines:?}: {e}"));
    }

    fn regs(&self, lines: &str) {
        let r = self.c.open(&self.path("regs"), om::RDWR).unwrap();
        for l in lines.lines() {
            r.write_str(&format!("{l}\n"))
                .unwrap_or_else(|e| panic!("regs {l:?}: {e}"));
        }
    }

    fn reg(&self, name: &str) -> u64 {
        field(
            &String::from_utf8(self.c.read_file(&self.path("regs")).unwrap()).unwrap(),
            name,
        )
    }

    fn status(&self) -> String {
        String::from_utf8(self.c.read_file(&self.path("status")).unwrap())
            .unwrap()
            .trim()
            .to_string()
    }

    /// The next wait line.
    fn wait(&self) -> Exit {
        let s = self.wait_line();
        eprintln!("vm {}: {s}", self.n);
        Exit::parse(&s)
    }

    /// `go` with `name=value;` assignments (each ends in ';', as vmx(1) writes them),
    /// then the next exit.
    fn go(&self, assign: &str) -> Exit {
        if assign.is_empty() {
            self.cmd("go");
        } else {
            self.cmd(&format!("go {assign};"));
        }
        self.wait()
    }

    /// Runs on past an exit: pc after its instruction.
    fn skip(&self, e: &Exit) -> Exit {
        self.go(&format!("pc={:#x}", e.next()))
    }
}

#[test]
fn selftest_and_realmode_exits() {
    selftest_and_realmode_exits_on(Hv::boot());
}

#[test]
fn selftest_and_realmode_exits_over_tcp() {
    selftest_and_realmode_exits_on(Hv::boot_tcp());
}

fn selftest_and_realmode_exits_on(hv: Hv) {
    let log = hv.m.log();
    for line in [
        "vmx selftest: exit 0x1e qual 0x800040 ax 0x5a",
        "vmx selftest: exit 0xc rip 0x2",
        "vmx selftest: IF=0 spin: exit 0x34 rip 0x3",
        "vmx selftest: vmresume of a clear VMCS failed cleanly",
        "vmx selftest: ok",
    ] {
        assert!(log.contains(line), "no {line:?} in the kernel log:\n{log}");
    }
    assert!(log.contains("external-interrupt exits, ticks"), "{log}");
    // Bochs's haswell passes every capability check, with what it has and lacks named.
    assert!(
        log.contains(
            "vmx ok: true controls, preemption timer (TSC/2^0), VPID, no monitor trap flag"
        ),
        "{log}"
    );
    assert!(hv.status().contains("vmx ok"), "{}", hv.status());
    hv.segment("rm", guests::REALMODE);
    let vm = hv.vm();
    vm.map(&map_all("rm"));
    // Real mode: PE off, 16-bit segments with base 0 and 64 KiB limits.
    vm.regs(
        "cr0real 0x10\ncs 0x0\ncsbase 0x0\ncslimit 0xffff\ncsperm 0x9b\n\
         ds 0x0\ndsbase 0x0\ndslimit 0xffff\ndsperm 0x93\nes 0x0\nesbase 0x0\neslimit 0xffff\nesperm 0x93\n\
         ss 0x0\nssbase 0x0\nsslimit 0xffff\nssperm 0x93\npc 0x1000\nsp 0x7000\nflags 0x2\n",
    );
    let e = vm.go("");
    assert_eq!(e.what, "io", "{e:?}");
    // out imm8: port 0x80 in bits 31:16, immediate operand (bit 6), 1 byte, out.
    assert_eq!(e.qual, 0x80_0040, "{e:?}");
    assert_eq!(e.get("ax") & 0xffff, 0x1234, "{e:?}");
    assert_eq!(e.pc(), 0x1003, "{e:?}");
    let e = vm.skip(&e);
    assert_eq!(
        (e.what.as_str(), e.qual),
        ("io", 0x81_0048),
        "in al, 0x81: {e:?}"
    );
    // The client answers the in with al = 0x77.
    let e = vm.go(&format!("pc={:#x};ax=0x77", e.next()));
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x82_0040), "{e:?}");
    assert_eq!(e.get("ax") & 0xff, 0x77, "{e:?}");
    let e = vm.skip(&e);
    assert_eq!(e.what, ".cpuid", "{e:?}");
    let e = vm.skip(&e);
    assert_eq!(e.what, ".rdmsr", "{e:?}");
    assert_eq!(vm.reg("cx"), 0x3a);
    let e = vm.skip(&e);
    assert_eq!(e.what, ".wrmsr", "{e:?}");
    let e = vm.skip(&e);
    // mov cr0, eax flipping NE, a bit the host owns: movcr of cr0 from eax.
    assert_eq!((e.what.as_str(), e.qual), ("movcr", 0), "{e:?}");
    // mov cr4 setting OSXSAVE does not exit (the host runs with it), xsetbv does.
    let e = vm.skip(&e);
    assert_eq!(e.what, ".xsetbv", "{e:?}");
    assert_eq!(vm.reg("ax"), 3);
    let e = vm.skip(&e);
    assert_eq!(e.what, ".hlt", "{e:?}");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    assert_eq!(vm.status(), "ready");
}

/// A VM running `image` from segment `seg` in flat 32-bit protected mode.
fn flat32(hv: &Hv, seg: &str, image: &[u8]) -> Vm {
    hv.segment(seg, image);
    let vm = hv.vm();
    vm.map(&map_all(seg));
    vm.regs(FLAT32);
    vm
}

#[test]
fn ept_faults() {
    ept_faults_on(Hv::boot());
}

#[test]
fn ept_faults_over_tcp() {
    ept_faults_on(Hv::boot_tcp());
}

fn ept_faults_on(hv: Hv) {
    hv.segment("mem", guests::MEMORY);
    let vm = hv.vm();
    vm.map("rwx wb 0x0 0x10000 mem 0x0\nr-x wb 0x10000 0x11000 mem 0x10000\n");
    vm.regs(FLAT32);
    // mov eax, [0x200000]: nothing is mapped there.
    let e = vm.go("");
    assert_eq!(e.what, "eptfault", "{e:?}");
    assert_eq!(e.get("pa"), 0x20_0000, "{e:?}");
    assert_eq!(e.pc(), 0x1000, "{e:?}");
    assert_eq!(e.qual & 7, 1, "a data read: {e:?}");
    assert_eq!(e.qual & 0x38, 0, "nothing mapped: {e:?}");
    // Map the page (from the segment's offset 0x20000, holding 0x5a5a5a5a) and retry.
    let data = hv.c.open("segment/mem/data", om::RDWR).unwrap();
    data.write_all_at(0x20000, &0x5a5a_5a5au32.to_le_bytes())
        .unwrap();
    vm.map_add("rw- wb 0x200000 0x201000 mem 0x20000\n");
    let e = vm.go("pc=0x1000");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
    assert_eq!(e.get("ax"), 0x5a5a_5a5a, "{e:?}");
    // mov byte [0x10010], 1: a write to the r-x range.
    let e = vm.skip(&e);
    assert_eq!(e.what, "eptfault", "{e:?}");
    assert_eq!(e.get("pa"), 0x10010, "{e:?}");
    assert_eq!(e.get("va"), 0x10010, "{e:?}");
    assert_eq!(e.qual & 7, 2, "a data write: {e:?}");
    assert_eq!(
        e.qual & 0x38,
        0x28,
        "the entry is readable and executable: {e:?}"
    );
    assert_eq!(vm.status(), "ready");
    // The page was not written.
    assert_eq!(data.read_at(0x10010, 1).unwrap(), [0]);
}

#[test]
fn exceptions_and_interrupts() {
    let hv = Hv::boot();
    events(&hv, "ev");
}

/// The events guest from segment `seg`: a trapped int3, an injected #gp, an injected
/// irq 32 and its ack, each handled by the guest. Returns the VM, done.
fn events(hv: &Hv, seg: &str) -> Vm {
    let vm = flat32(hv, seg, guests::EVENTS);
    vm.cmd("extrap 8"); // #BP
    let e = vm.go("");
    assert_eq!(e.what, "#bp", "int3 trapped: {e:?}");
    assert_eq!(e.get("ilen"), 1, "{e:?}");
    // Skip the int3: the next stop is out 0x80, where an injected #gp,0 is due.
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
    vm.cmd("exc #gp,0");
    let e = vm.go(&format!("pc={:#x}", e.next()));
    assert_eq!(
        (e.what.as_str(), e.qual),
        ("io", 0x90_0040),
        "the guest's #gp handler: {e:?}"
    );
    assert_eq!(e.get("ax") & 0xff, 0x0d, "{e:?}");
    let e = vm.skip(&e);
    assert_eq!(
        (e.what.as_str(), e.qual),
        ("io", 0x81_0040),
        "back after iret: {e:?}"
    );
    let e = vm.skip(&e);
    assert_eq!(
        (e.what.as_str(), e.qual),
        ("io", 0x82_0040),
        "after sti: {e:?}"
    );
    vm.cmd("irq 32");
    let e = vm.go(&format!("pc={:#x}", e.next()));
    assert_eq!(e.line, "*ack 32", "{e:?}");
    let e = vm.wait();
    assert_eq!(
        (e.what.as_str(), e.qual),
        ("io", 0x91_0040),
        "the guest's irq handler: {e:?}"
    );
    assert_eq!(e.get("ax") & 0xff, 0x20, "{e:?}");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x83_0040), "{e:?}");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    vm
}

#[test]
fn long_mode_through_regs_and_map() {
    let hv = Hv::boot();
    hv.segment("lm", guests::LONG);
    // Identity map of the first 2 MiB: PML4 at 0x10000, PDPT at 0x11000, PD at 0x12000.
    let data = hv.c.open("segment/lm/data", om::RDWR).unwrap();
    for (at, entry) in [
        (0x10000u64, 0x11003u64),
        (0x11000, 0x12003),
        (0x12000, 0x83),
    ] {
        data.write_all_at(at, &entry.to_le_bytes()).unwrap();
    }
    let vm = hv.vm();
    vm.map(&map_all("lm"));
    vm.regs(
        "cr3 0x10000\ncr4real 0x2020\nefer 0x100\ncr0real 0x80000031\n\
         csperm 0xa09b\npc 0x1000\nsp 0x8000\n",
    );
    assert_eq!(vm.reg("efer") & 0x500, 0x500, "LMA follows LME and PG");
    let e = vm.go("");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
    assert_eq!(e.get("ax"), 0x1122_3344_5566_7788, "{e:?}");
    assert_eq!(vm.reg("bx"), 0x1122_3344);
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x81_0040), "{e:?}");
    assert_eq!(
        e.get("ax"),
        0x1000,
        "rip-relative lea in 64-bit mode: {e:?}"
    );
}

#[test]
fn triple_fault_and_bad_state_leave_the_host_serving() {
    let hv = Hv::boot();
    let good = flat32(&hv, "ok", guests::STEP);
    let bad = flat32(&hv, "tf", guests::TRIPLE);
    let e = bad.go("");
    assert_eq!(e.what, "triplef", "{e:?}");
    // A guest with invalid state: CS not present. The entry fails and is reported.
    let broken = hv.vm();
    broken.map(&map_all("ok"));
    broken.regs("pc 0x1000\ncsperm 0x1b\n");
    let e = broken.go("");
    assert!(e.line.starts_with("!entrystate "), "{e:?}");
    // Others run on.
    let e = good.go("");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
    assert_eq!(e.get("ax"), 3, "{e:?}");
    assert!(hv.status().contains("vms 3"), "{}", hv.status());
    // The broken VM runs once its state is fixed (a failed entry leaves it unlaunched).
    broken.regs("csperm 0xc09b\n");
    let e = broken.go("pc=0x1000");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
}

#[test]
fn two_vms_at_once() {
    two_vms_at_once_on(Hv::boot());
}

#[test]
fn two_vms_at_once_over_tcp() {
    two_vms_at_once_on(Hv::boot_tcp());
}

fn two_vms_at_once_on(hv: Hv) {
    let a = flat32(&hv, "a", guests::STEP);
    let b = flat32(&hv, "b", guests::MEMORY);
    // A wait on a blocks while b is driven (a has not been started yet).
    let c = hv.c.clone();
    let pending = c.start_read(&a.wait, 0, 512).unwrap();
    std::thread::scope(|s| {
        let tb = s.spawn(|| {
            let e = b.go("");
            assert_eq!(
                (e.what.as_str(), e.get("pa")),
                ("eptfault", 0x20_0000),
                "{e:?}"
            );
        });
        tb.join().unwrap();
        a.cmd("go");
        let line = String::from_utf8(pending.wait().unwrap()).unwrap();
        let e = Exit::parse(line.trim_end());
        assert_eq!((e.what.as_str(), e.get("ax")), ("io", 3), "{e:?}");
        // Now both in parallel threads.
        let a = &a;
        let ta = s.spawn(move || {
            let e = a.skip(&e);
            assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
        });
        let b = &b;
        let tb = s.spawn(move || {
            let e = b.go("pc=0x1005");
            assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
            let e = b.skip(&e);
            assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
        });
        ta.join().unwrap();
        tb.join().unwrap();
    });
}

#[test]
fn create_run_quit_cycles_free_everything() {
    create_run_quit_cycles_free_everything_on(Hv::boot());
}

#[test]
fn create_run_quit_cycles_free_everything_over_tcp() {
    create_run_quit_cycles_free_everything_on(Hv::boot_tcp());
}

fn create_run_quit_cycles_free_everything_on(hv: Hv) {
    let before = hv.memfree();
    hv.segment("cy", guests::STEP);
    for i in 0..100 {
        let vm = hv.vm();
        vm.map(&map_all("cy"));
        vm.regs(FLAT32);
        let e = vm.go("");
        assert_eq!(
            (e.what.as_str(), e.get("ax")),
            ("io", 3),
            "cycle {i}: {e:?}"
        );
        if i % 2 == 0 {
            vm.cmd("quit");
        }
        // The ctl fid was opened ORCLOSE: clunking it ends the VM either way.
        drop(vm);
    }
    hv.c.remove("segment/cy").unwrap();
    let after = field(&hv.await_empty(), "memfree");
    assert_eq!(before, after, "memory leaked over 100 VM lifetimes");
}

#[test]
fn spinning_guest_with_interrupts_off_leaves_the_host_serving() {
    let hv = Hv::boot();
    let vm = flat32(&hv, "spin", guests::STEP);
    let e = vm.go("");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    assert_eq!(vm.reg("flags") & 1 << 9, 0, "the guest runs with IF clear");
    // Past the last out the guest spins in `jmp $` with IF clear: no external interrupt
    // exit comes under Bochs, so only the preemption timer gives the host its turns.
    vm.cmd(&format!("go pc={:#x};", e.next()));
    for _ in 0..3 {
        assert_eq!(vm.status(), "running");
        assert!(hv.status().contains("vms 1"), "{}", hv.status());
    }
    let pc = vm.reg("pc");
    assert_eq!(pc, e.next(), "spinning on the jmp");
    vm.cmd("stop");
    assert_eq!(vm.status(), "ready");
    vm.cmd("quit");
}

#[test]
fn fpregs_cross_entries_and_a_bad_mxcsr_is_masked() {
    let hv = Hv::boot();
    let vm = flat32(&hv, "fp", guests::STEP);
    let fp = hv.c.open(&vm.path("fpregs"), om::RDWR).unwrap();
    let init = fp.read_at(0, 512).unwrap();
    assert_eq!(init.len(), 512);
    assert_eq!(&init[0..2], &0x37fu16.to_le_bytes(), "fpinit's FCW");
    assert_eq!(&init[24..28], &0x1f80u32.to_le_bytes(), "fpinit's MXCSR");
    // XMM0 (offset 160) and ST0 (offset 32) go through FXRSTOR and FXSAVE around entries.
    let xmm0: Vec<u8> = (0..16u8).map(|i| 0xa0 + i).collect();
    fp.write_all_at(160, &xmm0).unwrap();
    let st0 = [1u8, 2, 3, 4, 5, 6, 7, 0x80, 0xff, 0x3f];
    fp.write_all_at(32, &st0).unwrap();
    // MXCSR with reserved bit 31 set: FXRSTOR would fault; the kernel masks it instead.
    fp.write_all_at(24, &0x8000_1f80u32.to_le_bytes()).unwrap();
    let e = vm.go("");
    assert_eq!((e.what.as_str(), e.get("ax")), ("io", 3), "{e:?}");
    let after = fp.read_at(0, 512).unwrap();
    assert_eq!(&after[160..176], &xmm0[..], "XMM0 after an entry");
    assert_eq!(&after[32..42], &st0[..], "ST0 after an entry");
    assert_eq!(
        &after[24..28],
        &0x1f80u32.to_le_bytes(),
        "MXCSR reserved bit dropped"
    );
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    assert!(hv.status().contains("vmx ok"));
}

#[test]
fn debug_registers_reach_the_guest() {
    let hv = Hv::boot();
    let vm = flat32(&hv, "dr", guests::STEP);
    // An execution breakpoint (DR0, L0) on the second `inc eax`, at 0x1002.
    vm.regs("ax 0\ndr0 0x1002\ndr7 0x401\n");
    let e = vm.go("");
    assert_eq!(e.what, "#db", "{e:?}");
    assert_eq!(e.pc(), 0x1002, "{e:?}");
    assert_eq!(e.qual & 0xf, 1, "B0: DR0 matched: {e:?}");
    assert_eq!(vm.reg("ax"), 1, "one inc ran before the breakpoint");
    // Breakpoints off: the guest runs on to its out.
    vm.regs("dr7 0x400\n");
    let e = vm.go("");
    assert_eq!((e.what.as_str(), e.get("ax")), ("io", 3), "{e:?}");
}

#[test]
fn step_then_go() {
    step_then_go_on(Hv::boot());
}

#[test]
fn step_then_go_over_tcp() {
    step_then_go_on(Hv::boot_tcp());
}

fn step_then_go_on(hv: Hv) {
    let vm = flat32(&hv, "st", guests::STEP);
    vm.regs("ax 0\n");
    // Bochs's haswell has no monitor trap flag: the step goes by RFLAGS.TF and reads
    // as the MTF exit it stands for.
    vm.cmd("step");
    let e = vm.wait();
    assert_eq!((e.what.as_str(), e.qual), ("monitortrap", 0), "{e:?}");
    assert_eq!(e.pc(), 0x1001, "one nop ran: {e:?}");
    assert_eq!(vm.reg("exitreason"), 37);
    assert_eq!(vm.reg("exitqualification"), 0);
    assert_eq!(vm.reg("ax"), 0);
    // With #DB out of the client's bitmap the step still traps (and the bitmap comes
    // back after it).
    vm.cmd("extrap 0x40000");
    vm.cmd("step");
    let e = vm.wait();
    assert_eq!((e.what.as_str(), e.qual), ("monitortrap", 0), "{e:?}");
    assert_eq!(e.pc(), 0x1002, "one inc ran: {e:?}");
    assert_eq!(vm.reg("ax"), 1);
    assert_eq!(vm.reg("flags") & 0x100, 0, "no TF left in the guest");
    assert_eq!(vm.reg("exitreason"), 37);
    // go runs freely: two more incs, then the out (not a monitortrap).
    let e = vm.go("");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x80_0040), "{e:?}");
    assert_eq!((e.pc(), e.get("ax")), (0x1004, 3), "{e:?}");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    assert_eq!(vm.status(), "ready");
    assert!(hv.status().contains("vmx ok"));
}

/// In-kernel devices (the `devices` extension) under a guest that takes the PIT at its
/// fastest rate for 1000 interrupts, probes COM2 (`com2`, unconnected) and then writes
/// COM1 forever: no exit but its marker
/// reaches the client, the host keeps serving 9P, the console carries the bytes, the
/// message is refused while the guest runs, and nothing is left after the VM.
#[test]
fn in_kernel_devices_under_a_hammering_guest() {
    let hv = Hv::boot();
    let before = hv.memfree();
    let vm = flat32(&hv, "hammer", guests::HAMMER);
    for (bad, why) in [
        ("devices pic vga", "unknown device vga"),
        ("devices pic pic", "device pic named twice"),
        ("devices pit", "pit, uart, com2 and kbd need the pic"),
    ] {
        let e = vm.ctl.write_str(bad).expect_err(bad);
        assert_eq!(e.remote(), Some(why), "{bad}");
    }
    vm.cmd("devices pic pit uart quiet com2");
    // The first exit is the marker: COM2's probe and its byte stayed in the kernel.
    let e = vm.go("");
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x99_0040), "{e:?}");
    vm.cmd(&format!("go pc={:#x};", e.next()));
    let e = vm
        .ctl
        .write_str("devices rtc")
        .expect_err("devices while running");
    assert_eq!(e.remote(), Some("VM running"));
    let cons = hv.c.open(&vm.path("cons"), om::RDWR).unwrap();
    let mut got = 0u64;
    let start = Instant::now();
    while got < 100_000 {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{got} bytes on the console"
        );
        assert_eq!(vm.status(), "running");
        assert!(hv.status().contains("\ninkernel io "), "{}", hv.status());
        let b = cons.read_at(0, 8192).expect("read cons");
        assert!(b.iter().all(|&c| c == b'h'), "{b:?}");
        got += b.len() as u64;
    }
    vm.cmd("stop");
    let data = hv.c.open("segment/hammer/data", om::READ).unwrap();
    let counters = data.read_at(guests::HAMMER_TICKS, 8).unwrap();
    let ticks = u32::from_le_bytes(counters[..4].try_into().unwrap());
    let bytes = u32::from_le_bytes(counters[4..].try_into().unwrap());
    assert_eq!(ticks, 1000, "timer interrupts taken");
    assert!(u64::from(bytes) >= got, "{bytes} written, {got} read");
    // COM2 read back its IER and scratch register as written.
    let com2 = data.read_at(guests::HAMMER_COM2, 2).unwrap();
    assert_eq!(com2, [0x0f, 0x5a], "COM2's IER and scratch register");
    vm.cmd("quit");
    drop((cons, data, vm));
    hv.c.remove("segment/hammer").unwrap();
    let st = hv.status();
    assert!(st.contains("vms 0") && st.contains("segments 0"), "{st}");
    assert_eq!(field(&st, "memfree"), before, "memory left behind: {st}");
}

/// The counter of the count guest in segment `seg`.
fn counter(hv: &Hv, seg: &str) -> u32 {
    let data = hv.c.open(&format!("segment/{seg}/data"), om::READ).unwrap();
    let b = data.read_at(guests::COUNTER, 4).unwrap();
    u32::from_le_bytes(b.try_into().unwrap())
}

/// The CPU the root status places VM `n` on (`vm N cpu C` lines).
fn placed(hv: &Hv, n: &str) -> u64 {
    let st = hv.status();
    let line = st
        .lines()
        .find(|l| l.starts_with(&format!("vm {n} cpu ")))
        .unwrap_or_else(|| panic!("vm {n} not placed in {st:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn two_cpus_guests_spin_on_the_other_cpu_while_9p_is_served() {
    let hv = Hv::boot_on(2);
    assert_eq!(field(&hv.status(), "cpus"), 2, "{}", hv.status());
    let a = flat32(&hv, "ca", guests::COUNT);
    let b = flat32(&hv, "cb", guests::COUNT);
    a.cmd("go");
    b.cmd("go");
    assert_eq!((placed(&hv, &a.n), placed(&hv, &b.n)), (1, 1));
    let (a0, b0) = (counter(&hv, "ca"), counter(&hv, "cb"));
    // 9P round trips go on while both spin with interrupts off on cpu 1.
    for _ in 0..20 {
        assert!(hv.status().contains("vms 2"));
    }
    let (a1, b1) = (counter(&hv, "ca"), counter(&hv, "cb"));
    assert!(a1 != a0 && b1 != b0, "a {a0}->{a1}, b {b0}->{b1}");
    assert_eq!(
        (a.status(), b.status()),
        ("running".into(), "running".into())
    );
    // stop reaches cpu 1: the guest is ready at once and its counter stands still.
    a.cmd("stop");
    assert_eq!(a.status(), "ready");
    let a2 = counter(&hv, "ca");
    for _ in 0..5 {
        assert!(hv.status().contains("vms 2"));
    }
    assert_eq!(counter(&hv, "ca"), a2, "a stopped guest ran on");
    assert_ne!(counter(&hv, "cb"), b1, "b stopped with a");
    // Exceptions and irq reach a third guest there while b spins.
    let ev = events(&hv, "ev");
    assert_eq!(placed(&hv, &ev.n), 1);
    b.cmd("stop");
    assert_eq!(b.status(), "ready");
}

#[test]
fn lifetimes_spread_over_three_aps_leak_nothing() {
    let hv = Hv::boot_on(4);
    let before = hv.memfree();
    hv.segment("sp", guests::STEP);
    let mut live: std::collections::VecDeque<Vm> = Default::default();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..100 {
        // Three alive at once: each new VM goes to the AP with the fewest.
        if live.len() == 3 {
            let old = live.pop_front().unwrap();
            if i % 2 == 0 {
                old.cmd("quit");
            }
            drop(old);
        }
        let vm = hv.vm();
        seen.insert(placed(&hv, &vm.n));
        vm.map(&map_all("sp"));
        vm.regs(FLAT32);
        let e = vm.go("");
        assert_eq!((e.what.as_str(), e.get("ax")), ("io", 3), "{i}: {e:?}");
        live.push_back(vm);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    drop(live);
    hv.c.remove("segment/sp").unwrap();
    let after = field(&hv.await_empty(), "memfree");
    assert_eq!(
        before, after,
        "memory leaked over 100 VM lifetimes on 3 APs"
    );
}

/// A client killed while its `wait` is pending (its VM made ORCLOSE, running a guest that
/// spins): the connection's end clunks its fids, the VM ends, and no memory stays behind.
#[test]
fn a_client_killed_mid_wait_leaves_no_vm_and_no_memory_over_tcp() {
    let hv = Hv::boot_tcp();
    let before = field(&hv.await_empty(), "memfree");
    hv.segment("k", guests::STEP);
    let stream = hv.m.tcp_raw();
    stream.set_read_timeout(None).unwrap();
    let kill = stream.try_clone().unwrap();
    let c = Client::over(stream, OWNER, &format!("!{SECRET}")).expect("attach with the secret");
    c.set_timeout(Some(Duration::from_secs(120)));
    let vm = vm_on(&c);
    vm.map(&map_all("k"));
    vm.regs(FLAT32);
    let e = vm.go("");
    let e = vm.skip(&e);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    // Past its last out the guest spins: the wait stays pending.
    vm.cmd(&format!("go pc={:#x};", e.next()));
    let pending = c.start_read(&vm.wait, 0, 512).unwrap();
    let n = vm.n.clone();
    let st = String::from_utf8(hv.c.read_file(&format!("vmx/{n}/status")).unwrap()).unwrap();
    assert_eq!(st.trim(), "running");
    kill.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(
        pending.wait().is_err(),
        "the killed client's wait was answered"
    );
    drop(vm);
    drop(c);
    let start = Instant::now();
    while hv.status().lines().any(|l| l == "vms 1") {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", hv.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    hv.c.remove("segment/k").unwrap();
    let after = hv.await_empty();
    assert_eq!(
        field(&after, "memfree"),
        before,
        "memory left behind: {after}"
    );
    assert!(hv.m.log().contains(": closed (session"), "{}", hv.m.log());
}

/// Over the network the owner is whoever holds the secret: without it no owner-only
/// action works, whatever the uname; with it, the owner's VM works over TCP.
#[test]
fn owner_only_actions_need_the_secret_over_tcp() {
    let hv = Hv::boot_tcp();
    hv.segment("s", guests::STEP);
    let vm = hv.vm();
    vm.map(&map_all("s"));
    vm.regs(FLAT32);
    let e = vm.go("");
    assert_eq!(e.what, "io", "{e:?}");
    let dir = format!("vmx/{}", vm.n);
    for aname in ["", "vmx", "!wrong", "!", "segment!opensesam"] {
        let e =
            hv.m.try_tcp_client(OWNER, aname)
                .err()
                .unwrap_or_else(|| panic!("the owner attached with aname {aname:?}"));
        assert!(
            e.contains("owner must present the secret"),
            "{aname:?}: {e}"
        );
    }
    // An ordinary user, with or without the secret: reads what others may, no more.
    for aname in [String::new(), format!("!{SECRET}")] {
        let g = hv.m.tcp_client("glenda", &aname);
        assert!(String::from_utf8(g.read_file("status").unwrap())
            .unwrap()
            .contains("vms 1"));
        let denied = |what: &str, r: Result<(), ninep_client::Error>| {
            let e = r.err().unwrap_or_else(|| panic!("glenda could {what}"));
            assert_eq!(e.remote(), Some("permission denied"), "{what}: {e}");
        };
        denied("open clone", g.open("vmx/clone", om::RDWR).map(drop));
        for f in ["ctl", "regs", "map", "fpregs"] {
            denied(
                &format!("write {f}"),
                g.open(&format!("{dir}/{f}"), om::WRITE).map(drop),
            );
        }
        denied("remove the VM", g.remove(&dir));
        denied(
            "write segment data",
            g.open("segment/s/data", om::WRITE).map(drop),
        );
        denied("remove the segment", g.remove("segment/s"));
    }
    // The owner's VM is untouched and goes on.
    let e = vm.skip(&e);
    assert_eq!(e.what, "io", "{e:?}");
    vm.cmd("quit");
    drop(vm);
    hv.c.remove("segment/s").unwrap();
    hv.await_empty();
    assert!(!hv.m.log().contains(SECRET), "the secret reached the log");
}

/// Two guests with in-kernel virtio-net cards (`pci net`) on the kernel's switch (its
/// own, unbridged: no `switch` on the command line), both on the second CPU: one pings
/// the other PINGS times through the switch, polling its rings with interrupts off; the
/// other answers each, halted in the kernel between frames and woken by its card's
/// interrupt through its in-kernel PIC. The client's link carries the `go` and the `wait`
/// read that reports the end, however many pings: no round trip per ping. The cards'
/// ports and memory go with the VMs.
#[test]
fn two_guests_ping_through_the_kernel_switch_with_no_round_trip_per_ping() {
    const PINGS: u32 = 20;
    let hv = Hv::boot_on(2);
    let before = hv.memfree();
    let x = pingpong::exchange(&hv.c, PINGS);
    let (a, b, trips, secs) = (x.a, x.b, x.trips, x.secs);
    let e = Exit::parse(&x.end);
    assert_eq!((e.what.as_str(), e.qual), ("io", 0x8f_0040), "{e:?}");
    assert_eq!(x.done, (PINGS, PINGS));
    eprintln!(
        "{PINGS} pings guest to guest in {secs:.1} s under the emulator: {trips} 9P round \
         trips on the link (the go and the wait), 0 per ping"
    );
    assert_eq!(trips, 2, "round trips beyond the go and the wait");
    assert_eq!((placed(&hv, &a.n), placed(&hv, &b.n)), (1, 1));
    b.cmd("stop");
    a.cmd("quit");
    b.cmd("quit");
    drop((a, b));
    hv.c.remove("segment/pa").unwrap();
    hv.c.remove("segment/pb").unwrap();
    let st = hv.await_empty();
    assert_eq!(field(&st, "memfree"), before, "memory left behind: {st}");
    // The echoing guest halted inside for each ping and took its card's interrupt:
    // `inkernel io N hlt N irq N cpu N`.
    let inside = vmm_tests::status::text(&st, "inkernel");
    let count = |k: &str| -> u64 {
        let w: Vec<&str> = inside.split_whitespace().collect();
        let i = w.iter().position(|x| *x == k).unwrap();
        w[i + 1].parse().unwrap()
    };
    eprintln!("after both VMs: inkernel {inside}");
    assert!(count("hlt") >= u64::from(PINGS), "{st}");
    assert!(count("irq") >= u64::from(PINGS), "{st}");
}
