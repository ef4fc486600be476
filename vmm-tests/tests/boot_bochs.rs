//! The kernel boots under Bochs (the VT-x emulator) from the GRUB ISO and serves 9P on
//! COM1, the 16550 UART over a loopback TCP socket.

mod boot_checks;

use boot_checks::*;
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
