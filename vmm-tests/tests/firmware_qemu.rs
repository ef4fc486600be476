//! The kernel on firmware and boards unlike the PC/AT the other tests boot: no PIT (the
//! TSC's rate from the ACPI PM timer, the tick from the local APIC timer). QEMU TCG: no
//! VT-x needed.

use ninep_client::{dm, om, Client};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::status::{read as status, text as field};

const SECRET: &str = "opensesame";
const OWNER: &str = "eve";

/// A new segment's modification time, seconds since 1970 by the kernel's clock.
fn segment_time(c: &Client, name: &str) -> u32 {
    c.create("segment", name, dm::DIR | 0o777, om::READ)
        .expect("create a segment");
    c.stat(&format!("segment/{name}")).expect("stat it").mtime
}

fn host_time() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("host clock after 1970")
        .as_secs() as i64
}

#[test]
fn without_a_pit_the_clock_comes_from_the_pm_timer_and_keeps_time() {
    let m = Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        virtio_ports: 0,
        nic: Some(Nic::VirtioNet),
        qemu_args: ["-machine", "pc,pit=off"].map(String::from).to_vec(),
        ..Opts::default()
    });
    let log = m.log();
    let clock = log
        .lines()
        .find(|l| l.contains("clock: tsc "))
        .unwrap_or_else(|| panic!("no clock line: {log}"));
    assert!(clock.contains("from acpi pm timer"), "{clock}");
    assert!(
        clock.contains("tick 100 Hz from local apic timer"),
        "{clock}"
    );

    let c = m.tcp_client(OWNER, &format!("!{SECRET}"));
    let st = status(&c);
    assert_eq!(field(&st, "net"), "tcp!10.0.2.15!564", "{st}");
    // The kernel's seconds (the RTC at boot, then its ticks) against the host's: a file
    // made now carries the host's time, and one made 5 s later 5 s more.
    let first = segment_time(&c, "t0");
    assert!(
        (i64::from(first) - host_time()).abs() <= 2,
        "kernel time {first}, host {}",
        host_time()
    );
    std::thread::sleep(Duration::from_secs(5));
    let second = segment_time(&c, "t1");
    let host = host_time();
    assert!(
        (4..=6).contains(&(second - first)),
        "5 host seconds were {} kernel seconds\n{log}",
        second - first
    );
    assert!(
        (i64::from(second) - host).abs() <= 2,
        "kernel {second}, host {host}"
    );
}
