//! VMs on several CPUs over TestHw, whose `on_cpu` switches its notion of the running CPU
//! (each with its own VMXON region and current VMCS): placement by fewest VMs, the root
//! status's `vm N cpu C` lines, every VMCS operation on the VM's own CPU, commands and
//! wait lines through the VM's CPU, and VM lifetimes over CPUs giving every frame back.

mod common;
use common::*;
use devvmx::hw::Hw;
use devvmx::place::pick;
use devvmx::testhw::{Exit, TestHw};
use protocol::Fcall;

const WAITTAG: u16 = 91;

/// A namespace whose VMs run on `cpus` (each in VMX root operation already).
fn smp(cpus: &[usize]) -> Client {
    let mut hw = TestHw::new(4096);
    for &cpu in cpus {
        hw.ap_vmxon(cpu);
    }
    let mut c = Client::with_hw(hw);
    c.ns.vms_mut().set_cpus(cpus);
    c
}

/// Each CPU in `cpus` runs its VMs once (on that CPU), then the session answers.
fn run_on(c: &mut Client, cpus: &[usize]) {
    for &cpu in cpus {
        let list = c.ns.vms().run_list(cpu).unwrap();
        c.ns.hw_mut().on_cpu(cpu, &mut |hw| {
            list.run(hw, &mut |_| {});
        });
    }
    c.run();
}

/// Five polls of the server answer nothing and make no call to another CPU.
fn polls_answer_nothing_and_ask_no_cpu(c: &mut Client, why: &str) {
    let calls = c.ns.hw().calls.len();
    for _ in 0..5 {
        c.run();
    }
    assert_eq!(c.replies(), vec![]);
    assert_eq!(c.ns.hw().calls.len(), calls, "{why}");
}

fn placement(c: &mut Client) -> Vec<String> {
    c.read_text("status")
        .lines()
        .filter(|l| l.starts_with("vm "))
        .map(String::from)
        .collect()
}

#[test]
fn pick_takes_the_cpu_with_fewest_vms() {
    assert_eq!(pick(&[], &[]), None);
    assert_eq!(pick(&[1, 2, 3], &[0, 0, 0]), Some(1));
    assert_eq!(pick(&[1, 2, 3], &[1, 0, 0]), Some(2));
    assert_eq!(pick(&[1, 2, 3], &[1, 1, 0]), Some(3));
    assert_eq!(pick(&[1, 2, 3], &[2, 1, 1]), Some(2));
}

/// Five VMs over cpus 1 and 2, fewest first.
const SPREAD: [&str; 5] = [
    "vm 0 cpu 1",
    "vm 1 cpu 2",
    "vm 2 cpu 1",
    "vm 3 cpu 2",
    "vm 4 cpu 1",
];

#[test]
fn vms_spread_over_the_other_cpus_and_refill_the_emptiest() {
    let mut c = smp(&[1, 2]);
    let vms: Vec<Vm> = (0..5).map(|_| c.vm()).collect();
    assert_eq!(placement(&mut c), SPREAD);
    assert_eq!(c.ns.vms().cpu_of(3), Some(2));
    // Two of cpu 2's VMs end: the next VMs go there.
    for v in [&vms[1], &vms[3]] {
        assert_eq!(c.write(v.ctl, 0, b"quit"), R::Count(4));
    }
    // A command for an ended VM fails on the boot CPU; no CPU is asked.
    let calls = c.ns.hw().calls.len();
    assert_eq!(c.write(vms[1].ctl, 0, b"go"), err(devvmx::plan9::ENONEXIST));
    assert_eq!(c.ns.hw().calls.len(), calls);
    c.vm();
    c.vm();
    // Slots 1 and 3 again, both on cpu 2 (cpu 1 still has three).
    assert_eq!(placement(&mut c), SPREAD);
    // No VM ever ran on the boot CPU or touched a VMCS there.
    assert!(c.ns.hw().touched.iter().all(|&(_, cpu)| cpu != 0));
}

#[test]
fn one_cpu_runs_everything_here_as_before() {
    let mut c = Client::new();
    let v = c.vm();
    assert!(placement(&mut c).is_empty(), "{}", c.read_text("status"));
    c.write(v.ctl, 0, b"go");
    c.run();
    assert!(c.ns.hw().touched.iter().all(|&(_, cpu)| cpu == 0));
    assert!(c.ns.hw().calls.iter().all(|&cpu| cpu == 0));
}

