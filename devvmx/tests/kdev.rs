//! In-kernel devices through 9P over TestHw: the `devices` and `line` messages and their
//! errors, port I/O answered without a wait line (pcdev's shared scripts give the same
//! reads here as in the tool), interrupts injected from the in-kernel PIC, halts waited
//! out inside, the `cons` file, and a guest hammering the UART or the PIT.

mod common;
use common::*;
use devvmx::hw::Hw;
use devvmx::kdev;
use devvmx::testhw::Exit;
use pcdev::script::{Op, SCRIPTS};
use protocol::om;

const ALL: &[u8] = b"devices pic pit uart rtc kbd quiet com2";
const WAITTAG: u16 = 77;
const CONSTAG: u16 = 78;

fn vm(c: &mut Client) -> Vm {
    c.vm()
}

fn hlt() -> Exit {
    Exit {
        ilen: 1,
        ..Exit::new(12)
    }
}

fn count(cmd: &[u8]) -> R {
    R::Count(cmd.len() as u32)
}

#[test]
fn devices_message_errors() {
    let mut c = client();
    let v = vm(&mut c);
    for (cmd, e) in [
        (&b"devices"[..], "no devices named"),
        (b"devices pic vga", "unknown device vga"),
        (b"devices pic pit pic", "device pic named twice"),
        (b"devices uart", "pit, uart, com2 and kbd need the pic"),
        (b"devices rtc=soon", "bad rtc time soon"),
        (b"line 4 1", "no in-kernel pic"),
    ] {
        assert_eq!(
            ctl(&mut c, &v, cmd),
            err(e),
            "{}",
            String::from_utf8_lossy(cmd)
        );
    }
    // Not while the guest runs.
    c.ns.hw_mut().exits.push_back(Exit::new(1));
    assert_eq!(ctl(&mut c, &v, b"go"), count(b"go"));
    assert_eq!(ctl(&mut c, &v, b"devices pic"), err("VM running"));
    assert_eq!(ctl(&mut c, &v, b"stop"), count(b"stop"));
    assert_eq!(ctl(&mut c, &v, b"devices pic"), count(b"devices pic"));
    assert_eq!(
        ctl(&mut c, &v, b"devices rtc"),
        err("devices already chosen")
    );
    for (cmd, e) in [
        (&b"line 16 1"[..], "bad arg in system call"),
        (b"line 4 2", "bad arg in system call"),
        (b"line +4 1", "bad arg in system call"),
        (b"line 4", "wrong #args in control message \"line 4\""),
    ] {
        assert_eq!(
            ctl(&mut c, &v, cmd),
            err(e),
            "{}",
            String::from_utf8_lossy(cmd)
        );
    }
    // Without uart there is no console.
    assert!(!c.ls(&format!("vmx/{}", v.n)).contains(&"cons".to_string()));
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    assert_eq!(c.read(cons, 0, 10), err("no in-kernel uart"));
}

