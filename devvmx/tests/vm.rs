//! VM life through 9P: clone, ctl commands, the state machine, wait (a deferred read),
//! injection, stepping, TSC hiding, quit/remove/ORCLOSE, and VT-x being unavailable.

mod common;
use common::*;
use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use devvmx::vmcs::*;
use protocol::{om, Fcall};

const WAITTAG: u16 = 77;

/// Starts a blocking read of `wait` on `fid`: no reply yet.
fn wait_start(c: &mut Client, fid: u32) {
    c.send(
        WAITTAG,
        Fcall::Tread {
            fid,
            offset: 0,
            count: 512,
        },
    );
    assert_eq!(c.replies(), vec![], "wait answered before an exit");
}

/// The reply of the pending wait read after running the guests once.
fn wait_after_run(c: &mut Client) -> R {
    c.run();
    let mut r = c.replies();
    assert_eq!(r.len(), 1, "{r:?}");
    let (tag, reply) = r.pop().unwrap();
    assert_eq!(tag, WAITTAG);
    reply
}

fn line(r: R) -> String {
    match r {
        R::Data(d) => String::from_utf8(d).unwrap(),
        r => panic!("{r:?}"),
    }
}

fn status(c: &mut Client, n: &str) -> String {
    c.read_text(&format!("vmx/{n}/status"))
}

fn vm(c: &mut Client) -> Vm {
    c.vm()
}

#[test]
fn clone_gives_ctl_and_tree() {
    let mut c = Client::new();
    assert_eq!(c.ls(""), vec!["vmx", "segment", "status"]);
    assert_eq!(c.ls("vmx"), vec!["clone"]);
    let fid = c.fid();
    c.walk(0, fid, &["vmx", "clone"]);
    // The opened fid is the new VM's ctl, with its qid ((slot+1)<<8 | Qctl).
    assert_eq!(c.open(fid, om::RDWR), R::Open(0x101));
    assert_eq!(c.read(fid, 0, 100), R::Data(b"0".to_vec()));
    assert_eq!(c.ls("vmx"), vec!["clone", "0"]);
    assert_eq!(
        c.ls("vmx/0"),
        vec!["ctl", "regs", "status", "map", "wait", "fpregs"]
    );
    let (_ctl1, n1) = c.new_vm();
    assert_eq!(n1, "1");
    // One VPID each.
    assert_eq!(c.ns.vpid(0), Some(1));
    assert_eq!(c.ns.vpid(1), Some(2));
    assert_eq!(status(&mut c, "0"), "ready\n");
    let st = c.read_text("status");
    assert!(st.starts_with("version test\nowner eve\nmemfree "), "{st}");
    assert!(
        st.contains("\ncpus 1\nvms 2\nsegments 0\nsessions 0\nvmx ok\n"),
        "{st}"
    );
    // The host says how many CPUs run.
    c.ns.set_facts(devvmx::Facts {
        cpus: 4,
        ..c.ns.facts().clone()
    });
    assert!(c.read_text("status").contains("\ncpus 4\nvms 2\n"));
    // And, when it runs a switch, its lines last.
    c.ns.set_facts(devvmx::Facts {
        switch: Some("switch table 0/8 evicted 0\n".into()),
        ..c.ns.facts().clone()
    });
    assert!(c
        .read_text("status")
        .ends_with("vmx ok\nswitch table 0/8 evicted 0\n"));
    // Attach names give the subtrees directly; .. stays at their top.
    assert!(matches!(c.attach(20, OWNER, "vmx"), R::Open(0)));
    assert_eq!(
        c.walk(20, 21, &["..", "0", "ctl"]),
        R::Qids(vec![0, 0x100, 0x101])
    );
    assert!(matches!(c.attach(22, OWNER, "segment"), R::Open(_)));
    assert_eq!(
        c.attach(23, OWNER, "other"),
        err("unknown specifier in attach")
    );
}

#[test]
fn clone_and_vm_files_are_the_owners() {
    let mut c = Client::new();
    let (_ctl, n) = c.new_vm();
    c.attach(50, "glenda", "");
    assert_eq!(
        c.open_from(50, "vmx/clone", om::READ),
        Err(err("permission denied"))
    );
    assert_eq!(
        c.open_from(50, &format!("vmx/{n}/regs"), om::READ),
        Err(err("permission denied"))
    );
    // Nor may another user end it by removing ctl.
    let f = c.fid();
    c.walk(50, f, &["vmx", &n, "ctl"]);
    assert_eq!(c.remove(f), err("permission denied"));
    assert_eq!(c.ns.vm_count(), 1);
    // The owner may not open status or wait for writing (0440).
    assert_eq!(
        c.open_path(&format!("vmx/{n}/status"), om::WRITE),
        Err(err("permission denied"))
    );
    assert_eq!(
        c.open_path("vmx/clone", om::EXEC),
        Err(err("permission denied"))
    );
}

