//! The goal beyond the demo: Debian's unmodified kernel with a busybox initramfs
//! reaches an interactive shell under Bochs, driven only over 9P, and the 9P round trips
//! the boot took are printed by exit reason. Slow (an upload of ~10 MB over the emulated
//! serial line, then every port access of the boot a round trip), so ignored by default:
//! `cargo test -p vmm-tests --test tool_linux_bochs -- --ignored --nocapture`. The guest's console
//! is copied to $VMX_LINUX_LOG (default $TMPDIR/vmx-linux-NAME-PID.out) as it arrives,
//! every wait line and ctl command to the same name with `.trace` added.
//!
//! The busybox shell is reached twice: with every PC device in the tool
//! (`--no-kernel-devices`) and with the PIC, PIT, COM1 and the rest in the hypervisor (the
//! tool's default; its own answers are printed beside the round trips), and the latter
//! once more with the tool on 9P over TCP (an e1000 on Bochs's user-mode network, the
//! owner attaching with the command line's secret) instead of COM1. The last test
//! boots the same kernel from a root disk on the tool's virtio-blk, with a virtio-net card
//! to a QEMU VM, the devices in the hypervisor: the virtio interrupts reach the guest
//! through the in-kernel PIC (`line`).
//!
//! Needs the Debian kernel and busybox-static as the QEMU tests do (see tool_linux_qemu.rs),
//! and for the second test `vmx/mkroot`'s disk and initramfs (scripts/setup makes them),
//! e2fsprogs' debugfs and qemu-system-x86_64.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::fixtures::{images, need, run_options, scratch, slirp};
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs, Module};
use vmx::session::{self, Options, Report};

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

/// How the tool reaches the hypervisor: its COM1 (Bochs's serial line to a unix socket)
/// or 9P over TCP through an e1000 on Bochs's user-mode network, attached as the owner
/// with the command line's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Com1,
    Tcp,
    /// COM1, with the hypervisor's e1000 on Bochs's user-mode network as the uplink of its
    /// Ethernet switch (`switch` on its command line): a guest's in-kernel card is bridged
    /// onto slirp's 10.0.2.0/24.
    Bridged,
}

/// The TCP runs' `secret=` (the aname `!SECRET` attaches as the owner).
const SECRET: &str = "vmx-linux-tcp";

/// The hypervisor under Bochs and one guest run by the tool on a thread, its console
/// teed to a log file and typed at through a socket.
struct Guest {
    m: Machine,
    out: Tee,
    keys: UnixStream,
    rx: Receiver<Result<Report, String>>,
    start: Instant,
    limit: Duration,
}