/// The in-kernel devices replay pcdev's scripts with the reads the board (and the tool's
/// machine, in vmx's tests) gives: one table, every runner.
#[test]
fn scripts_read_the_same_through_the_kernel() {
    for s in SCRIPTS {
        let mut c = client();
        let v = vm(&mut c);
        assert_eq!(ctl(&mut c, &v, ALL), count(ALL));
        let mut exits = Vec::new();
        let mut ins = Vec::new();
        let mut ticks = 0;
        for op in s.ops {
            let mut e = match *op {
                Op::Run(ns) => {
                    ticks += ns;
                    continue;
                }
                Op::Out(p, n, val) => Exit {
                    qual: Exit::io_qual(p, n, false),
                    ax: Some(u64::from(val)),
                    ..Exit::new(30)
                },
                Op::In(p, n) => {
                    ins.push((exits.len(), n));
                    Exit {
                        qual: Exit::io_qual(p, n, true),
                        ax: Some(0x1234_5678_9abc_def0),
                        ..Exit::new(30)
                    }
                }
            };
            e.ilen = 1;
            e.guest_ticks = std::mem::take(&mut ticks);
            exits.push(e);
        }
        let n = exits.len();
        c.ns.hw_mut().exits.extend(exits);
        c.start_read(WAITTAG, v.wait, 512);
        ctl(&mut c, &v, b"go");
        c.run();
        // No exit reached wait: the kernel answered all of them.
        assert_eq!(c.replies(), vec![], "{}", s.name);
        let e = &c.ns.hw().entries;
        assert_eq!(e.len(), n + 1, "{}", s.name);
        let reads: Vec<u32> = ins
            .iter()
            .map(|&(i, size)| (e[i + 1].ax & u64::from(pcdev::size_mask(size))) as u32)
            .collect();
        assert_eq!(reads, s.reads, "{}", s.name);
        // Each answered instruction was skipped.
        assert_eq!(e[n].rip, n as u64, "{}", s.name);
        // The upper bits of rax survive a byte `in`; a dword `in` zero-extends.
        for &(i, size) in &ins {
            let hi = e[i + 1].ax & !u64::from(pcdev::size_mask(size));
            let want = if size == 4 {
                0
            } else {
                0x1234_5678_9abc_def0 & !u64::from(pcdev::size_mask(size))
            };
            assert_eq!(hi, want, "{}", s.name);
        }
    }
}

#[test]
fn ports_not_chosen_and_string_io_still_go_to_wait() {
    let mut c = client();
    let v = vm(&mut c);
    assert_eq!(
        ctl(&mut c, &v, b"devices pic uart"),
        count(b"devices pic uart")
    );
    let strio = Exit {
        qual: Exit::io_qual(0x3f8, 1, false) | 1 << 4,
        ilen: 1,
        ..Exit::new(30)
    };
    c.ns.hw_mut().exits.extend([
        out(0x3f8, b'a'.into()),
        out(0x40, 0x12),
        out(0x3f8, b'b'.into()),
        strio,
        inb(0xf4),
        Exit::new(10),
    ]);
    ctl(&mut c, &v, b"go");
    c.run();
    let w = |c: &mut Client| match c.read(v.wait, 0, 512) {
        R::Data(d) => String::from_utf8(d).unwrap(),
        r => panic!("{r:?}"),
    };
    // The PIT is not chosen: its port is the client's, with the seed's line.
    assert_eq!(
        w(&mut c),
        "io 0x400000 pc 0x1 sp 0x0 ilen 0x1 iinfo 0x0 ax 0x12\n"
    );
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(w(&mut c).starts_with("io 0x3f80010 "));
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(w(&mut c).starts_with("io 0xf40008 "));
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(w(&mut c).starts_with(".cpuid "));

    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    assert_eq!(c.read(cons, 0, 100), R::Data(b"ab".to_vec()));
    // Stopped for the client with nothing queued: an empty read, not a blocked one.
    assert_eq!(c.read(cons, 0, 100), R::Data(vec![]));
}

#[test]
fn a_reset_through_the_keyboard_controller_reaches_the_client() {
    let mut c = client();
    let v = vm(&mut c);
    assert_eq!(
        ctl(&mut c, &v, b"devices pic kbd"),
        count(b"devices pic kbd")
    );
    c.ns.hw_mut()
        .exits
        .extend([out(0x64, 0xaa), inb(0x60), out(0x64, 0xfe), out(0x64, 0xaa)]);
    ctl(&mut c, &v, b"go");
    c.run();
    assert_eq!(
        c.read(v.wait, 0, 512),
        R::Data(b"io 0x640000 pc 0x2 sp 0x0 ilen 0x1 iinfo 0x0 ax 0xfe\n".to_vec())
    );
    assert_eq!(c.ns.hw().entries[2].ax & 0xff, 0x55);
    // The controller goes on answering after it.
    ctl(&mut c, &v, b"go");
    c.run();
    assert_eq!(c.ns.hw().entries.len(), 5);
    // (the test, as client, did not skip the reset `out`)
    assert_eq!(c.ns.hw().entries[4].rip, 3);
}

