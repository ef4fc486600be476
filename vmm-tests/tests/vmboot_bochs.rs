//! A VM from a shell: `scripts/vmboot` boots Debian's SeaBIOS on the hypervisor with
//! nothing but file writes and reads over a Linux v9fs mount. The hypervisor boots under
//! Bochs (VT-x) and serves 9P on its e1000; Debian's kernel boots under QEMU TCG from a
//! busybox initramfs holding the script and the ROM, and mounts the hypervisor over TCP
//! as its owner (vmm_tests::linux, the v9fs test's client). No vmx process runs: the
//! script makes the segments, the VM, its devices (`firmware` among them), map and
//! registers, says `go` and copies `cons` out; SeaBIOS's banner and its "No bootable
//! device" arrive there. SeaBIOS then waits 60 s of its time before it resets (the stop
//! that ends the script by itself), longer than a test should: the script is stopped
//! with TERM, as a user would with ^C, and leaves no VM and no segment behind. Then a
//! disk image (a boot sector that prints and halts with interrupts off) on the
//! hypervisor's virtio-blk, from a segment (`-d`): SeaBIOS boots it, its message
//! arrives on `cons`, and its halt stops the VM, which ends the script by itself, again
//! leaving nothing behind. A file that is not a ROM is refused by the script with a
//! clear error before it makes anything. Last, the hybrid ISO of the tool's firmware
//! test (vmm_tests::fixtures::bootiso: grub-mkrescue, GRUB on COM1) goes the same way,
//! copied into its segment with `cp`: SeaBIOS boots it from the kernel's virtio-blk and
//! GRUB's menu arrives on `cons`; TERM then ends the script (GRUB goes on to boot Linux),
//! which leaves nothing behind. (Measured: the ISO, 19.7 MB, is uploaded and SeaBIOS's
//! banner is on `cons` 25 s after the script's start, GRUB's menu after 75 s; the whole
//! test takes about 4.5 minutes.)

use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::fixtures::{bootiso, Shell};
use vmm_tests::linux::{Link, Linux, GATEWAY};
use vmm_tests::status::text as field;

const OWNER: &str = "eve";
const SECRET: &str = "vmboot-test-secret";
/// The script's start to SeaBIOS's "No bootable device": the ROM's upload and POST.
const BOOT: Duration = Duration::from_secs(300);
/// The script's start to GRUB's menu from the ISO: its upload (some MiB over the
/// e1000 of a Bochs that runs no faster than the host's clock) and SeaBIOS's POST.
const ISO_BOOT: Duration = Duration::from_secs(900);

/// No VM and no segment on the hypervisor, and all its memory free.
fn nothing_left(r: &mut Shell, memfree: &str) {
    assert_eq!(r.ok("ls /mnt/vmx").trim(), "clone");
    assert_eq!(r.ok("ls /mnt/segment").trim(), "");
    let status = r.ok("cat /mnt/status");
    assert_eq!(field(&status, "vms"), "0", "{status}");
    assert_eq!(field(&status, "segments"), "0", "{status}");
    assert_eq!(field(&status, "memfree"), memfree, "{status}");
}

/// A 1 MiB disk whose boot sector prints "booted from the kernel's disk" on COM1, then
/// `cli; hlt`, which stops the VM for its client and so ends the script by itself.
/// (xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8; a lodsb/out loop to the NUL; cli;
/// hlt.) A disk under 16 heads of 63 sectors (504 KiB) has no cylinder for SeaBIOS's
/// CHS geometry, and its boot read of sector 1 fails.
fn boot_sector() -> Vec<u8> {
    const MSG: &[u8] = b"booted from the kernel's disk\r\n\0";
    let code: [u8; 22] = [
        0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x16, 0x7c, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0, 0x74, 0x03,
        0xee, 0xeb, 0xf8, 0xfa, 0xf4, 0xeb, 0xfc,
    ];
    let mut d = vec![0u8; 1 << 20];
    d[..code.len()].copy_from_slice(&code);
    d[code.len()..code.len() + MSG.len()].copy_from_slice(MSG);
    d[510] = 0x55;
    d[511] = 0xaa;
    d
}

/// Starts `cmd` in the client's background with its output in `file`, and polls that
/// file until it holds `what` (panicking if the script says anything else first, or
/// after [`BOOT`]); the output then.
fn run_until(r: &mut Shell, cmd: &str, file: &str, what: &str, bad: Option<&str>) -> String {
    let start = Instant::now();
    r.ok(&format!("{cmd} > {file} 2>&1 & echo $! > /tmp/pid"));
    wait_for(r, file, what, bad, start, BOOT)
}

