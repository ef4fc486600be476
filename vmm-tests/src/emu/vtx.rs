//! What runs the tests that need VT-x (the kernel's VMs, Linux and memtest86+ through the
//! tool): Bochs, whose CPU model has VMX, or QEMU on KVM with nested VT-x, where the SDM's
//! VM-entry checks are applied by a real CPU. `HV_ACCEL=kvm` or `HV_ACCEL=bochs` chooses;
//! by default KVM wherever `qemu/accel` finds it usable (`/dev/kvm` and `vmx` in the CPU
//! flags), Bochs otherwise. QEMU without KVM (TCG) has no VT-x, so `HV_ACCEL=tcg` means
//! Bochs here.

use super::{workspace, Kind, Machine, Opts};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The emulator for VT-x tests given `HV_ACCEL` (`hv_accel`) and what `qemu/accel` says
/// QEMU would run on (`qemu_accel`: `kvm` or `tcg`).
pub fn choose(hv_accel: Option<&str>, qemu_accel: &str) -> Kind {
    match hv_accel {
        Some("kvm") => Kind::Qemu,
        Some("bochs" | "tcg") => Kind::Bochs,
        _ if qemu_accel == "kvm" => Kind::Qemu,
        _ => Kind::Bochs,
    }
}

/// What `qemu/accel` prints, with the facts from `cpuinfo` and `kvm` where given (else the
/// host's) and without `HV_ACCEL` (the choice left to [`choose`]).
pub fn qemu_accel(cpuinfo: Option<&Path>, kvm: Option<&Path>) -> String {
    let mut cmd = Command::new(workspace().join("qemu/accel"));
    cmd.env_remove("HV_ACCEL");
    if let Some(p) = cpuinfo {
        cmd.env("HV_CPUINFO", p);
    }
    if let Some(p) = kvm {
        cmd.env("HV_KVM_DEV", p);
    }
    let out = cmd.output().expect("run qemu/accel");
    assert!(out.status.success(), "qemu/accel failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The emulator this host runs the VT-x tests on (decided once per test process).
pub fn vtx_kind() -> Kind {
    static KIND: OnceLock<Kind> = OnceLock::new();
    *KIND.get_or_init(|| {
        let hv = std::env::var("HV_ACCEL").ok();
        let kind = choose(hv.as_deref(), &qemu_accel(None, None));
        if kind == Kind::Qemu {
            eprintln!("emu: VT-x tests on QEMU with KVM");
        }
        kind
    })
}

impl Machine {
    /// Boots the ISO where VT-x tests run ([`vtx_kind`]): Bochs, or QEMU on KVM. Options
    /// for one emulator only (`ips`, `slowdown` for Bochs; `virtio_ports`, `direct` for
    /// QEMU) are ignored by the other.
    pub fn vtx(opts: Opts) -> Machine {
        match vtx_kind() {
            Kind::Qemu => Machine::qemu(opts),
            Kind::Bochs => Machine::bochs(opts),
        }
    }
}