/// The PIC initialised as Linux does, the UART's receive interrupt on.
fn uart_guest(c: &mut Client, v: &Vm) -> Vec<Exit> {
    assert_eq!(ctl(c, v, ALL), count(ALL));
    let n = &v.n;
    c.write_path(&format!("vmx/{n}/regs"), b"flags 0x202\n");
    let mut e: Vec<Exit> = pcdev::pic::INIT_SEQUENCE
        .iter()
        .map(|&(p, b)| out(p, b.into()))
        .collect();
    e.extend([
        out(0x21, 0xec),
        out(0xa1, 0xff),
        out(0x3f9, 1),
        out(0x3fc, 0x0b),
    ]);
    e
}

#[test]
fn cons_feeds_the_uart_and_its_interrupt_is_injected_without_an_ack_line() {
    let mut c = client();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    e.push(hlt());
    let setup = e.len();
    c.ns.hw_mut().exits.extend(e);
    ctl(&mut c, &v, b"go");
    c.run();
    // Halted with interrupts on: waiting inside, nothing for wait, not entered again.
    let entries = c.ns.hw().entries.len();
    assert_eq!(entries, setup);
    assert!(!c.run());
    assert_eq!(c.ns.hw().entries.len(), entries);
    c.start_read(WAITTAG, v.wait, 512);
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    assert!(c.ls(&format!("vmx/{}", v.n)).contains(&"cons".to_string()));
    // A console read blocks for output.
    c.start_read(CONSTAG, cons, 64);
    assert_eq!(c.replies(), vec![]);
    // Typing raises IRQ 4: the guest wakes with vector 0x24 injected, reads the byte
    // (IIR says received data), echoes it, ends the interrupt and exits on cpuid.
    assert_eq!(c.write(cons, 0, b"x"), R::Count(1));
    c.ns.hw_mut().exits.extend([
        inb(0x3fa),
        inb(0x3f8),
        out(0x3f8, b'X'.into()),
        out(0x20, 0x20),
        Exit::new(10),
    ]);
    c.run();
    let e = c.ns.hw().entries[entries..].to_vec();
    assert_eq!(e[0].intr_info, 0x8000_0024);
    assert_eq!(e[0].rip, setup as u64, "entered after the hlt");
    assert_eq!(e[1].intr_info & 1 << 31, 0);
    assert_eq!(e[1].ax & 0xff, 0x04, "IIR: received data");
    assert_eq!(e[2].ax & 0xff, u64::from(b'x'));
    // The cpuid reached wait, with no *ack first; the echo waits for the guest to go
    // idle (a stop for the client is not that).
    assert_eq!(
        c.replies(),
        vec![(
            WAITTAG,
            R::Data(b".cpuid 0x0 pc 0x11 sp 0x0 ilen 0x0 iinfo 0x0\n".to_vec())
        )]
    );
    c.ns.hw_mut().exits.push_back(hlt());
    ctl(&mut c, &v, b"go");
    c.run();
    assert_eq!(c.replies(), vec![]);
    // Halted long enough: the echo comes back.
    c.ns.hw_mut().advance_tsc(kdev::CONS_IDLE);
    c.run();
    assert_eq!(c.replies(), vec![(CONSTAG, R::Data(b"X".to_vec()))]);
}

#[test]
fn the_pit_wakes_a_halted_guest_on_guest_time() {
    let mut c = client();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    // 100 Hz on channel 0, then halt.
    e.extend([out(0x43, 0x34), out(0x40, 0x9c), out(0x40, 0x2e), hlt()]);
    let setup = e.len();
    c.ns.hw_mut().exits.extend(e);
    ctl(&mut c, &v, b"go");
    c.run();
    assert_eq!(c.ns.hw().entries.len(), setup);
    // Time outside a halted guest counts: 5 ms is not enough, 11 ms is (a period is
    // 11932 ticks of 1.193182 MHz, just over 10 ms).
    c.ns.hw_mut().advance_tsc(5_000_000);
    assert!(!c.run());
    assert_eq!(c.ns.hw().entries.len(), setup);
    c.ns.hw_mut().advance_tsc(6_000_000);
    c.ns.hw_mut().exits.push_back(Exit::new(10));
    c.run();
    let e = c.ns.hw().entries[setup].clone();
    assert_eq!(e.intr_info, 0x8000_0020);
}

