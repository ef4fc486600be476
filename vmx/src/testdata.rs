//! Where the tests find the real images they load: a Debian kernel and busybox-static;
//! and a writer they capture the tool's output with.
//! `scripts/setup` unpacks both into the workspace's `build/linux`; the environment
//! (`VMX_TEST_BZIMAGE`, `VMX_TEST_BUSYBOX`) overrides, and `/tmp/linux` and `/boot` are
//! looked at last.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A writer the tests give the tool for its output and log, and read back.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// What was written, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

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

/// A QEMU VM (TCG) booted from copies of the same root disk and initramfs, with a
/// virtio-net card on a unix stream socket QEMU listens on (`-netdev stream`); its console
/// on pipes. Killed on drop.
pub struct QemuPeer {
    child: std::process::Child,
    out: Capture,
    /// The VM's console input.
    pub stdin: std::process::ChildStdin,
}

impl Drop for QemuPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl QemuPeer {
    /// Starts the VM (its disk a copy in `dir`, its socket `dir/lan.sock`) and connects
    /// a link to it, as `-n unix!dir/lan.sock` does.
    pub fn start(
        dir: &std::path::Path,
    ) -> (
        QemuPeer,
        Box<dyn crate::virtio::net::Link>,
        crate::virtio::net::FrameSource,
    ) {
        let sock = dir.join("lan.sock");
        let peer = QemuPeer::spawn(dir, &sock);
        let t0 = std::time::Instant::now();
        while !sock.exists() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(60),
                "QEMU made no {sock:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let spec = crate::virtio::net::Spec::parse(&format!("unix!{}", sock.display()))
            .expect("a unix link");
        let (link, frames) = spec.open().expect("connect to QEMU's socket");
        (peer, link, frames)
    }

    /// Waits for the VM's shell and gives its eth0 `cidr` (e.g. 10.0.0.2/24).
    pub fn up(&mut self, cidr: &str) {
        // A few seconds on an idle machine; minutes when Bochs runs beside it.
        self.expect("/ # ", 900);
        let cmd =
            format!("ip link set eth0 up; ip addr add {cidr} dev eth0; echo peer-$((1+1))-up\n");
        self.stdin.write_all(cmd.as_bytes()).expect("type at QEMU");
        self.expect("peer-2-up", 60);
    }

    fn spawn(dir: &std::path::Path, sock: &std::path::Path) -> QemuPeer {
        use std::process::{Command, Stdio};
        let (disk, initrd) = root_disk();
        let copy = dir.join("peer.ext4");
        std::fs::copy(&disk, &copy).unwrap();
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "accel=tcg",
                "-m",
                "256",
                "-nographic",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(debian_kernel())
            .arg("-initrd")
            .arg(&initrd)
            .arg("-drive")
            .arg(format!("file={},if=none,format=raw,id=d0", copy.display()))
            .args(["-device", "virtio-blk-pci,drive=d0"])
            .arg("-netdev")
            .arg(format!(
                "stream,id=n0,server=on,addr.type=unix,addr.path={}",
                sock.display()
            ))
            .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02"])
            .args(["-append", "console=ttyS0 panic=-1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run qemu-system-x86_64");
        let out = Capture::default();
        let mut so = child.stdout.take().unwrap();
        std::thread::spawn({
            let mut out = out.clone();
            move || std::io::copy(&mut so, &mut out)
        });
        let stdin = child.stdin.take().unwrap();
        QemuPeer { child, out, stdin }
    }

    pub fn text(&self) -> String {
        self.out.text()
    }

    /// Waits for `what` on the console (at most `secs`).
    pub fn expect(&self, what: &str, secs: u64) {
        let t0 = std::time::Instant::now();
        while !self.text().contains(what) {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(secs),
                "the QEMU peer did not print {what:?}:\n{}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