#[test]
fn wait_reports_exits_in_the_seeds_format() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.ns.hw_mut().exits.extend([
        Exit {
            reason: 30,
            qual: 0x3f80008,
            ilen: 1,
            ax: Some(0x41),
            set: vec![(GUEST_RIP, 0x7c05), (GUEST_RSP, 0x7000)],
            ..Exit::default()
        },
        Exit {
            reason: 0,
            intr_info: 0x8000_0b0d,
            intr_code: 0x18,
            ..Exit::default()
        },
        Exit {
            reason: 48,
            qual: 0x182,
            gva: 0xdead000,
            gpa: 0x200000,
            ..Exit::default()
        },
        Exit::new(0x8000_0021),
        Exit::new(12),
    ]);
    let expect = [
        "io 0x3f80008 pc 0x7c05 sp 0x7000 ilen 0x1 iinfo 0x0 ax 0x41\n",
        "#gp 0x0 pc 0x7c05 sp 0x7000 ilen 0x0 iinfo 0x0 excode 0x18\n",
        "eptfault 0x182 pc 0x7c05 sp 0x7000 ilen 0x0 iinfo 0x0 va 0xdead000 pa 0x200000\n",
        "!entrystate 0x0 pc 0x7c05 sp 0x7000 ilen 0x0 iinfo 0x0\n",
        ".hlt 0x0 pc 0x7c05 sp 0x7000 ilen 0x0 iinfo 0x0\n",
    ];
    for want in expect {
        wait_start(&mut c, v.wait);
        assert_eq!(c.write(v.ctl, 0, b"go\n"), R::Count(3));
        assert_eq!(status(&mut c, &v.n), "running\n");
        assert_eq!(line(wait_after_run(&mut c)), want);
        assert_eq!(status(&mut c, &v.n), "ready\n");
    }
    // After a failed entry the VMCS is still unlaunched: VMLAUNCH again, not VMRESUME.
    let launched: Vec<bool> = c.ns.hw().entries.iter().map(|e| e.launched).collect();
    assert_eq!(launched, vec![false, true, true, true, true]);
    // Internal exits (external interrupt, preemption timer) keep the VM running.
    c.ns.hw_mut()
        .exits
        .extend([Exit::new(1), Exit::new(52), Exit::new(7), Exit::new(10)]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    for _ in 0..3 {
        assert!(c.run());
        assert_eq!(c.replies(), vec![]);
    }
    assert_eq!(
        line(wait_after_run(&mut c)).split(' ').next(),
        Some(".cpuid")
    );
    assert!(!c.run());
}

#[test]
fn state_machine_and_ctl_errors() {
    let mut c = Client::new();
    let v = vm(&mut c);
    assert_eq!(c.write(v.ctl, 0, b"stop"), R::Count(4));
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    assert_eq!(c.write(v.ctl, 0, b"go"), err("VM not ready"));
    assert_eq!(c.write(v.ctl, 0, b"step"), err("VM not ready"));
    assert_eq!(c.write(v.ctl, 0, b"stop"), R::Count(4));
    assert_eq!(status(&mut c, &v.n), "ready\n");
    for (w, e) in [
        ("", "empty control message"),
        ("fly", "unknown control message \"fly\""),
        ("quit now", "wrong #args in control message \"quit now\""),
        ("exc", "wrong #args in control message \"exc\""),
        (
            "extrap 1 2",
            "wrong #args in control message \"extrap 1 2\"",
        ),
        ("go a b", "bad arg in system call"),
        ("irq 1 2", "bad arg in system call"),
        ("exc bogus", "bad process or channel control request"),
        ("exc 256", "bad process or channel control request"),
        ("irq #gp,x", "bad process or channel control request"),
        ("extrap zz", "bad arg in system call"),
        ("go pc=zz;", "invalid value"),
        ("go nosuch=1;", "unknown register"),
    ] {
        assert_eq!(c.write(v.ctl, 0, w.as_bytes()), err(e), "{w}");
    }
    assert_eq!(c.write(v.ctl, 0, b"extrap 0x4000a"), R::Count(14));
    let vmcs = c.ns.hw().current().unwrap();
    assert_eq!(c.ns.hw().field(vmcs, EXC_BITMAP), 0x4000a);
    // A second exception while one is posted is refused (the seed blocked the writer).
    assert_eq!(c.write(v.ctl, 0, b"exc #ud"), R::Count(7));
    assert_eq!(
        c.write(v.ctl, 0, b"exc #gp,0"),
        err("exception already pending")
    );
    // A dead VM says why, %#q-quoted.
    c.ns.hw_mut().exits.push_back(Exit {
        fail: true,
        ..Exit::default()
    });
    c.write(v.ctl, 0, b"go");
    c.run();
    assert_eq!(status(&mut c, &v.n), "dead 'vmlaunch failed'\n");
    assert_eq!(c.write(v.ctl, 0, b"go"), err("VM not ready"));
    assert_eq!(c.write(v.ctl, 0, b"stop"), err("VM not ready or running"));
}