#[test]
fn a_client_device_drives_a_pic_line() {
    let mut c = client();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    e.extend([out(0xa1, 0xf7), out(0x21, 0xe8), out(0x4d1, 0x08)]);
    let setup = e.len();
    c.ns.hw_mut().exits.extend(e);
    ctl(&mut c, &v, b"go");
    c.run();
    ctl(&mut c, &v, b"stop");
    // IRQ 11, level-triggered by the ELCR: raised, it is injected (vector 0x2b).
    assert_eq!(ctl(&mut c, &v, b"line 11 1"), count(b"line 11 1"));
    c.ns.hw_mut().exits.push_back(Exit::new(10));
    ctl(&mut c, &v, b"go");
    c.run();
    // (entry `setup` was the one that ran out of script)
    assert_eq!(c.ns.hw().entries[setup + 1].intr_info, 0x8000_002b);
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".cpuid ")));
    // Lowered before the guest's EOI, it is not requested again.
    ctl(&mut c, &v, b"line 11 0");
    c.ns.hw_mut()
        .exits
        .extend([out(0xa0, 0x20), out(0x20, 0x20), Exit::new(10)]);
    ctl(&mut c, &v, b"go");
    c.run();
    let e = &c.ns.hw().entries;
    assert!(e[setup + 2..].iter().all(|x| x.intr_info & 1 << 31 == 0));
}

#[test]
fn without_the_message_every_io_exit_goes_to_wait() {
    let mut c = client();
    let v = vm(&mut c);
    c.write_path(&format!("vmx/{}/regs", v.n), b"flags 0x202\n");
    c.ns.hw_mut().exits.extend([out(0x3f8, 0x41), hlt()]);
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b"io 0x3f80000 ")));
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".hlt ")));
    assert!(!c.ls(&format!("vmx/{}", v.n)).contains(&"cons".to_string()));
}

