//! The goal beyond the demo: Debian's unmodified kernel with a busybox initramfs
//! reaches an interactive shell under Bochs, driven only over 9P, and the 9P round trips
//! the boot took are printed by exit reason. Slow (an upload of ~10 MB over the emulated
//! serial line, then every port access of the boot a round trip), so ignored by default:
//! `cargo test -p vmx --test linux_bochs -- --ignored --nocapture`. The guest's console
//! is copied to $VMX_LINUX_LOG (default /tmp/vmx-linux-bochs.out) as it arrives.
//!
//! Needs the Debian kernel and busybox-static as the QEMU tests do (see linux_qemu.rs).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs, Module};
use vmx::session::{self, Options};

#[derive(Clone)]
struct Tee(Arc<Mutex<Vec<u8>>>, Arc<Mutex<std::fs::File>>);

impl Write for Tee {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        let mut f = self.1.lock().unwrap();
        f.write_all(b)?;
        f.flush()?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
#[ignore]
fn linux_reaches_a_busybox_shell_under_bochs() {
    let kernel = std::fs::read(vmx::testdata::debian_kernel()).unwrap();
    let busybox = std::fs::read(vmx::testdata::busybox()).unwrap();
    let initrd = vmx::cpio::busybox_initramfs(&busybox, "echo vmx-initramfs-$((6*7)); exec sh");
    let layout = Layout::new(128 << 20).unwrap();
    let cmdline = "console=ttyS0 panic=-1";
    let img = loader::load(
        &kernel,
        &layout,
        &BootArgs {
            cmdline: cmdline.into(),
            modules: vec![Module {
                name: "initrd".into(),
                data: initrd,
            }],
        },
    )
    .unwrap();

    let m = Machine::bochs(Opts {
        virtio_ports: 0,
        mem_mb: 384,
        ips: 4_000_000,
        ..Opts::default()
    });
    let client = m.client("eve", "");
    client.set_timeout(None);
    let path = std::env::var("VMX_LINUX_LOG").unwrap_or_else(|_| "/tmp/vmx-linux-bochs.out".into());
    let file = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
    let out = Tee(Arc::new(Mutex::new(Vec::new())), file.clone());
    let log = Tee(Arc::new(Mutex::new(Vec::new())), file);
    let (mut keys, input) = UnixStream::pair().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn({
        let (out, log) = (out.clone(), log.clone());
        move || {
            let opts = Options {
                segment: "linux".into(),
                out: Box::new(out),
                input: Some(Box::new(input)),
                log: Box::new(log),
                tty: false,
                debug: true,
                trace: Some(Box::new(std::io::BufWriter::new(
                    std::fs::File::create("/tmp/vmx-linux-bochs.trace").unwrap(),
                ))),
                pipeline: true,
                devices: Default::default(),
            };
            let _ = tx.send(session::run(client, &layout, &img, opts));
        }
    });
    let text = || String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    let start = Instant::now();
    let limit = Duration::from_secs(
        std::env::var("VMX_LINUX_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    );
    let mut typed = false;
    while start.elapsed() < limit {
        if let Ok(r) = rx.try_recv() {
            let r = r.unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
            panic!(
                "the guest stopped: {:?}\n{}\n--- round trips ---\n{}",
                r.outcome,
                text(),
                r.stats.report()
            );
        }
        let t = text();
        // The prompt; busybox then asks the terminal for the cursor position (ESC[6n)
        // and carries on without an answer.
        if !typed && t.contains("vmx-initramfs-42") && t.contains("/ # ") {
            keys.write_all(b"echo $((6*9))\n").unwrap();
            typed = true;
        }
        if typed && t.contains("54\r\n") {
            eprintln!("shell reached after {:?}:\n{t}", start.elapsed());
            // Power off (no ACPI: the kernel ends up resetting through the keyboard
            // controller or halting) to end the run and get its round-trip figures.
            keys.write_all(b"poweroff -f\n").unwrap();
            let r = rx
                .recv_timeout(Duration::from_secs(600))
                .expect("the run did not end after poweroff");
            let r = r.unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
            eprintln!(
                "outcome {:?} after {:?}\n--- 9P round trips by exit reason ---\n{}",
                r.outcome,
                start.elapsed(),
                r.stats.report()
            );
            assert!(
                matches!(
                    r.outcome,
                    Ok(vmx::run::Outcome::Reset | vmx::run::Outcome::Halted { .. })
                ),
                "{:?}",
                r.outcome
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no shell after {limit:?}:\n{}\n{}", text(), m.diagnostics());
}

/// Debian's kernel on a real root disk: the initramfs `vmx/mkroot` built loads
/// virtio_pci, virtio_blk and ext4 from the kernel's modules, mounts /dev/vda (the tool's
/// virtio-blk on a copy of the ext4 image) and switches to it; the shell there reads a
/// file written when the image was built, writes one, reads the disk with dd (the figures
/// are printed), and powers off; the file is then read back from the image with debugfs.
/// `cargo test -p vmx --test linux_bochs -- --ignored --nocapture` (a few minutes).
#[test]
#[ignore]
fn linux_boots_from_a_virtio_disk_under_bochs() {
    let kernel = std::fs::read(vmx::testdata::debian_kernel()).unwrap();
    let (disk, initrd) = vmx::testdata::root_disk();
    let dir = std::env::temp_dir().join(format!("vmx-vda-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("root.ext4");
    std::fs::copy(&disk, &copy).unwrap();
    let layout = Layout::new(128 << 20).unwrap();
    let img = loader::load(
        &kernel,
        &layout,
        &BootArgs {
            cmdline: "console=ttyS0 panic=-1".into(),
            modules: vec![Module {
                name: "initrd".into(),
                data: std::fs::read(&initrd).unwrap(),
            }],
        },
    )
    .unwrap();
    let blk = vmx::virtio::blk::Blk::new(
        Box::new(vmx::virtio::blk::FileDisk::open(&copy, false).unwrap()),
        false,
        "root.ext4",
    );

    let m = Machine::bochs(Opts {
        virtio_ports: 0,
        mem_mb: 384,
        ips: 4_000_000,
        ..Opts::default()
    });
    let client = m.client("eve", "");
    client.set_timeout(None);
    let path = std::env::var("VMX_LINUX_LOG").unwrap_or_else(|_| "/tmp/vmx-linux-vda.out".into());
    let file = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
    let out = Tee(Arc::new(Mutex::new(Vec::new())), file.clone());
    let log = Tee(Arc::new(Mutex::new(Vec::new())), file);
    let (mut keys, input) = UnixStream::pair().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn({
        let (out, log) = (out.clone(), log.clone());
        move || {
            let opts = Options {
                segment: "vda".into(),
                out: Box::new(out),
                input: Some(Box::new(input)),
                log: Box::new(log),
                tty: false,
                debug: true,
                trace: None,
                pipeline: true,
                devices: session::Devices {
                    disks: vec![blk],
                    ..Default::default()
                },
            };
            let _ = tx.send(session::run(client, &layout, &img, opts));
        }
    });
    let text = || String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned();
    let start = Instant::now();
    let limit = Duration::from_secs(
        std::env::var("VMX_LINUX_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    );
    let mut typed = false;
    while start.elapsed() < limit {
        if let Ok(r) = rx.try_recv() {
            let r = r.unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
            panic!(
                "the guest stopped: {:?}\n{}\n--- round trips ---\n{}",
                r.outcome,
                text(),
                r.stats.report()
            );
        }
        let t = text();
        if !typed && t.contains("vmx-rootfs: root is /dev/vda / ext4") && t.contains("/ # ") {
            keys.write_all(
                b"cat /etc/vmx-hello; echo written-by-the-guest-$((6*7)) > /guest-wrote; sync; \
                  dd if=/dev/vda of=/dev/null bs=64k count=32; echo dd-done\n",
            )
            .unwrap();
            typed = true;
        }
        if typed && t.contains("dd-done\r\n") {
            eprintln!("shell on /dev/vda after {:?}:\n{t}", start.elapsed());
            assert!(t.contains("vmx-rootfs: hello from the image, written at build time"));
            keys.write_all(b"poweroff -f\n").unwrap();
            let r = rx
                .recv_timeout(Duration::from_secs(600))
                .expect("the run did not end after poweroff");
            let r = r.unwrap_or_else(|e| panic!("{e}\n{}", m.diagnostics()));
            eprintln!(
                "outcome {:?} after {:?}\n--- 9P round trips by exit reason ---\n{}",
                r.outcome,
                start.elapsed(),
                r.stats.report()
            );
            // The guest's file is on the disk image.
            let got = std::process::Command::new("debugfs")
                .args(["-R", "cat /guest-wrote"])
                .arg(&copy)
                .output()
                .expect("run debugfs (e2fsprogs)");
            let got = String::from_utf8_lossy(&got.stdout);
            assert_eq!(got.trim(), "written-by-the-guest-42", "{got}");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("no shell after {limit:?}:\n{}\n{}", text(), m.diagnostics());
}
