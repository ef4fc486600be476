//! The kernel and its ISO as the machines boot them, built once per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the kernel and an ISO for `cmdline` once per test process (qemu/build-iso), in a
/// target directory of its own so the nested cargo does not wait on the outer one's lock.
pub fn iso(cmdline: &str) -> PathBuf {
    static ISOS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut isos = ISOS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = isos.get(cmdline) {
        return p.clone();
    }
    let ws = workspace();
    let target = target_dir();
    let dir = target.join("vmm-iso");
    std::fs::create_dir_all(&dir).expect("create the ISO directory");
    // One file per command line, rebuilt once per test process (so never a stale kernel).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(cmdline, &mut h);
    let path = dir.join(format!(
        "hypervisor-{:016x}.iso",
        std::hash::Hasher::finish(&h)
    ));
    let out = Command::new(ws.join("qemu/build-iso"))
        .env("CARGO", env!("CARGO"))
        .env("HV_CMDLINE", cmdline)
        .env("HV_ISO", &path)
        .env("CARGO_TARGET_DIR", target.join("vmm-kernel"))
        .current_dir(&ws)
        .output()
        .expect("run qemu/build-iso");
    assert!(
        out.status.success(),
        "qemu/build-iso failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    isos.insert(cmdline.to_string(), path.clone());
    path
}

/// The kernel ELF that `iso` built.
pub fn kernel_elf() -> PathBuf {
    target_dir().join("vmm-kernel/x86_64-unknown-none/release/hypervisor")
}

/// The outer build's target directory (`CARGO_TARGET_DIR`, else the workspace's `target`):
/// the nested builds use directories of their own inside it.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}