#[test]
fn a_guest_hammering_the_uart_and_the_pit_leaves_the_host_serving_and_leaks_nothing() {
    let mut c = client();
    let start = c.ns.hw().frames_free();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    // The PIT at its fastest: a count of 1, an interrupt every 838 ns.
    e.extend([out(0x43, 0x34), out(0x40, 1), out(0x40, 0)]);
    c.ns.hw_mut().exits.extend(e);
    ctl(&mut c, &v, b"go");
    c.run();
    // 200,000 bytes out with nobody reading cons, a microsecond each.
    for _ in 0..1000 {
        let burst: Vec<Exit> = (0..200)
            .map(|_| Exit {
                guest_ticks: 1000,
                ..out(0x3f8, u64::from(b'z'))
            })
            .collect();
        c.ns.hw_mut().exits.extend(burst);
        // Each run enters a bounded number of times and comes back: the host serves
        // 9P between runs.
        c.run();
        assert_eq!(c.read_text(&format!("vmx/{}/status", v.n)), "running\n");
    }
    // The output queue stopped at its limit: the transmitter reads busy.
    c.ns.hw_mut().exits.extend([inb(0x3fd), Exit::new(10)]);
    while !c.ns.hw().exits.is_empty() {
        c.run();
    }
    let e = c.ns.hw().entries.clone();
    let lsr = e.last().unwrap().ax & 0xff;
    assert_eq!(lsr & 0x60, 0, "LSR {lsr:#x}");
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    let mut got = 0;
    loop {
        match c.read(cons, 0, 8000) {
            R::Data(d) if !d.is_empty() => got += d.len(),
            _ => break,
        }
        if got >= kdev::CONS_LIMIT {
            break;
        }
    }
    assert_eq!(got, kdev::CONS_LIMIT);
    // Typing beyond the receive limit is refused, not queued.
    let big = vec![b'k'; kdev::CONS_LIMIT + 10];
    assert_eq!(c.write(cons, 0, &big[..7000]), R::Count(7000));
    let mut typed = 7000;
    while typed < kdev::CONS_LIMIT {
        match c.write(cons, 0, &big[..7000]) {
            R::Count(n) => typed += n as usize,
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(c.write(cons, 0, b"k"), err("console input full"));
    // Interrupts kept coming (the fastest PIT) and nothing blocked.
    assert!(e.iter().filter(|x| x.intr_info & 1 << 31 != 0).count() > 0);
    c.write(v.ctl, 0, b"quit");
    c.clunk(cons);
    c.clunk(v.wait);
    c.clunk(v.ctl);
    assert_eq!(c.ns.hw().frames_free(), start);
    assert_eq!(c.ns.vm_count(), 0);
    // The root status counts what the kernel answered, after the VM is gone too.
    let st = c.read_text("status");
    let line = st.lines().find(|l| l.starts_with("inkernel ")).unwrap();
    let io: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
    assert!(io > 200_000, "{line}");
}

#[test]
fn cpuid_and_known_msrs_answered_from_the_cpu_through_the_masks() {
    let mut c = client();
    let v = vm(&mut c);
    assert_eq!(ctl(&mut c, &v, b"devices cpu"), count(b"devices cpu"));
    let cpuid = |leaf: u64| Exit {
        ilen: 2,
        ax: Some(leaf),
        ..Exit::new(10)
    };
    let rdmsr = |msr: u64| Exit {
        ilen: 2,
        ax: Some(0xdead),
        cx: Some(msr),
        ..Exit::new(31)
    };
    c.ns.hw_mut().exits.extend([
        cpuid(1),
        cpuid(0x4000_0000),
        rdmsr(0x277),
        rdmsr(0x8b),
        rdmsr(0x1234),
    ]);
    ctl(&mut c, &v, b"go");
    c.run();
    let e = c.ns.hw().entries.clone();
    // Leaf 1 of TestHw's CPU says VMX; the guest is not told.
    assert_eq!(e[1].ax, 0x306c3);
    assert_eq!(e[1].rip, 2);
    // PAT from the VMCS, in edx:eax; the microcode signature reads 0.
    assert_eq!(e[3].ax, 0x0007_0406);
    assert_eq!(e[4].ax, 0);
    // An MSR the table does not know is the client's: it reaches wait.
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".rdmsr ")));
    let st = c.read_text("status");
    assert!(st.ends_with("inkernel io 0 hlt 0 irq 0 cpu 4\n"), "{st}");
    // vmx/cpuid lists the leaves guests are told about, and is not in the listing.
    let t = c.read_text("vmx/cpuid");
    assert!(
        t.starts_with("00000000 00000007 756e6547 6c65746e 49656e69\n"),
        "{t}"
    );
    assert!(
        t.contains("\n00000001 000306c3 00000000 00000000 00000000\n"),
        "{t}"
    );
    assert!(!c.ls("vmx").contains(&"cpuid".to_string()));
    assert!(c.open_path("vmx/cpuid", om::WRITE).is_err());
}

fn wrmsr(msr: u64, v: u64) -> Exit {
    Exit {
        ilen: 2,
        cx: Some(msr),
        // WRMSR takes edx:eax; the upper halves are not its.
        ax: Some(v & 0xffff_ffff | 0xdead << 32),
        dx: Some(v >> 32 | 0xbeef << 32),
        ..Exit::new(32)
    }
}

fn rdmsr(msr: u64) -> Exit {
    Exit {
        ilen: 2,
        cx: Some(msr),
        ax: Some(0xdead),
        dx: Some(0xbeef),
        ..Exit::new(31)
    }
}

/// MOV to (or, `from`, from) debug register `dr` with general-purpose register `gpr`.
fn movdr(dr: u64, from: bool, gpr: u64) -> Exit {
    Exit {
        ilen: 3,
        qual: dr | u64::from(from) << 4 | gpr << 8,
        ..Exit::new(29)
    }
}

