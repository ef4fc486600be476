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
    let (ok, e) = vmx(&["-n", "listen!tap!tap0"]);
    assert!(!ok && e.contains("-n \"listen!tap!tap0\": expected"), "{e}");
    let (ok, e) = vmx(&["-n", "unix!/nonexistent/lan.sock"]);
    assert!(!ok && e.contains("-n unix!/nonexistent/lan.sock: "), "{e}");
    let (ok, e) = vmx(&["-C", "stdio"]);
    assert!(!ok && e.contains("-C: COM2 takes files"), "{e}");
    let (ok, e) = vmx(&["-C", "/nonexistent/in"]);
    assert!(!ok && e.contains("-C /nonexistent/in: "), "{e}");
    // Good device flags get as far as dialing the (absent) hypervisor.
    let img = std::env::temp_dir().join(format!("vmx-cli-{}.img", std::process::id()));
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let ro = format!("ro:{}", img.display());
    let (ok, e) = vmx(&["-d", &ro, "-C", ",/dev/null"]);
    assert!(
        !ok && e.contains("dial unix!/nonexistent/vmx-cli-test.sock"),
        "{e}"
    );
    let _ = std::fs::remove_file(&img);
}