#[test]
fn commands_and_wait_lines_go_through_the_vms_cpu() {
    let mut c = smp(&[1, 2]);
    c.segment("s", 0x4000);
    let _a = c.vm();
    let b = c.vm();
    assert_eq!(c.ns.vms().cpu_of(1), Some(2));
    let map = "rwx wb 0x0 0x4000 s 0x0\n";
    assert_eq!(
        c.write_path(&format!("vmx/{}/map", b.n), map.as_bytes()),
        R::Count(map.len() as u32)
    );
    assert_eq!(
        c.write_path(&format!("vmx/{}/regs", b.n), b"pc 0x1000\n"),
        R::Count(10)
    );
    // An exit the boot CPU never sees until cpu 2 runs the guest.
    c.ns.hw_mut().exits.extend([Exit::new(52), Exit::new(12)]);
    c.send(
        WAITTAG,
        Fcall::Tread {
            fid: b.wait,
            offset: 0,
            count: 512,
        },
    );
    assert_eq!(c.write(b.ctl, 0, b"go"), R::Count(2));
    c.run();
    assert_eq!(c.replies(), vec![], "a wait answered before cpu 2 ran");
    assert_eq!(c.ns.hw().entries.len(), 0, "the boot CPU entered a guest");
    // The preemption timer's exit keeps it running; the hlt is reported.
    run_on(&mut c, &[1, 2]);
    run_on(&mut c, &[1, 2]);
    let r = c.replies();
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        matches!(&r[0], (WAITTAG, R::Data(d)) if d.starts_with(b".hlt ")),
        "{r:?}"
    );
    // The map change was flushed (INVEPT) before that entry, and every VMCS operation
    // of b ran on cpu 2, and of a on cpu 1.
    assert!(!c.ns.hw().invept.is_empty());
    let t = &c.ns.hw().touched;
    let cpus_of = |vmcs| {
        let mut v: Vec<usize> = t.iter().filter(|e| e.0 == vmcs).map(|e| e.1).collect();
        v.dedup();
        v
    };
    let vmcss: Vec<u64> = {
        let mut v: Vec<u64> = t.iter().map(|e| e.0).collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(vmcss.len(), 2);
    let mut seen: Vec<Vec<usize>> = vmcss.iter().map(|&v| cpus_of(v)).collect();
    seen.sort();
    assert_eq!(seen, [vec![1], vec![2]]);
    // stop while running: the next round enters nothing.
    assert_eq!(c.write(b.ctl, 0, b"go"), R::Count(2));
    assert_eq!(c.read_text(&format!("vmx/{}/status", b.n)), "running\n");
    assert_eq!(c.write(b.ctl, 0, b"stop"), R::Count(4));
    let entries = c.ns.hw().entries.len();
    run_on(&mut c, &[1, 2]);
    assert_eq!(c.ns.hw().entries.len(), entries);
    assert_eq!(c.read_text(&format!("vmx/{}/status", b.n)), "ready\n");
    // irq posted from the boot CPU is injected by cpu 2 on the next entry (IF set).
    assert_eq!(
        c.write_path(&format!("vmx/{}/regs", b.n), b"flags 0x202\n"),
        R::Count(12)
    );
    assert_eq!(c.write(b.ctl, 0, b"irq 32"), R::Count(6));
    c.ns.hw_mut().exits.push_back(Exit::new(12));
    assert_eq!(c.write(b.ctl, 0, b"go"), R::Count(2));
    run_on(&mut c, &[2]);
    let last = c.ns.hw().entries.last().unwrap();
    assert_ne!(last.intr_info & 1 << 31, 0, "no event injected: {last:?}");
}

#[test]
fn lifetimes_over_cpus_give_every_frame_back() {
    let mut c = smp(&[1, 2, 3]);
    let before = c.ns.hw().frames_free();
    c.segment("s", 0x4000);
    for i in 0..30 {
        let v = c.vm();
        let map = "rwx wb 0x0 0x4000 s 0x0\n";
        c.write_path(&format!("vmx/{}/map", v.n), map.as_bytes());
        c.ns.hw_mut().exits.push_back(Exit::new(12));
        c.write(v.ctl, 0, b"go");
        run_on(&mut c, &[1, 2, 3]);
        if i % 2 == 0 {
            c.write(v.ctl, 0, b"quit");
        }
        c.clunk(v.wait);
        c.remove(v.ctl);
    }
    assert!(c.read_text("status").contains("vms 0\n"));
    let dir = c.open_path("segment/s", protocol::om::READ).unwrap();
    c.remove(dir);
    assert_eq!(c.ns.hw().frames_free(), before);
}

#[test]
fn pending_reads_on_a_running_vm_elsewhere_ask_its_cpu_only_when_it_has_news() {
    let mut c = smp(&[1]);
    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, b"devices pic uart"), R::Count(16));
    let cons = c
        .open_path(&format!("vmx/{}/cons", v.n), protocol::om::RDWR)
        .unwrap();
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    // Preemption-timer exits only: running, nothing to report, no console output.
    c.ns.hw_mut().exits.extend([Exit::new(52), Exit::new(52)]);
    run_on(&mut c, &[1]);
    c.send(
        WAITTAG,
        Fcall::Tread {
            fid: v.wait,
            offset: 0,
            count: 512,
        },
    );
    c.start_read(WAITTAG + 1, cons, 64);
    polls_answer_nothing_and_ask_no_cpu(&mut c, "the boot CPU asked cpu 1 anyway");
    // An exit to report: the next poll asks cpu 1 and the wait is answered.
    c.ns.hw_mut().exits.push_back(Exit::new(10));
    while !c.ns.hw().exits.is_empty() {
        run_on(&mut c, &[1]);
    }
    c.run();
    // The exit left the VM ready: the wait is answered; the console read goes on
    // waiting (a stop costs it nothing), and cpu 1 is not asked for it again.
    let r = c.replies();
    assert!(
        matches!(&r[..], [(WAITTAG, R::Data(d))] if d.starts_with(b".cpuid ")),
        "{r:?}"
    );
    polls_answer_nothing_and_ask_no_cpu(
        &mut c,
        "the boot CPU asked cpu 1 for a read that waits on a stopped VM",
    );
    // A new read is answered at once, with nothing queued: all the output is read.
    let fresh = c
        .open_path(&format!("vmx/{}/cons", v.n), protocol::om::READ)
        .unwrap();
    assert_eq!(c.read(fresh, 0, 64), R::Data(vec![]));
}
