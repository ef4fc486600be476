//! The command line's device flags, before any hypervisor is dialed: bad disks, links
//! and COM2 wiring are refused with a message naming the flag.

use std::process::Command;

fn vmx(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
        .args(["-a", "unix!/nonexistent/vmx-cli-test.sock", "--demo"])
        .args(args)
        .output()
        .expect("run vmx");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn device_flags_are_checked() {
    let (ok, e) = vmx(&["-d", "/nonexistent/disk.img"]);
    assert!(!ok && e.contains("-d /nonexistent/disk.img"), "{e}");
    let (ok, e) = vmx(&["-d", "seg:/nonexistent/disk.img"]);
    assert!(!ok && e.contains("-d /nonexistent/disk.img: "), "{e}");
    let (ok, e) = vmx(&["-d", "/dev/null"]);
    assert!(!ok && e.contains("less than one 512-byte sector"), "{e}");
    let (ok, e) = vmx(&["-n", "listen!tap!tap0"]);
    assert!(!ok && e.contains("-n \"listen!tap!tap0\": expected"), "{e}");
    let (ok, e) = vmx(&["-n", "unix!/nonexistent/lan.sock"]);
    assert!(!ok && e.contains("-n unix!/nonexistent/lan.sock: "), "{e}");
    let (ok, e) = vmx(&["--no-kernel-nets", "-n", "unix!/nonexistent/lan.sock"]);
    assert!(!ok && e.contains("-n unix!/nonexistent/lan.sock: "), "{e}");
    let (ok, e) = vmx(&["-C", "stdio"]);
    assert!(!ok && e.contains("-C: COM2 takes files"), "{e}");
    let (ok, e) = vmx(&["-C", "/nonexistent/in"]);
    assert!(!ok && e.contains("-C /nonexistent/in: "), "{e}");
    // Good device flags get as far as dialing the (absent) hypervisor.
    let img = std::env::temp_dir().join(format!("vmx-cli-{}.img", std::process::id()));
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let ro = format!("ro:{}", img.display());
    for args in [
        &["-d", &ro, "-C", ",/dev/null"][..],
        &["-d", &format!("seg:{ro}")],
        &["--no-kernel-disks", "-d", &ro],
    ] {
        let (ok, e) = vmx(args);
        assert!(
            !ok && e.contains("dial unix!/nonexistent/vmx-cli-test.sock"),
            "{args:?}: {e}"
        );
    }
    let _ = std::fs::remove_file(&img);
}

/// `--bios` with a file that is not a ROM: one line naming the file and what is wrong,
/// before any dial; a good ROM gets as far as dialing.
#[test]
fn bios_files_are_checked() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vmx"))
            .args(["-a", "unix!/nonexistent/vmx-cli-test.sock"])
            .args(args)
            .output()
            .expect("run vmx");
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{e}");
        e
    };
    let dir = std::env::temp_dir();
    let file = |name: &str, data: &[u8]| {
        let p = dir.join(format!("vmx-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, data).unwrap();
        p.display().to_string()
    };
    let small = file("small.rom", &[0xea; 1000]);
    let e = run(&["--bios", &small]);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains(&small) && e.contains("not a BIOS ROM: 1000 bytes"),
        "{e}"
    );
    let odd = file("odd.rom", &vec![0xea; 100 << 10]);
    assert!(run(&["--bios", &odd]).contains("not a multiple of 64 KiB"));
    let zeros = file("zeros.rom", &vec![0; 128 << 10]);
    assert!(run(&["--bios", &zeros]).contains("no jump at the reset vector"));
    let e = run(&["--bios", "/nonexistent/bios.bin"]);
    assert!(e.contains("/nonexistent/bios.bin"), "{e}");
    let e = run(&["--bios", &small, "--demo"]);
    assert!(e.contains("--bios boots the firmware"), "{e}");
    let mut rom = vec![0u8; 64 << 10];
    rom[(64 << 10) - 16] = 0xea;
    let good = file("good.rom", &rom);
    let e = run(&["--bios", &good]);
    assert!(
        e.contains("dial unix!/nonexistent/vmx-cli-test.sock"),
        "{e}"
    );
    // A kernel through the firmware (QEMU's -kernel): the word after --bios is its ROM,
    // so a kernel there is named as what it is; -m needs a kernel; a kernel that is not a
    // bzImage is refused; a good one gets as far as dialing (Debian's qemu-system-data
    // ships the option ROM it needs).
    let mut bz = vec![0u8; 5 * 512 + 4096];
    bz[0x1f1] = 4;
    bz[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    bz[0x201] = 0x6a;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    bz[0x211] = 1;
    bz[0x1f4..0x1f8].copy_from_slice(&256u32.to_le_bytes());
    bz[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    bz[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    let kernel = file("bzImage", &bz);
    let e = run(&["--bios", &kernel]);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("a Linux kernel, not a BIOS ROM"), "{e}");
    let e = run(&["--bios", &good, "-m", &kernel]);
    assert!(e.contains("-m is a kernel's initrd"), "{e}");
    let e = run(&["--bios", &good, "-M", "64M", &small]);
    assert!(e.contains(&small) && e.contains("linux:"), "{e}");
    let e = run(&["--bios", &good, "-M", "64M", &kernel, "console=ttyS0"]);
    assert!(
        e.contains("dial unix!/nonexistent/vmx-cli-test.sock"),
        "{e}"
    );
    for p in [small, odd, zeros, good, kernel] {
        let _ = std::fs::remove_file(p);
    }
}
