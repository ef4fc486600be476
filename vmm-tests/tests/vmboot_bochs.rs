//! A VM from a shell: `scripts/vmboot` boots Debian's SeaBIOS on the hypervisor with
//! nothing but file writes and reads over a Linux v9fs mount. The hypervisor boots under
//! Bochs (VT-x) and serves 9P on its e1000; Debian's kernel boots under QEMU TCG from a
//! busybox initramfs holding the script and the ROM, and mounts the hypervisor over TCP
//! as its owner (vmm_tests::linux, the v9fs test's client). No vmx process runs: the
//! script makes the segments, the VM, its devices (`firmware` among them), map and
//! registers, says `go` and copies `cons` out; SeaBIOS's banner and its "No bootable
//! device" arrive there. SeaBIOS then waits 60 s of its time before it resets (the stop
//! that ends the script by itself), longer than a test should: the script is stopped
//! with TERM, as a user would with ^C, and leaves no VM and no segment behind. A file
//! that is not a ROM is refused by the script with a clear error before it makes
//! anything.

use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::linux::{Link, Linux, GATEWAY};
use vmm_tests::status::text as field;

const OWNER: &str = "eve";
const SECRET: &str = "vmboot-test-secret";
/// What one shell command may take.
const STEP: Duration = Duration::from_secs(120);
/// The script's start to SeaBIOS's "No bootable device": the ROM's upload and POST.
const BOOT: Duration = Duration::from_secs(300);

struct Rig {
    linux: Linux,
    hv: Machine,
}

impl Rig {
    fn run(&mut self, cmd: &str) -> (i32, String) {
        eprintln!("client$ {cmd}");
        match self.linux.run(cmd, STEP) {
            Ok((st, out)) => {
                eprint!("{out}");
                (st, out)
            }
            Err(e) => panic!("{e}\n{}", self.hv.diagnostics()),
        }
    }

    fn ok(&mut self, cmd: &str) -> String {
        let (st, out) = self.run(cmd);
        assert_eq!(st, 0, "{cmd:?} failed:\n{out}\n{}", self.hv.diagnostics());
        out
    }

    /// No VM and no segment on the hypervisor, and all its memory free.
    fn nothing_left(&mut self, memfree: &str) {
        assert_eq!(self.ok("ls /mnt/vmx").trim(), "clone");
        assert_eq!(self.ok("ls /mnt/segment").trim(), "");
        let status = self.ok("cat /mnt/status");
        assert_eq!(field(&status, "vms"), "0", "{status}");
        assert_eq!(field(&status, "segments"), "0", "{status}");
        assert_eq!(field(&status, "memfree"), memfree, "{status}");
    }
}

#[test]
fn vmboot_boots_seabios_over_v9fs() {
    let rom = std::fs::read(vmx::firmware::DEFAULT_BIOS).expect("the seabios package's ROM");
    let script = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/vmboot"))
        .expect("scripts/vmboot");
    let hv = Machine::bochs(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=net"),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        slowdown: true,
        ..Opts::default()
    });
    let linux = Linux::boot(
        Link::Tcp(hv.tcp_port()),
        &[("vmboot", &script), ("bios.bin", &rom)],
        Duration::from_secs(120),
    );
    let mut r = Rig { linux, hv };
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
    r.nothing_left(&memfree);

    // SeaBIOS, in the background; its console and the script's words in /tmp/con.
    let start = Instant::now();
    r.ok("sh /vmboot -m 16 /mnt /bios.bin > /tmp/con 2>&1 & echo $! > /tmp/pid");
    let mut con = String::new();
    while !con.contains("No bootable device") {
        assert!(
            start.elapsed() < BOOT,
            "no \"No bootable device\" after {BOOT:?}:\n{con}\n{}",
            r.hv.diagnostics()
        );
        std::thread::sleep(Duration::from_secs(5));
        con = r.ok("cat /tmp/con");
        assert!(!con.contains("vmboot: "), "the script stopped:\n{con}");
    }
    eprintln!(
        "vmboot: the script's start to \"No bootable device\": {:?}",
        start.elapsed()
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
    r.nothing_left(&memfree);
}