/// Register `name` of VM `n`'s regs file.
fn reg(c: &mut Client, n: &str, name: &str) -> u64 {
    let t = c.read_text(&format!("vmx/{n}/regs"));
    let v = t
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap();
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

/// With `cpu`, RDMSR and WRMSR of the MSRs pcdev's table knows and MOV to and from
/// DR0-3, DR6 and DR7 are answered without a wait line, as the vmx tool answers them:
/// the registers the regs file shows are the ones the guest wrote; DR4/5 and unknown
/// MSRs still reach wait.
#[test]
fn msrs_and_debug_registers_answered_as_the_tool_would() {
    let mut c = client();
    let v = vm(&mut c);
    assert_eq!(ctl(&mut c, &v, b"devices cpu"), count(b"devices cpu"));
    // Paging on, so EFER.LME makes LMA as a regs write of efer would.
    let regs = format!("vmx/{}/regs", v.n);
    assert_eq!(c.write_path(&regs, b"cr0real 0x80000031\n"), R::Count(19));
    let with = |mut e: Exit, f: fn(&mut Exit)| {
        f(&mut e);
        e
    };
    let exits = [
        wrmsr(0x1a0, 0x1_0000_0005),
        rdmsr(0x1a0),
        rdmsr(0x174),
        wrmsr(0x277, 0x0006_0606_0006_0607),
        rdmsr(0x277),
        wrmsr(0x8b, 0x1234_5678),
        rdmsr(0x8b),
        wrmsr(0xc000_0080, 0x100),
        with(movdr(0, false, 0), |e| e.ax = Some(0x1111)),
        with(movdr(1, false, 1), |e| e.cx = Some(0x2222)),
        with(movdr(2, false, 2), |e| e.dx = Some(0x3333)),
        with(movdr(3, false, 4), |e| {
            e.set = vec![(devvmx::vmcs::GUEST_RSP, 0x4444)]
        }),
        with(movdr(6, false, 0), |e| e.ax = Some(0xffff_ffff_ffff_4ff0)),
        with(movdr(7, false, 0), |e| e.ax = Some(0x1_0000_0701)),
        movdr(3, true, 0),
        movdr(7, true, 2),
        with(movdr(4, false, 0), |e| e.ax = Some(1)),
    ];
    let n = exits.len();
    c.ns.hw_mut().exits.extend(exits);
    ctl(&mut c, &v, b"go");
    c.run();
    // Only DR4 reached wait.
    assert!(
        matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".movdr 0x4 ")),
        "{:?}",
        c.read(v.wait, 0, 512)
    );
    let e = c.ns.hw().entries.clone();
    assert_eq!(e.len(), n);
    // Each answered instruction was skipped.
    assert_eq!(e[n - 1].rip, 8 * 2 + 8 * 3);
    // MISC_ENABLE as written (edx:eax), SYSENTER_CS its reset value.
    assert_eq!((e[2].ax, e[2].dx), (5, 1));
    assert_eq!((e[3].ax, e[3].dx), (0, 0));
    // PAT is the VMCS's: read back, and in regs.
    assert_eq!((e[5].ax, e[5].dx), (0x0006_0607, 0x0006_0606));
    // The microcode signature reads 0 whatever was written.
    assert_eq!((e[7].ax, e[7].dx), (0, 0));
    // DR3 (from rsp) into rax, DR7 (32 bits kept) into rdx.
    assert_eq!(e[15].ax, 0x4444);
    assert_eq!(e[16].dx, 0x701);
    for (name, want) in [
        ("pat", 0x0006_0606_0006_0607),
        ("efer", 0x500),
        ("dr0", 0x1111),
        ("dr1", 0x2222),
        ("dr2", 0x3333),
        ("dr3", 0x4444),
        ("dr6", 0xffff_4ff0),
        ("dr7", 0x701),
    ] {
        assert_eq!(reg(&mut c, &v.n, name), want, "{name}");
    }
    let st = c.read_text("status");
    assert!(
        st.ends_with(&format!("inkernel io 0 hlt 0 irq 0 cpu {}\n", n - 1)),
        "{st}"
    );

    // Unknown MSRs are the client's, read and write; without `cpu` every one is.
    c.ns.hw_mut()
        .exits
        .extend([rdmsr(0x1234), wrmsr(0x1234, 1)]);
    for want in [".rdmsr ", ".wrmsr "] {
        ctl(&mut c, &v, b"go");
        c.run();
        assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(want.as_bytes())));
    }
    let v2 = vm(&mut c);
    assert_eq!(ctl(&mut c, &v2, b"devices pic"), count(b"devices pic"));
    c.ns.hw_mut()
        .exits
        .extend([wrmsr(0x1a0, 1), movdr(0, false, 0)]);
    for want in [".wrmsr ", ".movdr "] {
        ctl(&mut c, &v2, b"go");
        c.run();
        assert!(matches!(c.read(v2.wait, 0, 512), R::Data(d) if d.starts_with(want.as_bytes())));
    }
}

