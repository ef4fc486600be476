//! The kernel on firmware and boards unlike the PC/AT the other tests boot: UEFI (OVMF,
//! q35) with 6 GiB and four CPUs from the one hybrid ISO, and a PC without a PIT (the TSC's
//! rate from the ACPI PM timer, the tick from the local APIC timer); the screen console on
//! VGA text (BIOS) and on the GOP framebuffer (UEFI), read back through QMP. QEMU TCG: no
//! VT-x needed.

use hypervisor::bootinfo::{Channel, RgbLayout};
use hypervisor::glyph::{Buffer, Painter, PixelFormat, Rgb};
use hypervisor::screen::Style;
use ninep_client::{dm, om, Client};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vmm_tests::emu::{self, Machine, Nic, Opts};
use vmm_tests::firmware::{no_pit, Qmp, Screendump, Uefi};
use vmm_tests::status::{num, read as status, text as field};

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
        qemu_args: no_pit(),
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

const PY9P_STATUS: &str = r#"
import sys
import py9p.client as client
c = client.Client.connect_tcp(sys.argv[1], int(sys.argv[2]), msize=8192)
c.transport.settimeout(60)
assert c.negotiate().version == "9P2000"
c.attach(0, uname="glenda", aname="")
c.walk(0, 1, "status")
c.open(1)
text = c.read(1, 4000).decode()
assert "net tcp!10.0.2.15!564" in text, text
print(text)
print("python-9p ok")
"#;

const GIB: u64 = 1 << 30;

#[test]
fn uefi_boots_the_iso_with_all_of_6_gib_and_four_cpus() {
    let uefi = Uefi::new();
    let m = Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        mem_mb: 6 * 1024,
        cpus: 4,
        virtio_ports: 0,
        nic: Some(Nic::VirtioNet),
        qemu_args: uefi.args.clone(),
        ..Opts::default()
    });
    let log = m.log();
    assert!(
        log.contains("acpi: rsdp ") && log.contains(" from multiboot2 tag"),
        "{log}"
    );
    // Every CPU the MADT lists came up and woke for its doorbell (TCG: no VMX on them).
    for n in 1..4 {
        assert!(
            log.contains(&format!("smp: cpu {n} (APIC {n}) online, no vmx"))
                && log.contains(&format!("smp: cpu {n} answers its doorbell\n")),
            "cpu {n}:\n{log}"
        );
    }

    // python-9p over TCP (virtio-net, its BAR above 4 GiB under OVMF, its interrupt a
    // message: q35 routes INTx only through ACPI's AML).
    let line = m.nic_line("virtio-net");
    assert!(line.contains(", msi-x vector 50 (entry 0 of "), "{line}");
    let out = emu::python(PY9P_STATUS, &["127.0.0.1", &m.tcp_port().to_string()]);
    assert!(out.contains("python-9p ok"), "{out}");
    assert!(m.got_device_message(), "{}", m.log());
    let c = m.tcp_client(OWNER, &format!("!{SECRET}"));
    let st = status(&c);
    assert_eq!(num(&st, "cpus"), 4, "{st}");
    let total = num(&st, "memtotal");
    assert!(
        total > 5 * GIB,
        "status counts {total} bytes of 6 GiB: {st}"
    );

    // Segments totalling more than 4 GiB: each written at its first and last page and read
    // back (the frames above 4 GiB go out first). TCG zeroes 1.5 GiB in about 15 s.
    c.set_timeout(Some(Duration::from_secs(120)));
    let size = 3 * GIB / 2;
    for i in 0..3u8 {
        let name = format!("big{i}");
        c.create("segment", &name, dm::DIR | 0o777, om::READ)
            .expect("create a segment");
        let ctl = c.open(&format!("segment/{name}/ctl"), om::WRITE).unwrap();
        ctl.write_str(&format!("va 0x10000000 {size:#x}"))
            .unwrap_or_else(|e| panic!("segment {i} of {size:#x} bytes: {e}\n{}", m.diagnostics()));
        let data = c.open(&format!("segment/{name}/data"), om::RDWR).unwrap();
        for off in [0, size - 4096] {
            let bytes: Vec<u8> = (0..4096u32)
                .map(|b| (b as u8) ^ i ^ (off >> 12) as u8)
                .collect();
            data.write_all_at(off, &bytes).expect("write a page");
            assert_eq!(data.read_at(off, 4096).expect("read it back"), bytes);
        }
    }
    let st = status(&c);
    assert_eq!(num(&st, "segments"), 3, "{st}");
    assert!(
        total - num(&st, "memfree") >= 4 * GIB + GIB / 2,
        "4.5 GiB in segments: {st}"
    );
}

