//! The kernel boots under Bochs (the VT-x emulator) from the GRUB ISO and serves 9P on
//! COM1, the 16550 UART over a loopback TCP socket.

mod boot_checks;

use boot_checks::*;
use std::time::Duration;
use vmm_tests::emu::{Machine, Opts};

fn bochs() -> Machine {
    Machine::bochs(Opts::default())
}

#[test]
fn uart_namespace_permissions_reconnect() {
    let m = bochs();
    namespace(&m, &m.uart_path());
    permissions(&m, &m.uart_path());
    reconnect(&m, &m.uart_path());
}

/// Bochs's BIOS lists `cpus` CPUs in its MADT; every one comes up with VT-x.
fn cpus_come_up_with_vmx(cpus: u32) {
    let m = Machine::bochs(Opts {
        cpus,
        ..Opts::default()
    });
    all_cpus_up(&m, &m.uart_path(), cpus.into(), true);
}

#[test]
fn two_cpus_come_up_with_vmx() {
    cpus_come_up_with_vmx(2);
}

#[test]
fn four_cpus_come_up_with_vmx() {
    cpus_come_up_with_vmx(4);
}

#[test]
fn garbage_then_tversion() {
    let m = bochs();
    garbage_then_version(&m, &m.uart_path());
}

#[test]
fn python_9p_client() {
    let m = bochs();
    python_9p(&m, &m.uart_path());
}

#[test]
fn kernel_exception_stops_the_machine() {
    let mut m = Machine::bochs(Opts {
        cmdline: "owner=eve serve=uart selftest=fault".into(),
        until: "kernel exception",
        ..Opts::default()
    });
    // The kernel writes "Shutdown" to port 0x8900: Bochs ends (its status says nothing).
    m.wait_exit(Duration::from_secs(30));
    let log = m.log();
    assert!(log.contains("#PF page fault"), "{log}");
    assert!(log.contains("cr2 0x100000000000"), "{log}");
}