impl Guest {
    /// Boots `kernel` with `initrd`, the tool on `link`; `devices` makes the tool's
    /// devices on its thread.
    fn boot(
        link: Link,
        kernel: &[u8],
        initrd: Vec<u8>,
        log_name: &str,
        kernel_devices: bool,
        devices: impl FnOnce() -> session::Devices<'static> + Send + 'static,
    ) -> Guest {
        let layout = Layout::new(128 << 20).unwrap();
        let img = loader::load(
            kernel,
            &layout,
            &BootArgs {
                cmdline: "console=ttyS0 panic=-1".into(),
                modules: vec![Module {
                    name: "initrd".into(),
                    data: initrd,
                }],
            },
        )
        .unwrap();
        let base = Opts {
            virtio_ports: 0,
            mem_mb: 384,
            ips: 4_000_000,
            ..Opts::default()
        };
        let m = Machine::vtx(match link {
            Link::Com1 => base,
            Link::Tcp => Opts {
                cmdline: format!("owner=eve secret={SECRET} serve=uart,net"),
                nic: Some(Nic::E1000),
                ..base
            },
            Link::Bridged => slirp::bridged(base),
        });
        // The tool's own message size (vmx dials with it), so the upload costs what it
        // does with the tool.
        let msize = ninep_client::BULK_MSIZE;
        let client = match link {
            Link::Com1 | Link::Bridged => m.client_msize(&m.main_path(), "eve", "", msize),
            Link::Tcp => {
                // No read timeout: the guest may run for minutes between exits.
                let s = m.tcp_raw();
                s.set_read_timeout(None).ok();
                ninep_client::Client::over_msize(s, "eve", &format!("!{SECRET}"), msize)
                    .unwrap_or_else(|e| panic!("attach over TCP: {e}\n{}", m.diagnostics()))
            }
        };
        client.set_timeout(None);
        let path = std::env::var("VMX_LINUX_LOG").unwrap_or_else(|_| {
            std::env::temp_dir()
                .join(format!("vmx-linux-{log_name}-{}.out", std::process::id()))
                .display()
                .to_string()
        });
        let file = Arc::new(Mutex::new(std::fs::File::create(&path).unwrap()));
        let out = Tee(Arc::new(Mutex::new(Vec::new())), file.clone());
        let log = Tee(Arc::new(Mutex::new(Vec::new())), file);
        let (keys, input) = UnixStream::pair().unwrap();
        let (tx, rx) = channel();
        let segment = log_name.to_string();
        std::thread::spawn({
            let (out, log) = (out.clone(), log.clone());
            move || {
                let opts = Options {
                    input: Some(Box::new(input)),
                    debug: true,
                    trace: Some(Box::new(std::io::BufWriter::new(
                        std::fs::File::create(format!("{path}.trace")).unwrap(),
                    ))),
                    // VMX_NO_PIPELINE=1: every go waited for, for the comparison.
                    pipeline: std::env::var_os("VMX_NO_PIPELINE").is_none(),
                    ..run_options(&segment, out, log, kernel_devices, devices())
                };
                let _ = tx.send(session::run(client, &layout, &img, opts));
            }
        });
        let limit = Duration::from_secs(
            std::env::var("VMX_LINUX_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(3600),
        );
        Guest {
            m,
            out,
            keys,
            rx,
            start: Instant::now(),
            limit,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().unwrap()).into_owned()
    }

    /// The console so far, after checking that the run goes on and has time left.
    fn poll(&self) -> String {
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(r) = self.rx.try_recv() {
            let r = r.unwrap_or_else(|e| panic!("{e}\n{}", self.m.diagnostics()));
            panic!(
                "the guest stopped: {:?}\n{}\n--- round trips ---\n{}",
                r.outcome,
                self.text(),
                r.stats.report()
            );
        }
        assert!(
            self.start.elapsed() < self.limit,
            "no shell after {:?}:\n{}\n{}",
            self.limit,
            self.text(),
            self.m.diagnostics()
        );
        self.text()
    }

    /// Powers the guest off (no ACPI: the kernel ends up resetting through the keyboard
    /// controller or halting), checks that the run ended so, and prints its figures.
    fn power_off(mut self) {
        self.keys.write_all(b"poweroff -f\n").unwrap();
        let r = self
            .rx
            .recv_timeout(Duration::from_secs(600))
            .expect("the run did not end after poweroff");
        let r = r.unwrap_or_else(|e| panic!("{e}\n{}", self.m.diagnostics()));
        eprintln!(
            "outcome {:?} after {:?}\n--- 9P round trips by exit reason ---\n{}answered in the hypervisor (port accesses, halts, interrupts, cpuid/MSR/DR accesses): {:?}",
            r.outcome,
            self.start.elapsed(),
            r.stats.report(),
            r.inkernel
        );
        assert!(
            matches!(
                r.outcome,
                Ok(vmx::run::Outcome::Reset | vmx::run::Outcome::Halted { .. })
            ),
            "{:?}",
            r.outcome
        );
    }
}

#[test]
#[ignore]
fn linux_reaches_a_busybox_shell_with_the_tools_devices() {
    busybox_shell(Link::Com1, false);
}

#[test]
#[ignore]
fn linux_reaches_a_busybox_shell_with_in_kernel_devices() {
    busybox_shell(Link::Com1, true);
}

/// The same over 9P on TCP (Bochs's e1000 and user-mode network) instead of COM1: the
/// wall time and round trips printed compare with the COM1 run's.
#[test]
#[ignore]
fn linux_reaches_a_busybox_shell_over_tcp() {
    busybox_shell(Link::Tcp, true);
}

fn busybox_shell(link: Link, kernel_devices: bool) {
    let kernel = std::fs::read(need(images::debian_kernel())).unwrap();
    let busybox = std::fs::read(need(images::busybox())).unwrap();
    let initrd = vmx::cpio::busybox_initramfs(&busybox, "echo vmx-initramfs-$((6*7)); exec sh");
    let name = match (link, kernel_devices) {
        (Link::Tcp, _) => "tcp",
        (Link::Bridged, _) => "bridged",
        (Link::Com1, true) => "inkernel",
        (Link::Com1, false) => "bochs",
    };
    let mut g = Guest::boot(
        link,
        &kernel,
        initrd,
        name,
        kernel_devices,
        Default::default,
    );
    let mut typed = false;
    loop {
        let t = g.poll();
        // The prompt; busybox then asks the terminal for the cursor position (ESC[6n)
        // and carries on without an answer.
        if !typed && t.contains("vmx-initramfs-42") && t.contains("/ # ") {
            g.keys.write_all(b"echo $((6*9))\n").unwrap();
            typed = true;
        }
        if typed && t.contains("54\r\n") {
            eprintln!("shell reached after {:?}:\n{t}", g.start.elapsed());
            return g.power_off();
        }
    }
}

/// Debian's kernel on a real root disk: the initramfs `vmx/mkroot` built loads
/// virtio_pci, virtio_blk and ext4 from the kernel's modules, mounts /dev/vda (the tool's
/// virtio-blk on a copy of the ext4 image) and switches to it; the shell there reads a
/// file written when the image was built, writes one, reads the disk with dd (the figures
/// are printed), pings a QEMU VM on the tool's virtio-net (a unix stream socket in QEMU's
/// framing; round-trip times printed) and powers off; the file is then read back from the
/// image with debugfs.
/// `cargo test -p vmm-tests --test tool_linux_bochs -- --ignored --nocapture` (a few minutes).
#[test]
#[ignore]
fn linux_boots_from_a_virtio_disk_under_bochs() {
    let dir = scratch("vmx-vda");
    // The network peer: a QEMU VM listening on a unix socket; the tool connects to it.
    let (mut peer, link, frames) = vmm_tests::fixtures::QemuPeer::start(&dir);
    let (mut g, copy) = boot_from_disk(&dir, "vda", link, frames);
    // The peer's address, once its shell is up (a few seconds under TCG).
    peer.up("10.0.0.2/24");
    let (mut typed, mut pinged) = (false, false);
    let mut dd_start = Instant::now();
    loop {
        let t = g.poll();
        if !typed && at_root_shell(&t) {
            g.keys
                .write_all(write_and_dd("cat /etc/vmx-hello").as_bytes())
                .unwrap();
            typed = true;
            dd_start = Instant::now();
        }
        // (Markers the shell computes, so that the echo of the typed line does not match.)
        if typed && !pinged && t.contains("dd-2-done\r\n") {
            let secs = dd_start.elapsed().as_secs_f64();
            eprintln!(
                "disk read: 2 MiB in {secs:.1} s of wall time with the commands around it, {:.3} MB/s",
                2.0 * 1.048576 / secs
            );
            print_guest_dd(&t);
            g.keys
                .write_all(
                    b"ip link set eth0 up; ip addr add 10.0.0.1/24 dev eth0; \
                  ping -c 4 -W 30 10.0.0.2; echo ping-$((2+2))-done\n",
                )
                .unwrap();
            pinged = true;
        }
        if pinged && t.contains("ping-4-done\r\n") {
            eprintln!("shell on /dev/vda after {:?}:\n{t}", g.start.elapsed());
            assert!(t.contains("vmx-rootfs: hello from the image, written at build time"));
            assert!(
                received(&t) >= 1,
                "no ping answered:\n{t}\n--- peer ---\n{}",
                peer.text()
            );
            g.power_off();
            guest_wrote(&copy);
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }
}

/// Boots Debian's kernel with `vmx/mkroot`'s initramfs, the PC devices in the hypervisor,
/// and the devices `devices` makes (for the tool's thread) around a copy (in `dir`) of
/// mkroot's root disk: the guest and the copy, to read back after.
fn boot_on_a_root_copy<D>(
    dir: &std::path::Path,
    name: &str,
    devices: impl FnOnce(&std::path::Path) -> D,
) -> (Guest, std::path::PathBuf)
where
    D: FnOnce() -> session::Devices<'static> + Send + 'static,
{
    let kernel = std::fs::read(need(images::debian_kernel())).unwrap();
    let (disk, initrd) = need(images::root_disk());
    let copy = dir.join("root.ext4");
    std::fs::copy(&disk, &copy).unwrap();
    let g = Guest::boot(
        Link::Com1,
        &kernel,
        std::fs::read(&initrd).unwrap(),
        name,
        true,
        devices(&copy),
    );
    (g, copy)
}

/// [`boot_on_a_root_copy`] with the copy on the tool's virtio-blk and a virtio-net card
/// on `link`.
fn boot_from_disk(
    dir: &std::path::Path,
    name: &str,
    link: Box<dyn vmx::virtio::net::Link>,
    frames: vmx::virtio::net::FrameSource,
) -> (Guest, std::path::PathBuf) {
    boot_on_a_root_copy(dir, name, |copy| {
        let blk = vmx::virtio::blk::Blk::new(
            Box::new(vmx::virtio::blk::FileDisk::open(copy, false).unwrap()),
            false,
            "root.ext4",
        );
        let nic = vmx::virtio::net::Net::new([0x52, 0x54, 0, 0, 0, 1], link);
        move || session::Devices {
            disks: vec![blk],
            nets: vec![(nic, frames)],
            ..Default::default()
        }
    })
}

/// The root disk's shell is up: mkroot's initramfs mounted /dev/vda and its prompt is out.
fn at_root_shell(t: &str) -> bool {
    t.contains("vmx-rootfs: root is /dev/vda / ext4") && t.contains("/ # ")
}

/// The shell line the root-disk guests type: `first`, then a file written to the disk
/// ([`guest_wrote`] reads it back), the page cache dropped, 2 MiB of /dev/vda read with a
/// timed dd ([`print_guest_dd`]), and `dd-2-done` (computed, so the line's echo does not
/// match).
fn write_and_dd(first: &str) -> String {
    let dd = vmm_tests::fixtures::timed("dd if=/dev/vda of=/dev/null bs=64k count=32", "dd");
    format!(
        "{first}; echo written-by-the-guest-$((6*7)) > /guest-wrote; sync; \
         echo 3 > /proc/sys/vm/drop_caches; {dd}; echo dd-$((1+1))-done\n"
    )
}

/// Prints the guest's seconds for [`write_and_dd`]'s 2 MiB read from /dev/vda, found on
/// the console `t` (the guest's clock, not asserted).
fn print_guest_dd(t: &str) {
    if let Some(s) = vmm_tests::fixtures::timed_secs(t, "dd") {
        eprintln!(
            "disk read in the guest: 2 MiB in {s:.2} s of guest time, {:.3} MB/s",
            2.0 * 1.048576 / s.max(0.001)
        );
    }
}

/// The file [`write_and_dd`] had the guest write is on the disk image `copy` (read back
/// with debugfs after the run).
fn guest_wrote(copy: &std::path::Path) {
    let got = std::process::Command::new("debugfs")
        .args(["-R", "cat /guest-wrote"])
        .arg(copy)
        .output()
        .expect("run debugfs (e2fsprogs)");
    let got = String::from_utf8_lossy(&got.stdout);
    assert_eq!(got.trim(), "written-by-the-guest-42", "{got}");
}

/// busybox ping's "N packets transmitted, M packets received": M (0 if none).
fn received(t: &str) -> u32 {
    t.split(" packets received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The TAP analogue of the ping above: the same root-disk guest, its virtio-net card on a
/// Linux TAP device (`-n tap!NAME`) whose host side has 10.78.N.1/24, pings the host's
/// own kernel. Needs root and /dev/net/tun (fails, does not skip, without them).
/// `cargo test -p vmm-tests --test tool_linux_bochs -- --ignored --nocapture linux_pings_the_host_over_a_tap`
#[test]
#[ignore]
fn linux_pings_the_host_over_a_tap() {
    let tap = vmm_tests::fixtures::HostDev::new('g', "tap");
    let n = std::process::id() % 250;
    tap.up(&format!("10.78.{n}.1/24"));
    let (link, frames) = vmx::virtio::net::Spec::parse(&format!("tap!{}", tap.0))
        .unwrap()
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch("vmx-tap");
    let (mut g, _) = boot_from_disk(&dir, "tap", link, frames);
    let mut typed = false;
    loop {
        let t = g.poll();
        if !typed && at_root_shell(&t) {
            let cmd = format!(
                "ip link set eth0 up; ip addr add 10.78.{n}.2/24 dev eth0; \
                 ping -c 4 -W 30 10.78.{n}.1; echo ping-$((2+2))-done\n"
            );
            g.keys.write_all(cmd.as_bytes()).unwrap();
            typed = true;
        }
        if typed && t.contains("ping-4-done\r\n") {
            eprintln!(
                "pinged the host over {} after {:?}:\n{t}",
                tap.0,
                g.start.elapsed()
            );
            assert!(received(&t) >= 1, "the host answered no ping:\n{t}");
            g.power_off();
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }
}

/// Debian's kernel on `vmx/mkroot`'s root disk with every PC device, PCI and the
/// virtio-blk root disk in the hypervisor (devvmx/DEVIATIONS.md, "Extension: virtio-blk
/// in the kernel"), the tool serving the image's blocks through the VM's queue file
/// (`-d FILE`): `echo $((6*9))` answers 54, a file the guest writes reaches the image
/// (read back with debugfs after the run), and the run's round trips are printed (the
/// `(blkq)` row: the queue file's reads and writes).
/// `cargo test -p vmm-tests --release --test tool_linux_bochs -- --ignored --nocapture linux_boots_from_a_kernel_queue_disk`
#[test]
#[ignore]
fn linux_boots_from_a_kernel_queue_disk_under_bochs() {
    kernel_disk("kqueue", "");
}

/// The same with the image in a segment in the hypervisor's memory (`-d seg:FILE`):
/// uploaded first, no round trip per request, the pages the guest changed written back
/// to the file at the end (`blkdirty`) and the segment removed.
/// `cargo test -p vmm-tests --release --test tool_linux_bochs -- --ignored --nocapture linux_boots_from_a_kernel_segment_disk`
#[test]
#[ignore]
fn linux_boots_from_a_kernel_segment_disk_under_bochs() {
    kernel_disk("kseg", "seg:");
}

/// Boots from a copy of mkroot's disk given to the tool as `-d {prefix}COPY`, answers
/// 54, writes a file, reads the disk with dd, powers off, and reads the file back from
/// the copy.
fn kernel_disk(name: &str, prefix: &str) {
    let dir = scratch(&format!("vmx-{name}"));
    let (mut g, copy) = boot_on_a_root_copy(&dir, name, |copy| {
        let spec = vmx::kdisk::Spec::parse(&format!("{prefix}{}", copy.display()));
        move || session::Devices {
            kdisks: vec![spec],
            ..Default::default()
        }
    });
    let mut typed = false;
    let mut dd_start = Instant::now();
    loop {
        let t = g.poll();
        if !typed && at_root_shell(&t) {
            eprintln!("shell on the kernel's disk after {:?}", g.start.elapsed());
            g.keys
                .write_all(write_and_dd("echo $((6*9))").as_bytes())
                .unwrap();
            typed = true;
            dd_start = Instant::now();
        }
        if typed && t.contains("dd-2-done\r\n") {
            eprintln!(
                "dd of 2 MiB: {:.1} s of wall time with the commands around it",
                dd_start.elapsed().as_secs_f64()
            );
            print_guest_dd(&t);
            assert!(t.contains("\r\n54\r\n"), "{t}");
            eprintln!("{t}");
            g.power_off();
            guest_wrote(&copy);
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }
}

/// The bulk file's size at `/bulk` (the guest's wget of it is timed).
const BULK: usize = 1 << 20;

/// A guest bridged onto the hypervisor's NIC reaches the host (issue 19): Debian's kernel
/// with `vmx/mkroot`'s initramfs (virtio_net loaded; no disk, so its shell) and an
/// in-kernel virtio-net card on the hypervisor's switch (`-n switch`, `pci net MAC`); the
/// hypervisor boots with `switch`, its e1000 on Bochs's slirp the switch's uplink. The guest
/// gets its address from slirp's DHCP (busybox udhcpc), fetches a file with wget from a
/// test server on the host's 127.0.0.1 (10.0.2.2 inside slirp) and checks it, then times a
/// 1 MiB wget (MB/s printed on the guest's clock and the server's wall clock; not asserted).
/// `cargo test -p vmm-tests --release --test tool_linux_bochs -- --ignored --nocapture linux_bridged_onto_the_hypervisors_nic_fetches_from_the_host`
#[test]
#[ignore]
fn linux_bridged_onto_the_hypervisors_nic_fetches_from_the_host() {
    let kernel = std::fs::read(need(images::debian_kernel())).unwrap();
    let (_, initrd) = need(images::root_disk());
    let (port, served) = slirp::http_server(BULK);
    let mac = [0x52, 0x54, 0, 0, 0, 0x19];
    let mut g = Guest::boot(
        Link::Bridged,
        &kernel,
        std::fs::read(&initrd).unwrap(),
        "bridged",
        true,
        move || session::Devices {
            switch_nets: vec![mac],
            ..Default::default()
        },
    );
    let bulk = vmm_tests::fixtures::timed(&slirp::wget(port, "/bulk", "/dev/null"), "wget");
    let (mut typed, mut fetched) = (false, false);
    let mut bulk_start = Instant::now();
    loop {
        let t = g.poll();
        if !typed && t.contains("a shell here") && t.contains("/ # ") {
            g.keys
                .write_all(
                    format!(
                        "{}; {}; echo hello-$((2+3))-done\n",
                        slirp::dhcp(),
                        slirp::wget(port, "/hello", "-")
                    )
                    .as_bytes(),
                )
                .unwrap();
            typed = true;
        }
        if typed && !fetched && t.contains("hello-5-done\r\n") {
            eprintln!("fetched after {:?}:\n{t}", g.start.elapsed());
            assert!(
                t.contains(&format!("{}10.0.2.", slirp::LEASE)),
                "no lease from slirp:\n{t}"
            );
            assert!(
                t.contains(slirp::HELLO.trim_end()),
                "the host's file did not arrive:\n{t}"
            );
            let first = served.recv_timeout(Duration::from_secs(5)).unwrap();
            eprintln!("served: {first}");
            assert!(first.first.starts_with("GET /hello "), "{first}");
            g.keys
                .write_all(format!("{bulk}; echo bulk-$((3+3))-done\n").as_bytes())
                .unwrap();
            fetched = true;
            bulk_start = Instant::now();
        }
        if fetched && t.contains("bulk-6-done\r\n") {
            let wall = bulk_start.elapsed().as_secs_f64();
            let mb = BULK as f64 / 1e6;
            eprintln!(
                "bulk: {mb:.2} MB from the host through slirp in {wall:.1} s of wall time with the commands around it, {:.3} MB/s",
                mb / wall
            );
            if let Ok(s) = served.recv_timeout(Duration::from_secs(5)) {
                eprintln!("served: {s}");
            }
            if let Some(s) = vmm_tests::fixtures::timed_secs(&t, "wget") {
                eprintln!(
                    "bulk in the guest: {mb:.2} MB in {s:.2} s of guest time, {:.3} MB/s",
                    mb / s.max(0.001)
                );
            }
            return g.power_off();
        }
    }
}