#[test]
fn step_steps_once_and_go_runs_freely() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.ns.hw_mut().exits.extend([Exit::new(37), Exit::new(12)]);
    wait_start(&mut c, v.wait);
    assert_eq!(c.write(v.ctl, 0, b"step"), R::Count(4));
    assert!(line(wait_after_run(&mut c)).starts_with("monitortrap "));
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert!(line(wait_after_run(&mut c)).starts_with(".hlt "));
    let e = &c.ns.hw().entries;
    assert_ne!(
        e[0].procb & PROCB_MONTRAP as u64,
        0,
        "the step entry has MTF"
    );
    assert_eq!(
        e[1].procb & PROCB_MONTRAP as u64,
        0,
        "go after step runs freely"
    );
    // A step interrupted by an internal exit keeps stepping until it reports.
    c.ns.hw_mut().exits.extend([Exit::new(1), Exit::new(37)]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step pc=0x10;");
    c.run();
    assert!(line(wait_after_run(&mut c)).starts_with("monitortrap 0x0 pc 0x10 "));
    let e = &c.ns.hw().entries;
    assert!(e[2..].iter().all(|e| e.procb & PROCB_MONTRAP as u64 != 0));
}

#[test]
fn exceptions_and_interrupts_are_injected() {
    let mut c = Client::new();
    let v = vm(&mut c);
    // An exception goes in on the next entry.
    c.write(v.ctl, 0, b"exc #gp,0x10");
    c.ns.hw_mut().exits.push_back(Exit::new(12));
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert!(line(wait_after_run(&mut c)).starts_with(".hlt"));
    let e = c.ns.hw().entries[0].clone();
    assert_eq!((e.intr_info, e.intr_code), (0x8000_0b0d, 0x10));
    // An interrupt with IF clear waits for the interrupt window.
    assert_eq!(c.write(v.ctl, 0, b"irq 32"), R::Count(6));
    c.ns.hw_mut().exits.extend([Exit::new(7), Exit::new(12)]);
    c.write(v.ctl, 0, b"go");
    c.run();
    let e = c.ns.hw().entries[1].clone();
    assert_eq!(e.intr_info & 1 << 31, 0);
    assert_ne!(e.procb & PROCB_IRQWIN as u64, 0);
    // Once IF is set it is delivered and acknowledged before the next exit's line.
    let n = &v.n;
    c.write_path(&format!("vmx/{n}/regs"), b"flags 0x202\n");
    c.run();
    let e = c.ns.hw().entries[2].clone();
    assert_eq!(e.intr_info, 0x8000_0020);
    assert_eq!(e.procb & PROCB_IRQWIN as u64, 0);
    // The ack is reported before the exit that followed the delivery.
    assert_eq!(c.read(v.wait, 0, 512), R::Data(b"*ack 32\n".to_vec()));
    assert!(line(c.read(v.wait, 0, 512)).starts_with(".hlt "));
}

#[test]
fn ack_line_and_exception_beside_interrupt() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.write_path(&format!("vmx/{}/regs", v.n), b"flags 0x202\n");
    c.write(v.ctl, 0, b"irq 33");
    c.write(v.ctl, 0, b"exc #ud");
    c.ns.hw_mut().exits.extend([Exit::new(12), Exit::new(12)]);
    c.write(v.ctl, 0, b"go");
    c.run();
    // The exception went in; the interrupt waits for a window instead of overwriting it.
    let e = c.ns.hw().entries[0].clone();
    assert_eq!(e.intr_info, 0x8000_0306);
    assert_ne!(e.procb & PROCB_IRQWIN as u64, 0);
    assert_eq!(
        c.read(v.wait, 0, 512),
        R::Data(b".hlt 0x0 pc 0x0 sp 0x0 ilen 0x0 iinfo 0x0\n".to_vec())
    );
    c.write(v.ctl, 0, b"go");
    c.run();
    assert_eq!(c.ns.hw().entries[1].intr_info, 0x8000_0021);
    assert_eq!(c.read(v.wait, 0, 512), R::Data(b"*ack 33\n".to_vec()));
    assert!(line(c.read(v.wait, 0, 512)).starts_with(".hlt "));
    // A bare irq withdraws a posted one.
    c.write(v.ctl, 0, b"irq 34");
    c.write(v.ctl, 0, b"irq");
    c.ns.hw_mut().exits.push_back(Exit::new(12));
    c.write(v.ctl, 0, b"go");
    c.run();
    assert_eq!(c.ns.hw().entries[2].intr_info & 1 << 31, 0);
}

#[test]
fn tsc_offset_hides_host_time() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.ns.hw_mut()
        .exits
        .extend([Exit::new(1), Exit::new(1), Exit::new(12)]);
    c.write(v.ctl, 0, b"go");
    c.run();
    c.run();
    c.ns.hw_mut().tsc_step = 50_000;
    c.run();
    let e = &c.ns.hw().entries;
    // The guest's clock started near 0: the offset is minus the host's TSC then.
    let start = e[0].tsc_offset.wrapping_neg();
    assert!((1_000_000..1_100_000).contains(&start), "{start}");
    // Between exit and entry the host's TSC advanced by the step (one rdtsc), which
    // the offset takes back.
    assert_eq!(e[0].tsc_offset.wrapping_sub(e[1].tsc_offset), 1000);
    assert_eq!(e[1].tsc_offset.wrapping_sub(e[2].tsc_offset), 50_000);
}

/// The guest's clock in a wait line's `time` field.
fn time_of(l: &str) -> u64 {
    let v = l.trim_end().rsplit_once(" time 0x").expect(l).1;
    u64::from_str_radix(v, 16).unwrap()
}

