//! The kernel boots under QEMU from the GRUB ISO and serves 9P on COM1 and on each
//! virtio-serial port.

mod boot_checks;

use boot_checks::*;
use std::time::Duration;
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
    // Every transport logs a new session alike; COM1 has no connect signal, so its
    // sessions are its clients' Tversions.
    assert!(
        m.log().contains("uart: Tversion: new 9P session"),
        "{}",
        m.log()
    );
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

#[test]
fn direct_kernel_boot() {
    // QEMU -kernel: the Multiboot1 header with a.out-kludge addresses.
    let m = Machine::qemu(Opts {
        direct: true,
        cmdline: "owner=glenda serve=uart".into(),
        ..Opts::default()
    });
    assert!(m.log().contains("multiboot1"), "{}", m.diagnostics());
    let c = m.client_on(&m.uart_path(), "glenda", "");
    assert!(field(&status(&c), "memtotal") > 0);
    // glenda owns this machine: the owner's files are hers.
    assert_eq!(c.stat("vmx/clone").expect("stat clone").uid, "glenda");
}

#[test]
fn kernel_exception_stops_the_machine() {
    let mut m = Machine::qemu(Opts {
        cmdline: "owner=eve serve=uart selftest=fault".into(),
        until: "kernel exception",
        ..Opts::default()
    });
    // isa-debug-exit: status (1 << 1) | 1 for the kernel's failure code 1.
    assert_eq!(
        m.wait_exit(Duration::from_secs(30)),
        Some(3),
        "{}",
        m.diagnostics()
    );
    let log = m.log();
    assert!(log.contains("#PF page fault"), "{log}");
    assert!(log.contains("cr2 0x100000000000"), "{log}");
    assert!(!log.contains("ready;"), "{log}");
}

#[test]
fn slow_clients_do_not_block_others() {
    use std::io::Write;
    let m = qemu();
    // COM1: half a message, then silence.
    let mut half = m.raw(&m.uart_path());
    half.write_all(&vmm_tests::emu::tversion(8192)[..9])
        .unwrap();
    // virtio port 1: a client that sends and never reads its replies, until every buffer
    // on the way back is full.
    let mut flood = m.raw(&m.virtio_path(1));
    let writer = std::thread::spawn(move || {
        let msg = vmm_tests::emu::tversion(8192);
        for _ in 0..100_000 {
            if flood.write_all(&msg).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !writer.is_finished(),
        "the flood was read: nothing backed up"
    );
    // virtio port 0 is served all the same.
    let c = m.client_on(&m.virtio_path(0), OWNER, "");
    for _ in 0..20 {
        assert!(field(&status(&c), "memtotal") > 0);
    }
    drop(half);
}

#[test]
fn abandoned_partial_message_is_dropped() {
    use std::io::Write;
    let m = qemu();
    // A client sends the start of a 100-byte Twrite and hangs up: nothing on a serial
    // line says so. Left there, it would swallow the next client's Tversion whole.
    let mut half = m.raw(&m.uart_path());
    half.write_all(&[100, 0, 0, 0, 118, 1, 0, 0, 0]).unwrap();
    drop(half);
    std::thread::sleep(Duration::from_secs(4));
    // The next client's first Tversion is answered (python-9p sends exactly one).
    python_9p(&m, &m.uart_path());
    assert!(m.log().contains("partial message abandoned"), "{}", m.log());
}