#[test]
fn console_output_of_a_running_guest_is_read_in_batches() {
    let mut c = client();
    let v = vm(&mut c);
    assert_eq!(
        ctl(&mut c, &v, b"devices pic uart"),
        count(b"devices pic uart")
    );
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    // Before the first go there is nothing to wait for.
    assert_eq!(c.read(cons, 0, 10), R::Data(vec![]));
    ctl(&mut c, &v, b"go");
    c.start_read(CONSTAG, cons, 8192);
    assert_eq!(c.replies(), vec![]);
    // A byte, then the guest runs on: the read waits for more, or for the byte to age.
    c.ns.hw_mut().exits.push_back(out(0x3f8, u64::from(b'a')));
    c.run();
    assert_eq!(c.replies(), vec![]);
    let byte = |b: u8, ticks: u64| Exit {
        guest_ticks: ticks,
        ..out(0x3f8, u64::from(b))
    };
    c.ns.hw_mut()
        .exits
        .push_back(byte(b'b', kdev::CONS_DELAY - 1_000_000));
    c.run();
    assert_eq!(c.replies(), vec![]);
    // CONS_DELAY of guest time after the first byte: both go in one reply.
    c.ns.hw_mut().exits.push_back(Exit {
        guest_ticks: 2_000_000,
        ..Exit::new(1)
    });
    c.run();
    assert_eq!(c.replies(), vec![(CONSTAG, R::Data(b"ab".to_vec()))]);
    // A batch at once is answered at once.
    c.start_read(CONSTAG, cons, 8192);
    let burst: Vec<Exit> = (0..kdev::CONS_BATCH)
        .map(|_| out(0x3f8, u64::from(b'z')))
        .collect();
    c.ns.hw_mut().exits.extend(burst);
    let mut got = Vec::new();
    while got.is_empty() && !c.ns.hw().exits.is_empty() {
        c.run();
        got = c.replies();
    }
    assert_eq!(got, vec![(CONSTAG, R::Data(vec![b'z'; kdev::CONS_BATCH]))]);
}

#[test]
fn a_stop_for_the_client_costs_a_waiting_console_read_nothing() {
    let mut c = client();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    e.extend([out(0x3f8, u64::from(b'a')), out(0x3f8, u64::from(b'b'))]);
    e.push(Exit::new(10));
    c.ns.hw_mut().exits.extend(e);
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    let fresh = c.open_path(&format!("vmx/{}/cons", v.n), om::READ).unwrap();
    ctl(&mut c, &v, b"go");
    c.start_read(CONSTAG, cons, 8192);
    c.run();
    // The cpuid stopped the VM for its client: the waiting read is not answered (each
    // rpc below checks that its reply is the only one).
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".cpuid ")));
    assert_eq!(c.replies(), vec![]);
    // A read sent while it is stopped answers at once: the output up to the stop, then
    // nothing (all of it has been read).
    assert_eq!(c.read(fresh, 0, 8192), R::Data(b"ab".to_vec()));
    assert_eq!(c.read(fresh, 0, 8192), R::Data(vec![]));
    // The guest goes on, prints and goes idle: the read that waited gets that.
    c.ns.hw_mut()
        .exits
        .extend([out(0x3f8, u64::from(b'c')), hlt()]);
    ctl(&mut c, &v, b"go");
    c.run();
    assert_eq!(c.replies(), vec![]);
    c.ns.hw_mut().advance_tsc(kdev::CONS_IDLE);
    c.run();
    assert_eq!(c.replies(), vec![(CONSTAG, R::Data(b"c".to_vec()))]);
    // A dead VM's waiting read gets what is left, then the VM's error.
    c.start_read(CONSTAG, cons, 8192);
    assert_eq!(c.write(cons, 0, b"q"), R::Count(1));
    c.ns.hw_mut().exits.extend([
        inb(0x3fa),
        inb(0x3f8),
        out(0x3f8, u64::from(b'Q')),
        out(0x20, 0x20),
        Exit {
            fail: true,
            ..Exit::default()
        },
    ]);
    c.run();
    assert_eq!(c.replies(), vec![(CONSTAG, R::Data(b"Q".to_vec()))]);
    assert_eq!(c.read(cons, 0, 8192), err("vmlaunch failed"));
}