#[test]
fn clock_puts_guest_time_on_exit_lines_and_advance_moves_it() {
    let mut c = Client::new();
    let v = vm(&mut c);
    // 2 GHz: a tick is half a nanosecond.
    c.ns.hw_mut().tsc_rate = 2_000_000_000;
    let run = |c: &mut Client, ticks: u64| {
        c.ns.hw_mut().exits.push_back(Exit {
            guest_ticks: ticks,
            ..Exit::new(12)
        });
        assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
        c.run();
        // Time outside the guest, which the TSC offset hides.
        c.ns.hw_mut().advance_tsc(3_000_000);
        line(c.read(v.wait, 0, 512))
    };
    // Without the message the seed's line.
    let seed = run(&mut c, 8000);
    assert_eq!(seed, ".hlt 0x0 pc 0x0 sp 0x0 ilen 0x0 iinfo 0x0\n");
    assert_eq!(c.write(v.ctl, 0, b"clock"), R::Count(5));
    let l1 = run(&mut c, 8000);
    assert!(
        l1.starts_with(".hlt 0x0 pc 0x0 sp 0x0 ilen 0x0 iinfo 0x0 time 0x"),
        "{l1}"
    );
    let l2 = run(&mut c, 8000);
    // Only the guest's run counts: 8000 ticks and the read's step of 1000, 4.5 us.
    let t1 = time_of(&l1);
    assert!((4499..=4501).contains(&(time_of(&l2) - t1)), "{l1}{l2}");
    // The client's devices ran 5 ms while the guest halted at it.
    assert_eq!(c.write(v.ctl, 0, b"advance 5000000"), R::Count(15));
    let l3 = run(&mut c, 8000);
    let d = time_of(&l3) - time_of(&l2);
    assert!((5_004_499..=5_004_501).contains(&d), "{d}");
    let e = &c.ns.hw().entries;
    let n = e.len();
    // The offset hid the 3 ms outside and one read's step, less the 10,000,000 ticks.
    assert_eq!(
        e[n - 1].tsc_offset.wrapping_sub(e[n - 2].tsc_offset),
        10_000_000 - 3_000_000 - 1000
    );
    // An accepted interrupt's line carries the clock too.
    c.write_path(&format!("vmx/{}/regs", v.n), b"flags 0x202\n");
    c.write(v.ctl, 0, b"irq 33");
    let l4 = run(&mut c, 8000);
    assert!(l4.starts_with("*ack 33 time 0x"), "{l4}");
    assert!(time_of(&l4) >= time_of(&l3), "{l3}{l4}");
    assert!(line(c.read(v.wait, 0, 512)).starts_with(".hlt "));
    // Errors: its arguments, and a running VM.
    for (msg, want) in [
        ("clock on", "wrong #args in control message \"clock on\""),
        ("advance", "wrong #args in control message \"advance\""),
        ("advance 5ms", "bad arg in system call"),
        ("advance -1", "bad arg in system call"),
        ("advance 0xffffffffffffffff", "bad arg in system call"),
    ] {
        assert_eq!(c.write(v.ctl, 0, msg.as_bytes()), err(want), "{msg}");
    }
    c.write(v.ctl, 0, b"go");
    assert_eq!(c.write(v.ctl, 0, b"advance 1"), err("VM running"));
}

#[test]
fn alarm_reports_the_first_internal_exit_past_it() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.write(v.ctl, 0, b"clock");
    c.ns.hw_mut().exits.push_back(Exit::new(12));
    c.write(v.ctl, 0, b"go");
    c.run();
    let t0 = time_of(&line(c.read(v.wait, 0, 512)));
    // Preemption-timer exits 11 us apart (10,000 ticks in the guest and a read's step):
    // the third is the first past the alarm.
    let alarm = format!("alarm {}", t0 + 25_000);
    assert_eq!(
        c.write(v.ctl, 0, alarm.as_bytes()),
        R::Count(alarm.len() as u32)
    );
    let preempt = Exit {
        guest_ticks: 10_000,
        ..Exit::new(52)
    };
    c.ns.hw_mut()
        .exits
        .extend([preempt.clone(), preempt.clone(), preempt.clone()]);
    c.write(v.ctl, 0, b"go");
    wait_start(&mut c, v.wait);
    c.run();
    c.run();
    assert_eq!(c.replies(), vec![], "an exit before the alarm was reported");
    let l = line(wait_after_run(&mut c));
    assert!(l.starts_with("preempt 0x0 pc "), "{l}");
    assert!(time_of(&l) >= t0 + 25_000, "{l}");
    // It went off: the next preemption stays inside; a withdrawn alarm never goes off.
    c.write(v.ctl, 0, format!("alarm {}", t0).as_bytes());
    c.write(v.ctl, 0, b"alarm");
    c.ns.hw_mut().exits.extend([preempt, Exit::new(12)]);
    c.write(v.ctl, 0, b"go");
    c.run();
    c.run();
    assert!(line(c.read(v.wait, 0, 512)).starts_with(".hlt "));
    for (msg, want) in [
        ("alarm soon", "bad arg in system call"),
        ("alarm 1 2", "bad arg in system call"),
    ] {
        assert_eq!(c.write(v.ctl, 0, msg.as_bytes()), err(want), "{msg}");
    }
}

