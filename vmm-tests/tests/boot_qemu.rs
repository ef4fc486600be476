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
fn one_cpu_unless_asked() {
    let m = Machine::qemu(Opts {
        cpus: 1,
        ..Opts::default()
    });
    all_cpus_up(&m, &m.uart_path(), 1, false);
    // With one CPU no AP is started (the boot CPU's local APIC runs only its tick).
    assert!(
        m.log().contains("smp: 1 CPUs in the Madt; one CPU"),
        "{}",
        m.log()
    );
}

#[test]
fn four_cpus_come_up_and_9p_is_served() {
    // TCG has no VMX: each AP says why not, and the boot CPU serves 9P.
    let m = Machine::qemu(Opts {
        cpus: 4,
        ..Opts::default()
    });
    all_cpus_up(&m, &m.virtio_path(0), 4, false);
    assert!(m.log().contains("online, no vmx: cpuid says no VMX"));
    namespace(&m, &m.uart_path());
}

#[test]
fn cpus_on_the_command_line_limits_the_cpus_started() {
    let m = Machine::qemu(Opts {
        cpus: 4,
        cmdline: "owner=eve serve=uart,virtio cpus=2".into(),
        ..Opts::default()
    });
    assert!(m.log().contains("smp: 4 CPUs in the Madt"), "{}", m.log());
    all_cpus_up(&m, &m.uart_path(), 2, false);
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

/// 2024-01-01 00:00:00 UTC.
const YEAR_2024: u32 = 1_704_067_200;

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

#[test]
fn file_times_follow_the_rtc() {
    // QEMU's RTC starts at the host's UTC time: the kernel reads it at boot, so the
    // root's times are the boot's, and later files' times move on with the timer.
    let before = unix_now();
    let m = qemu();
    let c = m.client_on(&m.uart_path(), OWNER, "");
    let root = c.stat("").expect("stat the root");
    assert!(root.mtime >= YEAR_2024, "root mtime {}", root.mtime);
    assert_eq!(root.atime, root.mtime);
    assert!(
        (before.saturating_sub(2)..=unix_now() + 2).contains(&root.mtime),
        "root mtime {} not between the test's start {before} and now {}\n{}",
        root.mtime,
        unix_now(),
        m.log()
    );
    assert!(m.log().contains("rtc 20"), "{}", m.log());
    for p in ["vmx", "segment", "status"] {
        assert_eq!(c.stat(p).expect(p).mtime, root.mtime, "{p}");
    }
    // A segment made later has a later time, no later than the host's clock.
    std::thread::sleep(Duration::from_secs(3));
    c.create(
        "segment",
        "t",
        ninep_client::dm::DIR | 0o770,
        ninep_client::om::READ,
    )
    .expect("create a segment")
    .clunk()
    .unwrap();
    let made = c.stat("segment/t").expect("stat segment/t").mtime;
    assert!(
        made > root.mtime && made <= unix_now() + 2,
        "segment made at {made}, root {}, now {}",
        root.mtime,
        unix_now()
    );
    c.remove("segment/t").expect("remove the segment");
}

#[test]
fn segment_ctl_opened_rclose_returns_its_memory() {
    // The vmx tool's segment lifetime: ctl opened ORCLOSE. A clunk removes the segment,
    // and so does a client that dies (virtio-serial tells the kernel it hung up).
    use ninep_client::{dm, om};
    let m = qemu();
    let link = m.virtio_path(0);
    let c = m.client_on(&link, OWNER, "");
    let free = field(&status(&c), "memfree");
    let sized = |c: &ninep_client::Client, name: &str| {
        c.create("segment", name, dm::DIR | 0o770, om::READ)
            .expect("create a segment")
            .clunk()
            .unwrap();
        let ctl = c
            .open(&format!("segment/{name}/ctl"), om::RDWR | om::RCLOSE)
            .expect("open ctl ORCLOSE");
        ctl.write_str("va 0x10000000 0x100000").expect("size it");
        assert_eq!(field(&status(c), "memfree"), free - 0x100000);
        ctl
    };
    sized(&c, "a").clunk().expect("clunk ctl");
    assert!(c.ls("segment").unwrap().is_empty());
    assert_eq!(field(&status(&c), "memfree"), free);
    drop(c);
    // A client that dies with its ctl open: the connection just ends, no clunk sent.
    let conn = m.raw(&link);
    let c = ninep_client::Client::over(conn.try_clone().unwrap(), OWNER, "").unwrap();
    let ctl = sized(&c, "b");
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    std::mem::forget(ctl);
    drop(c);
    let c = m.client_on(&link, OWNER, "");
    assert!(c.ls("segment").unwrap().is_empty(), "{}", m.log());
    assert_eq!(field(&status(&c), "memfree"), free);
}