/// Polls `file` until it holds `what` (panicking if it holds `bad` first, or `timeout`
/// after `start`); the output then.
fn wait_for(
    r: &mut Shell,
    file: &str,
    what: &str,
    bad: Option<&str>,
    start: Instant,
    timeout: Duration,
) -> String {
    loop {
        let con = r.ok(&format!("cat {file}"));
        if con.contains(what) {
            eprintln!(
                "vmboot: the script's start to {what:?}: {:?}",
                start.elapsed()
            );
            return con;
        }
        if let Some(b) = bad {
            assert!(!con.contains(b), "the script stopped:\n{con}");
        }
        assert!(
            start.elapsed() < timeout,
            "no {what:?} after {timeout:?}:\n{con}\n{}",
            r.hv.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

#[test]
fn vmboot_boots_seabios_over_v9fs() {
    let rom = std::fs::read(vmx::firmware::DEFAULT_BIOS).expect("the seabios package's ROM");
    let script = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/vmboot"))
        .expect("scripts/vmboot");
    let dir = vmm_tests::fixtures::scratch("vmboot");
    let iso = std::fs::read(bootiso::grub_iso(&dir)).expect("the ISO");
    eprintln!("vmboot: the ISO is {} bytes", iso.len());
    let hv = Machine::bochs(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        slowdown: true,
        ..Opts::default()
    });
    let linux = Linux::boot(
        Link::Tcp(hv.tcp_port()),
        &[
            ("vmboot", &script),
            ("bios.bin", &rom),
            ("mbr.img", &boot_sector()),
            ("boot.iso", &iso),
        ],
        Duration::from_secs(120),
    );
    let mut r = Shell { linux, hv };
    let port = r.linux.tcp_port();
    r.ok(&format!(
        "mount -t 9p -o trans=tcp,port={port},version=9p2000,cache=none,uname={OWNER},\
         aname=!{SECRET} {GATEWAY} /mnt"
    ));
    let memfree = field(&r.ok("cat /mnt/status"), "memfree");

    // Not ROMs: the script itself, and 64 KiB of zeros (no jump at the reset vector).
    let (st, out) = r.run("sh /vmboot /mnt /vmboot");
    assert_eq!(st, 1, "{out}");
    assert!(
        out.contains("/vmboot: not a BIOS ROM: not a whole number of 64 KiB blocks"),
        "{out}"
    );
    r.ok("dd if=/dev/zero of=/tmp/zero.rom bs=65536 count=1 2>/dev/null");
    let (st, out) = r.run("sh /vmboot /mnt /tmp/zero.rom");
    assert_eq!(st, 1, "{out}");
    assert!(
        out.contains("/tmp/zero.rom: not a BIOS ROM: no jump at the reset vector"),
        "{out}"
    );
    nothing_left(&mut r, &memfree);

    // SeaBIOS with no disk, in the background; its console and the script's words in
    // /tmp/con.
    let con = run_until(
        &mut r,
        "sh /vmboot -m 16 /mnt /bios.bin",
        "/tmp/con",
        "No bootable device",
        Some("vmboot: "),
    );
    let banner = con.find("SeaBIOS (version").expect("SeaBIOS's banner");
    let nodisk = con.find("No bootable device").expect("no disk, said so");
    assert!(banner < nodisk, "{con}");
    assert!(con.contains("RamSize: 0x01000000 [cmos]"), "{con}");
    // It is running (SeaBIOS waits 60 s of its time, then resets): TERM makes the script
    // remove the VM and the segments. (SIGINT, ^C at a terminal, is ignored by a
    // background job.)
    assert!(r.ok("cat /mnt/vmx/*/status").contains("running"));
    let out = r.ok("p=$(cat /tmp/pid); kill -TERM $p; wait $p; echo status=$?");
    assert!(out.contains("status=143"), "{out}");
    nothing_left(&mut r, &memfree);

    // A disk image on the hypervisor's virtio-blk: SeaBIOS boots its boot sector, whose
    // `cli; hlt` stops the VM, and the script ends by itself.
    let con = run_until(
        &mut r,
        "(sh /vmboot -d /mbr.img /mnt /bios.bin; echo exit=$?)",
        "/tmp/con2",
        "exit=",
        None,
    );
    let booting = con
        .find("Booting from Hard Disk")
        .expect("SeaBIOS found the disk");
    let booted = con
        .find("booted from the kernel's disk")
        .expect("the boot sector ran");
    assert!(booting < booted, "{con}");
    // Stopped (not dead) by the halt with interrupts off: exit reason 12.
    let stopped = con
        .find("vmboot: the guest stopped: ready, ")
        .expect("stopped");
    assert!(con[stopped..].contains("exitreason 0x0000000c"), "{con}");
    assert!(con.contains("exit=0"), "{con}");
    nothing_left(&mut r, &memfree);

    // The ISO the same way, with `cp` into its segment: SeaBIOS boots it from the
    // kernel's virtio-blk (its debug port on `cons`), then GRUB's menu comes on COM1,
    // also `cons`. The upload's end is SeaBIOS's banner.
    let start = Instant::now();
    r.ok("sh /vmboot -m 64 -d /boot.iso /mnt /bios.bin > /tmp/con3 2>&1 & echo $! > /tmp/pid");
    wait_for(
        &mut r,
        "/tmp/con3",
        "SeaBIOS (version",
        Some("vmboot: "),
        start,
        ISO_BOOT,
    );
    let con = wait_for(
        &mut r,
        "/tmp/con3",
        bootiso::MENU_ENTRY,
        Some("vmboot: "),
        start,
        ISO_BOOT,
    );
    let booting = con
        .find("Booting from Hard Disk")
        .expect("SeaBIOS found the disk");
    let menu = con.find(bootiso::MENU_ENTRY).expect("GRUB's menu");
    assert!(booting < menu, "{con}");
    // GRUB goes on to Linux (in 64 MiB): TERM ends the script,
    // which removes the VM and the segments.
    let out = r.ok("p=$(cat /tmp/pid); kill -TERM $p; wait $p; echo status=$?");
    assert!(out.contains("status=143"), "{out}");
    nothing_left(&mut r, &memfree);
    let _ = std::fs::remove_dir_all(&dir);
}