#[test]
fn fpregs_read_and_clamped_writes() {
    let mut c = Client::new();
    let (_ctl, n) = c.new_vm();
    let f = c.open_path(&format!("vmx/{n}/fpregs"), om::RDWR).unwrap();
    let all = c.read_all(f);
    assert_eq!(all.len(), 512);
    assert_eq!(&all[0..2], &[0x7f, 0x03]);
    assert_eq!(&all[24..28], &0x1f80u32.to_le_bytes());
    // Writes at offsets; past the end they are cut at 512 (the seed cut at 512 - n).
    assert_eq!(c.write(f, 32, &[1, 2, 3]), R::Count(3));
    assert_eq!(c.write(f, 510, &[9; 8]), R::Count(2));
    assert_eq!(c.write(f, 512, &[9; 8]), R::Count(0));
    assert_eq!(c.read(f, 32, 3), R::Data(vec![1, 2, 3]));
    assert_eq!(c.read(f, 508, 100), R::Data(vec![0, 0, 9, 9]));
}

#[test]
fn quit_remove_and_orclose_end_the_vm() {
    let mut c = Client::new();
    let start = c.ns.hw().frames_free();
    // quit: a blocked wait gets Equit, other files then do not exist.
    let v = vm(&mut c);
    let regs = c.open_path(&format!("vmx/{}/regs", v.n), om::RDWR).unwrap();
    wait_start(&mut c, v.wait);
    c.send(
        5,
        Fcall::Twrite {
            fid: v.ctl,
            offset: 0,
            data: b"quit\n",
        },
    );
    c.run();
    let mut r = c.replies();
    r.sort_by_key(|(t, _)| *t);
    assert_eq!(r, vec![(5, R::Count(5)), (WAITTAG, err("vmx: ending"))]);
    assert_eq!(c.read(regs, 0, 100), err("file does not exist"));
    assert_eq!(c.write(v.ctl, 0, b"go"), err("file does not exist"));
    assert_eq!(c.ns.hw().frames_free(), start);
    // A new VM in the same slot is not reachable through the old fids.
    let (_ctl2, n2) = c.new_vm();
    assert_eq!(n2, v.n);
    assert_eq!(c.read(regs, 0, 100), err("file does not exist"));
    // remove of ctl ends it at once (the seed waited for the next remove).
    let f = c.fid();
    c.walk(0, f, &["vmx", &n2, "ctl"]);
    assert_eq!(c.remove(f), R::Ok);
    assert_eq!(c.ns.vm_count(), 0);
    assert_eq!(c.ns.hw().frames_free(), start);
    // Removing another VM file is refused.
    let (_ctl3, n3) = c.new_vm();
    let f = c.fid();
    c.walk(0, f, &["vmx", &n3, "regs"]);
    assert_eq!(c.remove(f), err("permission denied"));
    // ORCLOSE on clone: clunking the ctl fid ends the VM.
    let fid = c.open_path("vmx/clone", om::RDWR | om::RCLOSE).unwrap();
    assert_eq!(c.ns.vm_count(), 2);
    c.clunk(fid);
    assert_eq!(c.ns.vm_count(), 1);
    assert_eq!(c.ls("vmx"), vec!["clone", n3.as_str()]);
}

#[test]
fn hundred_vms_leak_nothing() {
    let mut c = Client::new();
    c.segment("vm.0", 0x10000);
    let start = c.ns.hw().frames_free();
    for _ in 0..100 {
        let v = vm(&mut c);
        let m = format!("vmx/{}/map", v.n);
        c.write_path(&m, b"rwx wb 0x0 0x10000 vm.0 0x0\n");
        c.ns.hw_mut().exits.push_back(Exit::new(12));
        c.write(v.ctl, 0, b"go");
        c.run();
        c.write(v.ctl, 0, b"quit");
        c.clunk(v.wait);
        c.clunk(v.ctl);
    }
    assert_eq!(c.ns.hw().frames_free(), start);
    assert_eq!(c.ns.segment_refs("vm.0"), 1);
}

#[test]
fn no_vmx_still_serves_the_tree() {
    let mut hw = TestHw::new(64);
    hw.cpuid_vmx = false;
    let mut c = Client::with_hw(hw);
    assert!(c
        .read_text("status")
        .ends_with("vmx unavailable: cpuid says no VMX\n"));
    assert_eq!(c.ls("vmx"), vec!["clone"]);
    assert_eq!(
        c.open_path("vmx/clone", om::RDWR),
        Err(err("no vmx: cpuid says no VMX"))
    );
    // Each of the seed's vmxreset checks but VPID (VMs run without: tests/caps.rs), and
    // unrestricted guest.
    for (msr, v, why) in [
        (
            0x3a,
            0x1u64,
            "VMXON disabled by firmware (IA32_FEATURE_CONTROL)",
        ),
        (
            0x482,
            0x7fff_ffff_0000_0000,
            "no secondary processor-based controls",
        ),
        (0x48b, 0x0004_7ffd_0000_0000, "no EPT"),
        (0x48b, 0x0004_7f7f_0000_0000, "no unrestricted guest"),
    ] {
        let mut hw = TestHw::new(64);
        hw.msrs.insert(msr, v);
        let mut c = Client::with_hw(hw);
        assert_eq!(
            c.open_path("vmx/clone", om::RDWR),
            Err(err(&format!("no vmx: {why}")))
        );
    }
    // An unlocked IA32_FEATURE_CONTROL is locked with VMXON allowed, as the seed does.
    let mut hw = TestHw::new(64);
    hw.msrs.insert(0x3a, 0);
    let mut c = Client::with_hw(hw);
    assert!(c.open_path("vmx/clone", om::RDWR).is_ok());
    assert_eq!(c.ns.hw_mut().rdmsr(IA32_FEATURE_CONTROL), Some(5));
}

