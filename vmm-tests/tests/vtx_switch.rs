//! The harness's switch for the VT-x tests (vmm_tests::emu::vtx), host only: fed the facts
//! (a CPU flags file, a KVM device node, `HV_ACCEL`), it picks QEMU on KVM where VT-x is
//! usable and Bochs otherwise. The KVM run itself needs a machine with VT-x.

use std::path::{Path, PathBuf};
use vmm_tests::emu::vtx::{choose, qemu_accel};
use vmm_tests::emu::Kind;

/// A directory with a `cpuinfo` whose flags line holds `flags`, and a `kvm` node that
/// exists (read-write) when `kvm` is true.
fn facts(name: &str, flags: &str, kvm: bool) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("vtx-switch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cpuinfo = dir.join("cpuinfo");
    std::fs::write(
        &cpuinfo,
        format!("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n"),
    )
    .unwrap();
    let node = dir.join("kvm");
    if kvm {
        std::fs::write(&node, "").unwrap();
    }
    (cpuinfo, node)
}

fn decided(cpuinfo: &Path, kvm: &Path, hv_accel: Option<&str>) -> Kind {
    choose(hv_accel, &qemu_accel(Some(cpuinfo), Some(kvm)))
}

#[test]
fn kvm_when_the_flags_show_vmx_and_dev_kvm_is_there() {
    let (ci, kvm) = facts("yes", "fpu vme de pse tsc msr vmx ept vpid", true);
    assert_eq!(qemu_accel(Some(&ci), Some(&kvm)), "kvm");
    assert_eq!(decided(&ci, &kvm, None), Kind::Qemu);
    // The flag as the last word of the line too.
    let (ci, kvm) = facts("last", "fpu sse2 vmx", true);
    assert_eq!(decided(&ci, &kvm, None), Kind::Qemu);
}

#[test]
fn bochs_without_vmx_or_without_dev_kvm() {
    // AMD's svm, or a flag that merely starts with vmx, is not VT-x.
    for (name, flags) in [("none", "fpu sse2 svm"), ("prefix", "fpu vmxyz sse2")] {
        let (ci, kvm) = facts(name, flags, true);
        assert_eq!(qemu_accel(Some(&ci), Some(&kvm)), "tcg", "{flags}");
        assert_eq!(decided(&ci, &kvm, None), Kind::Bochs, "{flags}");
    }
    let (ci, kvm) = facts("nodev", "fpu vmx ept", false);
    assert_eq!(qemu_accel(Some(&ci), Some(&kvm)), "tcg");
    assert_eq!(decided(&ci, &kvm, None), Kind::Bochs);
}

#[test]
fn hv_accel_overrides_the_facts() {
    let (ci, kvm) = facts("override-yes", "fpu vmx", true);
    assert_eq!(decided(&ci, &kvm, Some("bochs")), Kind::Bochs);
    // QEMU without KVM has no VT-x: tcg means Bochs for these tests.
    assert_eq!(decided(&ci, &kvm, Some("tcg")), Kind::Bochs);
    let (ci, kvm) = facts("override-no", "fpu sse2", false);
    assert_eq!(decided(&ci, &kvm, Some("kvm")), Kind::Qemu);
    // Anything else is left to the facts.
    assert_eq!(decided(&ci, &kvm, Some("")), Kind::Bochs);
}

#[test]
fn qemu_accel_honours_hv_accel_for_qemu_itself() {
    let (ci, kvm) = facts("script", "fpu sse2", false);
    let run = |accel: &str| {
        let out = std::process::Command::new(vmm_tests::emu::workspace().join("qemu/accel"))
            .env("HV_ACCEL", accel)
            .env("HV_CPUINFO", &ci)
            .env("HV_KVM_DEV", &kvm)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run("kvm"), "kvm");
    assert_eq!(run("tcg"), "tcg");
    assert_eq!(run("bochs"), "tcg");
}