#[test]
fn a_guest_that_halts_briefly_between_lines_keeps_its_output_batched() {
    let mut c = client();
    let v = vm(&mut c);
    let mut e = uart_guest(&mut c, &v);
    // One tick of channel 0 in 10 ms (mode 0): the guest halts until then.
    e.extend([out(0x43, 0x30), out(0x40, 0x9c), out(0x40, 0x2e)]);
    e.extend([out(0x3f8, u64::from(b'a')), hlt()]);
    let setup = e.len();
    c.ns.hw_mut().exits.extend(e);
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    ctl(&mut c, &v, b"go");
    c.start_read(CONSTAG, cons, 8192);
    c.run();
    assert_eq!(c.ns.hw().entries.len(), setup);
    // Halted short of CONS_IDLE, the tick wakes it: it prints a line and halts again.
    c.ns.hw_mut().advance_tsc(kdev::CONS_IDLE / 2);
    c.run();
    assert_eq!(c.replies(), vec![]);
    c.ns.hw_mut().advance_tsc(11_000_000);
    c.ns.hw_mut()
        .exits
        .extend([out(0x20, 0x20), out(0x3f8, u64::from(b'b')), hlt()]);
    c.run();
    assert_eq!(c.ns.hw().exits.len(), 0, "woken by the tick");
    assert_eq!(c.replies(), vec![]);
    // Idle for CONS_IDLE since the newest byte: both lines in one reply.
    c.ns.hw_mut().advance_tsc(kdev::CONS_IDLE - 1);
    c.run();
    assert_eq!(c.replies(), vec![]);
    c.ns.hw_mut().advance_tsc(1);
    c.run();
    assert_eq!(c.replies(), vec![(CONSTAG, R::Data(b"ab".to_vec()))]);
}

#[test]
fn an_interrupt_whose_delivery_an_exit_cut_short_goes_in_again() {
    let mut c = client();
    let v = vm(&mut c);
    let e = uart_guest(&mut c, &v);
    let setup = e.len();
    c.ns.hw_mut().exits.extend(e);
    ctl(&mut c, &v, b"go");
    c.run();
    ctl(&mut c, &v, b"stop");
    let cons = c.open_path(&format!("vmx/{}/cons", v.n), om::RDWR).unwrap();
    assert_eq!(c.write(cons, 0, b"x"), R::Count(1));
    // The entry injects IRQ 4's vector; an EPT fault on the way leaves it in the
    // IDT-vectoring information and reaches the client.
    c.ns.hw_mut().exits.extend([
        Exit {
            set: vec![(devvmx::vmcs::VM_IDTVECINFO, 0x8000_0024)],
            ..Exit::new(48)
        },
        Exit::new(10),
        Exit::new(10),
    ]);
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b"eptfault ")));
    ctl(&mut c, &v, b"go");
    c.run();
    assert!(matches!(c.read(v.wait, 0, 512), R::Data(d) if d.starts_with(b".cpuid ")));
    ctl(&mut c, &v, b"go");
    c.run();
    let e = &c.ns.hw().entries;
    // (entry `setup` ran out of script before the stop)
    let infos: Vec<u64> = e[setup + 1..].iter().map(|x| x.intr_info).collect();
    assert_eq!(infos[..2], [0x8000_0024, 0x8000_0024]);
    // Taken now: in service, not injected a third time.
    assert_eq!(infos[2] & 1 << 31, 0);
}