#[test]
fn an_unreadable_capability_msr_names_itself_and_no_vm_appears() {
    for (hw, msr, name) in [
        (
            TestHw::new(64),
            VMX_TRUE_EXIT_CTLS_MSR,
            "VMX_TRUE_EXIT_CTLS_MSR",
        ),
        (
            TestHw::new(64),
            VMX_TRUE_PINB_CTLS_MSR,
            "VMX_TRUE_PINB_CTLS_MSR",
        ),
        (
            TestHw::new(64),
            VMX_EPT_VPID_CAP_MSR,
            "VMX_EPT_VPID_CAP_MSR",
        ),
        (TestHw::new(64), VMX_CR4_FIXED1, "VMX_CR4_FIXED1"),
        (
            TestHw::without_true_ctls(64),
            VMX_VMENTRY_CTLS_MSR,
            "VMX_VMENTRY_CTLS_MSR",
        ),
    ] {
        let mut hw = hw;
        hw.msrs.remove(&msr.0);
        let mut c = Client::with_hw(hw);
        let free = c.ns.hw().frames_free();
        assert_eq!(
            c.open_path("vmx/clone", om::RDWR),
            Err(err(&format!("no vmx: rdmsr({name}) failed")))
        );
        assert_eq!(c.ns.vm_count(), 0);
        // Every frame it took is given back.
        assert_eq!(c.ns.hw().frames_free(), free);
    }
}

#[test]
fn out_of_memory_on_clone_gives_back_what_it_took() {
    let hw = TestHw::new(8);
    let mut c = Client::with_hw(hw);
    assert!(c.open_path("vmx/clone", om::RDWR).is_ok());
    let free = c.ns.hw().frames_free();
    assert_eq!(
        c.open_path("vmx/clone", om::RDWR),
        Err(err("kernel allocate failed"))
    );
    assert_eq!(c.ns.hw().frames_free(), free);
    assert_eq!(c.ns.vm_count(), 1);
}

#[test]
fn map_truncation_by_wstat_length_zero() {
    let mut c = Client::new();
    c.segment("s", 0x1000);
    let (_ctl, n) = c.new_vm();
    let m = format!("vmx/{n}/map");
    c.write_path(&m, b"rwx wb 0x0 0x1000 s 0x0\n");
    let f = c.fid();
    c.walk(0, f, &["vmx", &n, "map"]);
    let mut d = protocol::Dir::DONT_TOUCH;
    d.length = 0;
    assert_eq!(c.rpc(9, Fcall::Twstat { fid: f, stat: d }), R::Ok);
    assert_eq!(c.read_text(&m), "");
    assert_eq!(c.ns.segment_refs("s"), 1);
}

