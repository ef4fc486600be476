//! Where the tests find the real images they load: a Debian kernel and busybox-static.
//! `scripts/setup` unpacks both into the workspace's `build/linux`; the environment
//! (`VMX_TEST_BZIMAGE`, `VMX_TEST_BUSYBOX`) overrides, and `/tmp/linux` and `/boot` are
//! looked at last.

use std::path::PathBuf;

const BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../build/linux");

/// The newest Debian kernel (`vmlinuz-*`): panics with how to get one when there is none.
pub fn debian_kernel() -> PathBuf {
    find(
        "VMX_TEST_BZIMAGE",
        &[
            &format!("{BUILD}/root/boot"),
            "/tmp/linux/root/boot",
            "/boot",
        ],
        "vmlinuz-",
    )
}

/// busybox-static's binary: panics with how to get one when there is none.
pub fn busybox() -> PathBuf {
    find(
        "VMX_TEST_BUSYBOX",
        &[&format!("{BUILD}/busybox/bin"), "/tmp/linux/busybox/bin"],
        "busybox",
    )
}

fn find(env: &str, dirs: &[&str], prefix: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        v.sort();
        if let Some(p) = v.pop() {
            return p;
        }
    }
    panic!(
        "no {prefix}* for the tests in {dirs:?}: run scripts/setup (it unpacks Debian's \
         linux-image-amd64 and busybox-static into build/linux) or set {env}"
    );
}

/// The root disk and initramfs `vmx/mkroot` builds (scripts/setup runs it): panics with
/// how to get them when they are missing.
pub fn root_disk() -> (PathBuf, PathBuf) {
    let d = PathBuf::from(format!("{BUILD}/vda"));
    let (disk, initrd) = (d.join("root.ext4"), d.join("initrd"));
    assert!(
        disk.exists() && initrd.exists(),
        "no {} or {}: run scripts/setup (or vmx/mkroot)",
        disk.display(),
        initrd.display()
    );
    (disk, initrd)
}