#[test]
fn uefi_serves_9p_over_an_82574l() {
    let uefi = Uefi::new();
    let m = Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        mem_mb: 512,
        virtio_ports: 0,
        nic: Some(Nic::E1000e),
        qemu_args: uefi.args.clone(),
        ..Opts::default()
    });
    let log = m.log();
    let line = m.nic_line("e1000e");
    assert!(line.contains(", msi vector 50, "), "{line}");
    assert!(log.contains("e1000e: mac "), "{log}");
    let out = emu::python(PY9P_STATUS, &["127.0.0.1", &m.tcp_port().to_string()]);
    assert!(out.contains("python-9p ok"), "{out}");
    assert!(m.got_device_message(), "{}", m.log());
    // Bulk data both ways through the 82574L's rings.
    let c = m.tcp_client(OWNER, &format!("!{SECRET}"));
    vmm_tests::segment::bulk_round_trip(&c, "bulk");
}

/// The VGA text screen's characters, row by row.
fn screen_text(cells: &[u8], cols: usize) -> Vec<String> {
    cells
        .chunks(2 * cols)
        .map(|row| row.iter().step_by(2).map(|&b| b as char).collect())
        .collect()
}

#[test]
fn the_address_to_mount_is_on_the_screen() {
    let qmp = Qmp::new();
    let m = Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        virtio_ports: 0,
        nic: Some(Nic::VirtioNet),
        qemu_args: qmp.args(),
        ..Opts::default()
    });
    assert!(
        m.log()
            .contains("screen: the log on the text screen (80x25) too"),
        "{}",
        m.log()
    );
    // GRUB under SeaBIOS leaves VGA text mode: 80x25 cells at 0xb8000.
    assert_mount_address_shown(|| screen_text(&qmp.read_phys(0xb8000, 80 * 25 * 2), 80));
}

/// The title row names the address to mount, and the log is below it. The title is set
/// just after the address is logged (what the harness waits for): `read` reads the screen
/// again for a while until it is there.
fn assert_mount_address_shown(read: impl Fn() -> Vec<String>) {
    let mut rows = read();
    for _ in 0..10 {
        if rows[0].contains("tcp!") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        rows = read();
    }
    let title = rows[0].trim_end();
    assert!(
        title.ends_with(": 9P on tcp!10.0.2.15!564"),
        "title {title:?}\n{}",
        rows.join("\n")
    );
    assert!(
        rows.iter().any(|r| r.contains("ready; owner eve")),
        "the log is on the screen:\n{}",
        rows.join("\n")
    );
}

/// The characters on a framebuffer screen, row by row, read from a screendump by matching
/// each cell against the kernel's own glyphs in the row's colours ('#' where none match).
fn framebuffer_text(shot: &Screendump) -> Vec<String> {
    let ch = |shift| Channel { shift, bits: 8 };
    let format = PixelFormat::new(&RgbLayout {
        red: ch(16),
        green: ch(8),
        blue: ch(0),
    })
    .unwrap();
    let p = Painter::new(shot.width, shot.height, format).expect("cells fit on the screen");
    let mut buf = Buffer::new(shot.width, shot.height, 4 * shot.width);
    for (i, px) in shot.rgb.chunks_exact(3).enumerate() {
        let v = format.encode(Rgb(px[0], px[1], px[2]));
        buf.bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    (0..p.rows)
        .map(|row| {
            let (fg, bg) = Style::of_row(row).colours();
            (0..p.cols)
                .map(|col| p.read(&buf, row, col, fg, bg).map_or('#', char::from))
                .collect()
        })
        .collect()
}

#[test]
fn under_uefi_the_address_to_mount_is_painted_on_the_framebuffer() {
    let uefi = Uefi::new();
    let qmp = Qmp::new();
    let m = Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        mem_mb: 512,
        virtio_ports: 0,
        nic: Some(Nic::VirtioNet),
        qemu_args: [uefi.args.clone(), qmp.args()].concat(),
        ..Opts::default()
    });
    let log = m.log();
    // GRUB's EFI build hands over the GOP screen the kernel asked for (OVMF: 1280x800).
    let screen = log
        .lines()
        .find(|l| l.contains("screen: "))
        .unwrap_or_else(|| panic!("no screen line: {log}"));
    assert!(screen.contains(" framebuffer ("), "{screen}");
    assert_mount_address_shown(|| framebuffer_text(&qmp.screendump()));
}