#[test]
fn vmcsinit_controls_msr_bitmap_and_autoload() {
    let mut c = Client::new();
    let (_ctl, _n) = c.new_vm();
    let hw = c.ns.hw();
    let vmcs = hw.current().unwrap();
    let f = |k| hw.field(vmcs, k);
    // Controls from the TRUE capability MSRs (VMX_BASIC bit 55), worked out by hand.
    // Pin-based: external interrupt and NMI exiting, and the preemption timer.
    assert_eq!(f(PINB_CTLS), 0x5f);
    assert_eq!(f(PROCB_CTLS), 0xb580_65fa);
    assert_eq!(f(PROCB_CTLS2), 0xa2);
    assert_eq!(f(VMEXIT_CTLS), 0x3b_6fff);
    assert_eq!(f(VMENTRY_CTLS), 0xd1ff);
    assert_eq!(f(EXC_BITMAP), 1 << 18 | 1 << 1);
    assert_eq!(f(VMCS_LINK), u64::MAX);
    assert_eq!(f(VM_VPID), 1);
    // A 4-level walk of write-back tables (the seed's were uncacheable).
    assert_eq!(f(VM_EPTP) & 0xfff, 3 << 3 | 6);
    // Five MSRs switched through the autoload areas: guest values 0, host values read.
    assert_eq!(f(VMENTRY_MSRLDCNT), 5);
    assert_eq!(f(VMEXIT_MSRSTCNT), 5);
    assert_eq!(f(VMEXIT_MSRLDCNT), 5);
    assert_eq!(f(VMENTRY_MSRLDADDR), f(VMEXIT_MSRSTADDR));
    let (guest, host, bitmap) = (f(VMENTRY_MSRLDADDR), f(VMEXIT_MSRLDADDR), f(MSR_BITMAP));
    let hw = c.ns.hw_mut();
    let entry = |hw: &mut TestHw, area: u64, i: usize| {
        let p = hw.frame(area);
        let at = i * 16;
        (
            u64::from_le_bytes(p[at..at + 8].try_into().unwrap()),
            u64::from_le_bytes(p[at + 8..at + 16].try_into().unwrap()),
        )
    };
    let msrs = [STAR, LSTAR, CSTAR, SFMASK, KERNEL_GSBASE];
    for (i, m) in msrs.iter().enumerate() {
        assert_eq!(entry(hw, guest, i), (m.0 as u64, 0));
        let want = hw.rdmsr(*m).unwrap_or(0);
        assert_eq!(entry(hw, host, i), (m.0 as u64, want));
    }
    // The MSR bitmap traps everything but EFER and the syscall/segment-base MSRs.
    let bit = |hw: &mut TestHw, Msr(msr): Msr, write: bool| {
        let m = (msr & 0x1fff | msr >> 18 & 0x2000) as usize + if write { 0x4000 } else { 0 };
        hw.frame(bitmap)[m / 8] >> (m % 8) & 1
    };
    for m in [
        EFER,
        STAR,
        LSTAR,
        CSTAR,
        SFMASK,
        FSBASE,
        GSBASE,
        KERNEL_GSBASE,
    ] {
        assert_eq!((bit(hw, m, false), bit(hw, m, true)), (0, 0), "{m:#x}");
    }
    for m in [TSC_MSR, IA32_PAT, APIC_BASE, TSC_AUX, Msr(0x1fff)] {
        assert_eq!((bit(hw, m, false), bit(hw, m, true)), (1, 1), "{m:#x}");
    }
}

#[test]
fn unmapping_huge_ranges_allocates_nothing() {
    let mut c = Client::new();
    let (_ctl, n) = c.new_vm();
    let free = c.ns.hw().frames_free();
    let w = b"--- uc 0x0 0xfffffffff000\n";
    assert_eq!(
        c.write_path(&format!("vmx/{n}/map"), w),
        R::Count(w.len() as u32)
    );
    assert_eq!(c.ns.hw().frames_free(), free);
}

const TF: u64 = 1 << 8;
const BS: u64 = 1 << 14;

/// The #DB exit of a TF single step: valid hardware exception 1, qualification BS.
fn db_step(rip: u64) -> Exit {
    Exit {
        reason: 0,
        intr_info: 0x8000_0301,
        qual: BS,
        set: vec![(GUEST_RIP, rip)],
        ..Exit::default()
    }
}

fn regs_field(c: &mut Client, n: &str, name: &str) -> String {
    let t = c.read_text(&format!("vmx/{n}/regs"));
    t.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in {t}"))
        .to_string()
}

#[test]
fn step_with_mtf_sets_no_tf() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.ns.hw_mut().exits.extend([Exit::new(37), Exit::new(12)]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step");
    assert!(line(wait_after_run(&mut c)).starts_with("monitortrap 0x0 "));
    assert_eq!(regs_field(&mut c, &v.n, "exitreason"), "0x00000025");
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert!(line(wait_after_run(&mut c)).starts_with(".hlt "));
    let e = &c.ns.hw().entries;
    assert_ne!(e[0].procb & PROCB_MONTRAP as u64, 0);
    for e in e {
        assert_eq!(e.rflags & TF, 0, "MTF steps need no TF: {e:?}");
        assert_eq!(e.exc_bitmap, 1 << 18 | 1 << 1);
    }
    assert_eq!(c.ns.hw().entries[1].procb & PROCB_MONTRAP as u64, 0);
}

