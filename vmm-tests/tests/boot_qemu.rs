//! The kernel boots under QEMU from the GRUB ISO and serves 9P on COM1 and on each
//! virtio-serial port.

mod boot_checks;

use boot_checks::*;
use vmm_tests::emu::{Machine, Opts};

fn qemu() -> Machine {
    Machine::qemu(Opts::default())
}

#[test]
fn uart_namespace_and_permissions() {
    let m = qemu();
    namespace(&m, &m.uart_path());
    permissions(&m, &m.uart_path());
}

#[test]
fn virtio_namespace_and_permissions() {
    let m = qemu();
    namespace(&m, &m.virtio_path(0));
    permissions(&m, &m.virtio_path(1));
}

#[test]
fn garbage_then_tversion() {
    let m = qemu();
    garbage_then_version(&m, &m.uart_path());
    garbage_then_version(&m, &m.virtio_path(0));
}

#[test]
fn disconnect_and_reconnect() {
    let m = qemu();
    reconnect(&m, &m.uart_path());
}

#[test]
fn virtio_disconnect_and_reconnect() {
    let m = qemu();
    reconnect(&m, &m.virtio_path(0));
}

#[test]
fn python_9p_client() {
    let m = qemu();
    python_9p(&m, &m.uart_path());
    python_9p(&m, &m.virtio_path(0));
}
