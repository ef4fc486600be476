//! File times through 9P: the namespace's files keep the time it was made (the kernel's
//! boot), a VM's files the time the VM was made, a segment's directory and ctl the time
//! it was made and its data the time of the last write. atime is mtime.

mod common;
use common::*;
use protocol::{dm, om};

const BOOT: u32 = 1_796_083_798; // 2026-12-01 00:09:58 UTC

fn at(t: u32) -> (u32, u32) {
    (t, t)
}

#[test]
fn namespace_files_keep_the_boot_time() {
    let mut c = Client::with_clock(BOOT);
    c.ns.hw_mut().clock = BOOT + 100;
    for p in ["", "vmx", "segment", "status", "vmx/clone"] {
        assert_eq!(c.times(p), at(BOOT), "{p:?}");
    }
    assert_eq!(
        c.ls_times(""),
        vec![
            ("vmx".into(), BOOT),
            ("segment".into(), BOOT),
            ("status".into(), BOOT)
        ]
    );
    // Reading the status file leaves its time alone.
    c.read_text("status");
    assert_eq!(c.times("status"), at(BOOT));
}

#[test]
fn a_vm_has_the_time_it_was_made() {
    let mut c = Client::with_clock(BOOT);
    c.ns.hw_mut().clock = BOOT + 60;
    let (ctl, n) = c.new_vm();
    c.ns.hw_mut().clock = BOOT + 120;
    assert_eq!(c.times(&format!("vmx/{n}")), at(BOOT + 60));
    for f in ["ctl", "regs", "status", "map", "wait", "fpregs"] {
        assert_eq!(c.times(&format!("vmx/{n}/{f}")), at(BOOT + 60), "{f}");
    }
    // Writing its files changes no time.
    assert_eq!(
        c.write_path(&format!("vmx/{n}/regs"), b"pc 0x1000\n"),
        R::Count(10)
    );
    assert_eq!(c.times(&format!("vmx/{n}/regs")), at(BOOT + 60));
    let (_ctl2, n2) = c.new_vm();
    assert_eq!(
        c.ls_times("vmx"),
        vec![
            ("clone".into(), BOOT),
            (n.clone(), BOOT + 60),
            (n2.clone(), BOOT + 120)
        ]
    );
    // A new VM in a reused slot has its own time.
    assert_eq!(c.clunk(ctl), R::Ok);
    let vm = c.fid();
    c.walk(0, vm, &["vmx", &n, "ctl"]);
    assert_eq!(c.remove(vm), R::Ok);
    c.ns.hw_mut().clock = BOOT + 180;
    let (_ctl3, n3) = c.new_vm();
    assert_eq!(n3, n);
    assert_eq!(c.times(&format!("vmx/{n3}/ctl")), at(BOOT + 180));
}

#[test]
fn segment_data_has_its_last_write_and_the_rest_their_making() {
    let mut c = Client::with_clock(BOOT);
    c.ns.hw_mut().clock = BOOT + 10;
    let dir = c.fid();
    c.walk(0, dir, &["segment"]);
    assert!(matches!(
        c.create(dir, "s", dm::DIR | 0o777, om::READ),
        R::Open(_)
    ));
    c.clunk(dir);
    assert_eq!(c.times("segment/s"), at(BOOT + 10));
    assert_eq!(c.times("segment/s/ctl"), at(BOOT + 10));
    assert_eq!(c.times("segment/s/data"), at(BOOT + 10));
    // Sizing makes the data: its time.
    c.ns.hw_mut().clock = BOOT + 20;
    assert_eq!(
        c.write_path("segment/s/ctl", b"va 0x10000000 0x2000"),
        R::Count(20)
    );
    assert_eq!(c.times("segment/s/data"), at(BOOT + 20));
    assert_eq!(c.times("segment/s/ctl"), at(BOOT + 10));
    // A write to data sets its time; a read, a failed write or a ctl read do not.
    c.ns.hw_mut().clock = BOOT + 30;
    let data = c.open_path("segment/s/data", om::RDWR).unwrap();
    assert_eq!(c.write(data, 0x10, b"abc"), R::Count(3));
    c.ns.hw_mut().clock = BOOT + 40;
    assert_eq!(c.read(data, 0, 4), R::Data(vec![0; 4]));
    assert_eq!(c.write(data, 0x2000, b"x"), err("bad arg in system call"));
    c.read_text("segment/s/ctl");
    assert_eq!(c.times("segment/s/data"), at(BOOT + 30));
    assert_eq!(c.times("segment/s"), at(BOOT + 10));
    assert_eq!(
        c.ls_times("segment/s"),
        vec![("ctl".into(), BOOT + 10), ("data".into(), BOOT + 30)]
    );
    assert_eq!(c.ls_times("segment"), vec![("s".into(), BOOT + 10)]);
    // The segment tree's top keeps the boot time.
    assert_eq!(c.times("segment"), at(BOOT));
}