#[test]
fn step_without_mtf_traps_with_tf_and_reads_as_monitortrap() {
    let mut c = Client::with_hw(TestHw::without_mtf(4096));
    let v = vm(&mut c);
    let vmcs = c.ns.hw().current().unwrap();
    // The client took #DB out of the bitmap; the guest sits after an STI.
    assert_eq!(c.write(v.ctl, 0, b"extrap 0x40000"), R::Count(14));
    c.ns.hw_mut().vmwrite(GUEST_CANINTR, 1).unwrap();
    c.ns.hw_mut()
        .exits
        .extend([db_step(0x1001), db_step(0x1002), Exit::new(12)]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step pc=0x1000;");
    assert_eq!(
        line(wait_after_run(&mut c)),
        "monitortrap 0x0 pc 0x1001 sp 0x0 ilen 0x0 iinfo 0x0\n"
    );
    // The regs file tells the same exit; the rest is the CPU's.
    assert_eq!(regs_field(&mut c, &v.n, "exitreason"), "0x00000025");
    assert_eq!(
        regs_field(&mut c, &v.n, "exitqualification"),
        "0x0000000000000000"
    );
    assert_eq!(regs_field(&mut c, &v.n, "exitinterruptinfo"), "0x00000000");
    assert_eq!(regs_field(&mut c, &v.n, "pc"), "0x0000000000001001");
    // After the step: TF gone, the client's bitmap back.
    assert_eq!(c.ns.hw().field(vmcs, GUEST_RFLAGS), 2);
    assert_eq!(c.ns.hw().field(vmcs, EXC_BITMAP), 0x40000);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step");
    assert!(line(wait_after_run(&mut c)).starts_with("monitortrap 0x0 pc 0x1002 "));
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert!(line(wait_after_run(&mut c)).starts_with(".hlt "));
    // A later exit is the CPU's again.
    assert_eq!(regs_field(&mut c, &v.n, "exitreason"), "0x0000000c");
    let e = &c.ns.hw().entries;
    assert_eq!(e.len(), 3);
    for s in &e[..2] {
        assert_eq!(s.procb & PROCB_MONTRAP as u64, 0, "no MTF here: {s:?}");
        assert_eq!(s.rflags, 2 | TF, "{s:?}");
        assert_eq!(s.exc_bitmap, 0x40000 | 1 << 1, "{s:?}");
        assert_eq!(s.canintr & 3, 0, "STI blocking would defer the trap: {s:?}");
    }
    assert_eq!(e[0].rip, 0x1000);
    let g = &e[2];
    assert_eq!(g.procb & PROCB_MONTRAP as u64, 0, "go runs freely");
    assert_eq!(g.rflags & TF, 0, "go runs freely");
    assert_eq!(g.exc_bitmap, 0x40000);
}

#[test]
fn tf_step_ended_by_another_exit_reports_it_and_leaves_nothing_behind() {
    let mut c = Client::with_hw(TestHw::without_mtf(4096));
    let v = vm(&mut c);
    let vmcs = c.ns.hw().current().unwrap();
    c.ns.hw_mut().exits.extend([
        // An internal exit first: the step goes on with TF still armed.
        Exit::new(52),
        // The stepped instruction exits itself, leaving the step's BS pending.
        Exit {
            reason: 30,
            qual: 0x80_0040,
            ilen: 2,
            set: vec![(GUEST_RIP, 0x1004), (GUEST_PENDING_DBG, BS)],
            ..Exit::default()
        },
        Exit::new(12),
    ]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step");
    assert!(c.run(), "still running after the internal exit");
    assert_eq!(
        line(wait_after_run(&mut c)),
        "io 0x800040 pc 0x1004 sp 0x0 ilen 0x2 iinfo 0x0 ax 0x0\n"
    );
    assert_eq!(regs_field(&mut c, &v.n, "exitreason"), "0x0000001e");
    assert_eq!(c.ns.hw().field(vmcs, GUEST_RFLAGS) & TF, 0);
    assert_eq!(c.ns.hw().field(vmcs, GUEST_PENDING_DBG), 0, "no stale BS");
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert!(line(wait_after_run(&mut c)).starts_with(".hlt "));
    let e = &c.ns.hw().entries;
    assert_eq!(e.len(), 3);
    assert!(e[..2].iter().all(|e| e.rflags & TF != 0));
    assert_eq!((e[2].rflags & TF, e[2].pending_dbg), (0, 0));
}

#[test]
fn tf_step_keeps_the_guests_own_tf_and_reports_breakpoints() {
    let mut c = Client::with_hw(TestHw::without_mtf(4096));
    let v = vm(&mut c);
    let vmcs = c.ns.hw().current().unwrap();
    c.ns.hw_mut().exits.extend([
        // A DR0 breakpoint (B0) before the instruction: a real #db, not the step.
        Exit {
            reason: 0,
            intr_info: 0x8000_0301,
            qual: 1,
            ..Exit::default()
        },
        db_step(0x1001),
    ]);
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step");
    assert!(line(wait_after_run(&mut c)).starts_with("#db 0x1 "));
    assert_eq!(regs_field(&mut c, &v.n, "exitreason"), "0x00000000");
    assert_eq!(c.ns.hw().field(vmcs, GUEST_RFLAGS), 2);
    // The guest single-steps itself: its TF and its pending trap stay.
    c.write_path(&format!("vmx/{}/regs", v.n), b"flags 0x102\n");
    c.ns.hw_mut().exits[0].set.push((GUEST_PENDING_DBG, BS));
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"step");
    assert!(line(wait_after_run(&mut c)).starts_with("monitortrap 0x0 pc 0x1001 "));
    assert_eq!(c.ns.hw().field(vmcs, GUEST_RFLAGS), 0x102);
    assert_eq!(c.ns.hw().field(vmcs, GUEST_PENDING_DBG), BS);
}

#[test]
fn wait_on_a_dead_vm_fails_with_its_error() {
    let mut c = Client::new();
    let v = vm(&mut c);
    c.ns.hw_mut().exits.push_back(Exit {
        fail: true,
        ..Exit::default()
    });
    // A wait already blocked when the VM dies.
    wait_start(&mut c, v.wait);
    c.write(v.ctl, 0, b"go");
    assert_eq!(wait_after_run(&mut c), err("vmlaunch failed"));
    assert_eq!(status(&mut c, &v.n), "dead 'vmlaunch failed'\n");
    // A new one answers at once (the seed blocked for good).
    assert_eq!(c.read(v.wait, 0, 512), err("vmlaunch failed"));
    // A live VM's wait still blocks.
    let w = vm(&mut c);
    wait_start(&mut c, w.wait);
}
