//! Benchmark (prints figures, asserts nothing): Debian's kernel with a busybox initramfs
//! to a shell prompt under Bochs, in one run, three ways:
//!
//! - `kernel`: through the hypervisor, driven over 9P by the vmx tool, with the PC devices
//!   in the hypervisor (its `devices` message);
//! - `tool`: the same with every device in the tool (`--no-kernel-devices`);
//! - `tcp`: as `kernel`, the tool on 9P over TCP (Bochs's e1000 and user-mode network,
//!   attached as the owner with the command line's secret) instead of COM1;
//! - `native`: the same kernel and initramfs booted by Bochs itself from a GRUB ISO, no
//!   hypervisor: the anchor for wall time;
//! - `io`: the kernel on `vmx/mkroot`'s root disk (the tool's virtio-blk) with a
//!   virtio-net card to a QEMU VM, the devices in the hypervisor: MB/s of a dd from
//!   /dev/vda (on the guest's clock and on the wall) and 9P round trips per MB during it,
//!   ping's round-trip time to the QEMU VM and 9P round trips per ping; beside them the
//!   anchors, the QEMU VM (TCG) doing the same dd on its own virtio-blk and pinging the
//!   guest back (its clock is the host's). Its own table, after the others.
//! - `kqueue`, `kseg`: the same root disk as the hypervisor's own virtio-blk (the tool's
//!   `-d FILE`, served through the VM's queue file `blkq`, and `-d seg:FILE`, the image
//!   in a segment, written back at the end): 9P round trips from `clone` to the shell
//!   on that disk, the same dd (MB/s on the guest's clock and on the wall, round trips
//!   per MB during it), the upload and write-back; one table beside the `io` run's
//!   figures for the tool's own virtio-blk and the QEMU VM's, and the anchors.
//! - `knet`: the kernel's virtio-net cards and switch. Two test guests ping each other
//!   through the switch (9P round trips on the link per ping); Debian's kernel, its root
//!   disk in a segment (`-d seg:FILE`) and its card bridged onto Bochs's slirp through
//!   the hypervisor's NIC (`switch`, `-n switch`), both the hypervisor's, reaches its shell
//!   (round trips printed), takes a lease, pings the host and fetches a file with wget from a test server on the
//!   host's 127.0.0.1 (ping ms, MB/s on the guest's clock and on the wall, round trips),
//!   beside the `io` run's QEMU VM doing the same on QEMU's own slirp. Its own table.
//!
//! For each: wall time to the prompt (from `clone` for the hypervisor runs, image upload
//! included; from Bochs's start for the native one) and its ratio to the native boot;
//! for the hypervisor runs the part after the upload ("boot s": the kernel and initramfs
//! cross the emulated serial line at about 70 KiB/s first), 9P round trips to the prompt
//! (every request on the connection), and after `echo $((6*9))` and a poweroff, the
//! tool's own count of round trips, of them the console's reads (`cons`, with the
//! devices in the hypervisor), the exits it saw and those the hypervisor answered.
//!
//! `cargo run --release -p vmm-tests --bin bench-linux [-- kernel tcp tool native io kqueue kseg knet]`
//! (default: all eight). Needs Bochs, grub-mkrescue, QEMU and the Debian kernel, busybox
//! and root disk that `scripts/setup` makes. `BENCH_SECS` bounds each run (default 3600).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vmm_tests::bench;
use vmm_tests::emu::{self, Machine, Nic, Opts};
use vmx::layout::Layout;
use vmx::loader::{self, BootArgs, Module};
use vmx::session::{self, Options, Report};

const CMDLINE: &str = "console=ttyS0 panic=-1";
const MEM_MB: u32 = 128;
const IPS: u64 = 4_000_000;
const INIT: &str = "echo vmx-initramfs-$((6*7)); exec sh";
/// The `tcp` run's `secret=` (the aname `!SECRET` attaches as the owner).
const SECRET: &str = "bench-linux";

use vmm_tests::fixtures::{images, need, slirp, timed, timed_secs, Capture as Buf};

/// A 9P connection (COM1's unix socket or TCP) that counts the requests it sends (each is
/// one round trip).
struct Counted<S> {
    s: S,
    sent: Arc<AtomicU64>,
    /// Bytes left of the frame being written, and the size field being gathered.
    left: usize,
    head: Vec<u8>,
}

impl<S: Read> Read for Counted<S> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.s.read(b)
    }
}

impl<S: Write> Write for Counted<S> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.s.write(b)?;
        let mut d = &b[..n];
        while !d.is_empty() {
            if self.left == 0 {
                let k = (4 - self.head.len()).min(d.len());
                self.head.extend_from_slice(&d[..k]);
                d = &d[k..];
                if self.head.len() == 4 {
                    let size = u32::from_le_bytes(self.head[..].try_into().unwrap()) as usize;
                    self.head.clear();
                    self.left = size.saturating_sub(4);
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let k = self.left.min(d.len());
                self.left -= k;
                d = &d[k..];
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

impl<S: ninep_client::Conn> ninep_client::Conn for Counted<S> {
    fn split(&self) -> std::io::Result<Self> {
        Ok(Counted {
            s: self.s.split()?,
            sent: self.sent.clone(),
            left: 0,
            head: Vec::new(),
        })
    }
    fn close(&self) {
        self.s.close();
    }
}

struct Figures {
    name: &'static str,
    prompt: Option<Duration>,
    /// From the end of the image upload (the first `go`) to the prompt.
    boot: Option<Duration>,
    trips_to_prompt: Option<u64>,
    trips_total: Option<u64>,
    /// Of those, the console's reads (the in-kernel UART's `cons`).
    cons_trips: Option<u64>,
    client_exits: Option<u64>,
    kernel_exits: Option<u64>,
    note: String,
}

impl Figures {
    fn new(name: &'static str) -> Figures {
        Figures {
            name,
            prompt: None,
            boot: None,
            trips_to_prompt: None,
            trips_total: None,
            cons_trips: None,
            client_exits: None,
            kernel_exits: None,
            note: String::new(),
        }
    }
}

fn limit() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3600),
    )
}

/// Waits until `text()` contains `what`; false after the limit.
fn wait_for(start: Instant, text: &dyn Fn() -> String, what: &str) -> bool {
    while start.elapsed() < limit() {
        if text().contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn initrd() -> Vec<u8> {
    let busybox = std::fs::read(need(images::busybox())).expect("busybox");
    vmx::cpio::busybox_initramfs(&busybox, INIT)
}

/// Counts `s`'s requests in `sent` and attaches over it as the tool does.
fn counted<S: ninep_client::Conn + Read + Write + 'static>(
    s: S,
    sent: &Arc<AtomicU64>,
    aname: &str,
) -> ninep_client::Client {
    let conn = Counted {
        s,
        sent: sent.clone(),
        left: 0,
        head: Vec::new(),
    };
    ninep_client::Client::over_msize(conn, "eve", aname, ninep_client::BULK_MSIZE).expect("attach")
}

/// A guest under the hypervisor in Bochs, run by the tool on a thread: its console and
/// log, the keys typed at it, the run's report when it ends, the 9P requests counted.
struct Guest {
    /// Bochs, ended on drop.
    _bochs: Machine,
    out: Buf,
    log: Buf,
    keys: UnixStream,
    rx: Receiver<Result<Report, String>>,
    sent: Arc<AtomicU64>,
    /// Requests before the tool's first (the attach).
    base: u64,
    start: Instant,
}

impl Guest {
    /// Requests on the connection since the tool started.
    fn trips(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) - self.base
    }

    /// Waits for `what` on the console: why not, if the run ended first or the time ran
    /// out.
    fn wait(&self, what: &str) -> Result<(), String> {
        while self.start.elapsed() < limit() {
            if self.out.text().contains(what) {
                return Ok(());
            }
            if let Ok(r) = self.rx.try_recv() {
                let why = r.map_or_else(|e| e, |r| format!("{:?}", r.outcome));
                return Err(format!(
                    "the run ended ({why}) before {what:?}: {}",
                    tail(&self.out.text())
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("no {what:?}: {}", tail(&self.out.text())))
    }
}

/// How the tool reaches the hypervisor, and what the hypervisor's NIC does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Com1,
    /// 9P over TCP on Bochs's e1000 and slirp, attached as the owner with [`SECRET`].
    Tcp,
    /// COM1, the e1000 on slirp the uplink of the hypervisor's switch (`switch`).
    Bridged,
}

/// Boots the Debian kernel with `initrd` under the hypervisor, the tool on `link` with
/// its `devices`.
fn boot(
    kernel_devices: bool,
    link: Link,
    initrd: Vec<u8>,
    devices: impl FnOnce() -> session::Devices<'static> + Send + 'static,
) -> Guest {
    let kernel = std::fs::read(need(images::debian_kernel())).expect("Debian kernel");
    let layout = Layout::new(u64::from(MEM_MB) << 20).unwrap();
    let img = loader::load(
        &kernel,
        &layout,
        &BootArgs {
            cmdline: CMDLINE.into(),
            modules: vec![Module {
                name: "initrd".into(),
                data: initrd,
            }],
        },
    )
    .expect("load the kernel");
    let base = Opts {
        virtio_ports: 0,
        mem_mb: 384,
        ips: IPS,
        ..Opts::default()
    };
    let sent = Arc::new(AtomicU64::new(0));
    let (m, client) = if link == Link::Tcp {
        let m = Machine::bochs(Opts {
            cmdline: format!("owner=eve secret={SECRET} serve=uart,net"),
            nic: Some(Nic::E1000),
            ..base
        });
        let raw = m.tcp_raw();
        raw.set_read_timeout(None).ok();
        let client = counted(raw, &sent, &format!("!{SECRET}"));
        (m, client)
    } else {
        let m = Machine::bochs(if link == Link::Bridged {
            slirp::bridged(base)
        } else {
            base
        });
        let mut raw = m.raw(&m.uart_path());
        emu::sync(&mut raw).expect("sync the serial line");
        raw.set_read_timeout(None).ok();
        let client = counted(raw, &sent, "");
        (m, client)
    };
    client.set_timeout(None);
    let out = Buf::default();
    let log = Buf::default();
    let (keys, input) = UnixStream::pair().unwrap();
    let (tx, rx) = channel();
    let base = sent.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::spawn({
        let (out, log) = (out.clone(), log.clone());
        move || {
            let opts = Options {
                input: Some(Box::new(input)),
                ..vmm_tests::fixtures::run_options("bench", out, log, kernel_devices, devices())
            };
            let _ = tx.send(session::run(client, &layout, &img, opts));
        }
    });
    Guest {
        _bochs: m,
        out,
        log,
        keys,
        rx,
        sent,
        base,
        start,
    }
}

fn through_the_hypervisor(kernel_devices: bool, tcp: bool) -> Figures {
    let name = match (tcp, kernel_devices) {
        (true, _) => "tcp",
        (false, true) => "kernel",
        (false, false) => "tool",
    };
    let mut f = Figures::new(name);
    let link = if tcp { Link::Tcp } else { Link::Com1 };
    let mut g = boot(kernel_devices, link, initrd(), Default::default);
    let start = g.start;
    let text = || g.out.text();
    let logged = || g.log.text();
    if !wait_for(start, &logged, "(100%)") {
        f.note = format!("no upload: {}", tail(&logged()));
        return f;
    }
    let loaded = start.elapsed();
    if !wait_for(start, &text, "/ # ") {
        f.note = format!("no prompt: {}", tail(&text()));
        return f;
    }
    f.prompt = Some(start.elapsed());
    f.boot = f.prompt.map(|p| p - loaded);
    f.trips_to_prompt = Some(g.trips());
    g.keys.write_all(b"echo $((6*9))\n").unwrap();
    if !wait_for(start, &text, "54\r\n") {
        f.note = "no answer to echo".into();
        return f;
    }
    match power_off(&mut g, name) {
        Ok(r) => {
            f.trips_total = Some(r.stats.total().1);
            f.cons_trips = kernel_devices.then(|| r.stats.console_trips());
            f.client_exits = Some(
                r.stats
                    .by_reason
                    .iter()
                    .filter(|(k, _)| !k.starts_with('('))
                    .map(|(_, v)| v.0)
                    .sum(),
            );
            f.kernel_exits = r.inkernel.map(|c| c[0] + c[1] + c[3]);
            f.note = format!("{:?}", r.outcome);
        }
        Err(e) => f.note = e,
    }
    f
}

/// Types `poweroff -f` at the guest and waits for the run's end: its report, whose round
/// trips by exit reason are printed under `name`.
fn power_off(g: &mut Guest, name: &str) -> Result<Report, String> {
    g.keys.write_all(b"poweroff -f\n").unwrap();
    match g.rx.recv_timeout(Duration::from_secs(600)) {
        Ok(Ok(r)) => {
            eprintln!(
                "--- {name}: round trips by exit reason ---\n{}",
                r.stats.report()
            );
            Ok(r)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no end after poweroff".into()),
    }
}

fn tail(s: &str) -> String {
    s.chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

fn native() -> Figures {
    let mut f = Figures::new("native");
    let dir = std::env::temp_dir().join(format!("bench-linux-native-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stage = dir.join("iso");
    std::fs::create_dir_all(stage.join("boot/grub")).unwrap();
    std::fs::copy(need(images::debian_kernel()), stage.join("boot/vmlinuz")).unwrap();
    std::fs::write(stage.join("boot/initrd"), initrd()).unwrap();
    std::fs::write(
        stage.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nset default=0\nserial --unit=0 --speed=115200\nterminal_output serial\nmenuentry linux {{\n    linux /boot/vmlinuz {CMDLINE}\n    initrd /boot/initrd\n    boot\n}}\n"
        ),
    )
    .unwrap();
    let iso = dir.join("linux.iso");
    let st = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&stage)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("grub-mkrescue");
    if !st.success() {
        f.note = "grub-mkrescue failed".into();
        return f;
    }
    for attempt in 0..5 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rc = emu::BochsConfig {
            mem_mb: MEM_MB,
            ips: IPS,
            cpus: 1,
            iso: &iso,
            com1_port: port,
            nic: "",
            slowdown: false,
            log: &dir.join("bochs.log"),
        }
        .render();
        std::fs::write(dir.join("bochsrc"), rc).unwrap();
        std::fs::write(dir.join("rc"), "c\nquit\n").unwrap();
        let start = Instant::now();
        let mut child = Command::new("bochs")
            .args(["-q", "-f", "bochsrc", "-rc", "rc"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("bochs.err")).unwrap())
            .spawn()
            .expect("start bochs");
        listener.set_nonblocking(true).unwrap();
        let com1 = loop {
            if let Ok((s, _)) = listener.accept() {
                break Some(s);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break None;
            }
            if start.elapsed() > Duration::from_secs(120) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let Some(com1) = com1 else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(dir.join("bochs.err")).unwrap_or_default();
            if err.contains("RFB could not bind") && attempt < 4 {
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
            f.note = format!("Bochs did not connect COM1: {}", tail(&err));
            return f;
        };
        com1.set_nonblocking(false).unwrap();
        let out = Buf::default();
        std::thread::spawn({
            let mut out = out.clone();
            let mut r = com1.try_clone().unwrap();
            move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = r.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    let _ = out.write_all(&b[..n]);
                }
            }
        });
        let mut keys = com1;
        let text = || out.text();
        if wait_for(start, &text, "/ # ") {
            f.prompt = Some(start.elapsed());
            keys.write_all(b"echo $((6*9))\n").unwrap();
            if wait_for(start, &text, "54\r\n") {
                f.note = "answered 54".into();
            } else {
                f.note = "no answer to echo".into();
            }
        } else {
            f.note = format!("no prompt: {}", tail(&text()));
        }
        let _ = child.kill();
        let _ = child.wait();
        break;
    }
    let _ = std::fs::remove_dir_all(&dir);
    f
}

/// A dd of DD_MIB from /dev/vda ([`dd_line`]) as a guest's shell ran it.
#[derive(Default)]
struct Dd {
    /// Seconds on the reader's clock.
    secs: Option<f64>,
    /// Wall time from typing it to its end marker, and the 9P requests meanwhile.
    wall: Option<Duration>,
    trips: Option<u64>,
}

/// What the `io` run measured, each beside its anchor in the QEMU VM.
#[derive(Default)]
struct Io {
    /// The guest's dd, and the seconds of the QEMU VM's on its clock.
    dd: Dd,
    qemu_dd_secs: Option<f64>,
    /// ping's average round trip (the sender's clock): guest to QEMU, QEMU to guest.
    ping_ms: Option<f64>,
    qemu_ping_ms: Option<f64>,
    /// Wall time and 9P requests for the guest's pings.
    ping_wall: Option<Duration>,
    ping_trips: Option<u64>,
    /// virtio-blk over the whole run: MiB moved and round trips per MiB (the tool's own).
    disk_report: String,
    note: String,
}

/// MiB the `io` run reads from /dev/vda, in 64 KiB blocks.
const DD_MIB: u64 = 4;
/// Pings each way.
const PINGS: u32 = 10;

/// busybox ping's average ("round-trip min/avg/max = A/B/C ms"), the last one printed.
fn ping_avg(text: &str) -> Option<f64> {
    let l = text.lines().rev().find(|l| l.contains("min/avg/max = "))?;
    l.split(" = ").nth(1)?.split('/').nth(1)?.parse().ok()
}

/// A copy of `vmx/mkroot`'s root disk in a scratch directory of its own (removed on
/// drop), and the initramfs that mounts it.
struct RootDisk {
    dir: std::path::PathBuf,
    copy: std::path::PathBuf,
    initrd: Vec<u8>,
}

impl RootDisk {
    fn new(run: &str) -> RootDisk {
        let (disk, initrd) = need(images::root_disk());
        let dir = std::env::temp_dir().join(format!("bench-linux-{run}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("root.ext4");
        std::fs::copy(&disk, &copy).unwrap();
        RootDisk {
            dir,
            copy,
            initrd: std::fs::read(&initrd).expect("mkroot's initrd"),
        }
    }
}

impl Drop for RootDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the guest's shell on /dev/vda: when it came, and the 9P requests till then.
fn shell_on_vda(g: &Guest) -> Result<(Duration, u64), String> {
    g.wait("vmx-rootfs: root is /dev/vda")?;
    g.wait("/ # ")?;
    let at = (g.start.elapsed(), g.trips());
    eprintln!("shell on /dev/vda after {:.0} s", at.0.as_secs_f64());
    Ok(at)
}

/// Has the guest's shell read DD_MIB from /dev/vda ([`dd_line`]).
fn dd(g: &mut Guest) -> Result<Dd, String> {
    // Markers the shell computes, so that the echo of the typed line does not match.
    let (wall, trips) = typed(
        g,
        &format!("{}; echo dd-$((1+1))-done\n", dd_line()),
        "dd-2-done\r\n",
    )?;
    Ok(Dd {
        secs: timed_secs(&g.out.text(), "dd"),
        wall: Some(wall),
        trips: Some(trips),
    })
}

/// Debian's kernel on `vmx/mkroot`'s root disk (a copy on the tool's virtio-blk), with a
/// virtio-net card to a QEMU VM (TCG, the same kernel and disk) on a unix stream socket,
/// the PC devices in the hypervisor: the guest reads DD_MIB from /dev/vda with dd (caches
/// dropped) and pings the QEMU VM; the QEMU VM then does the same dd on its own virtio-blk
/// and pings the guest, the anchors. A guest and a QEMU VM rather than two guests under
/// the one Bochs: the two would share Bochs's one emulated CPU, each boot taking minutes
/// alone, so a pair of Linux guests is a long run for one figure (ping), and the QEMU
/// VM's clock is the host's, so its side of the ping is wall time.
fn disk_and_net() -> Io {
    let mut r = Io::default();
    let root = RootDisk::new("io");
    // Writable, as the initramfs mounts it so.
    let blk = vmx::virtio::blk::Blk::new(
        Box::new(vmx::virtio::blk::FileDisk::open(&root.copy, false).expect("the disk copy")),
        false,
        "root.ext4",
    );
    let (mut peer, link, frames) = vmm_tests::fixtures::QemuPeer::start(&root.dir);
    let nic = vmx::virtio::net::Net::new([0x52, 0x54, 0, 0, 0, 1], link);
    let mut g = boot(true, Link::Com1, root.initrd.clone(), move || {
        session::Devices {
            disks: vec![blk],
            nets: vec![(nic, frames)],
            ..Default::default()
        }
    });
    peer.up("10.0.0.2/24");
    let start = g.start;
    match shell_on_vda(&g).and_then(|_| dd(&mut g)) {
        Ok(dd) => r.dd = dd,
        Err(e) => {
            r.note = e;
            return r;
        }
    }
    eprintln!("io: dd done after {:.0} s", start.elapsed().as_secs_f64());
    let ping = format!(
        "ip link set eth0 up; ip addr add 10.0.0.1/24 dev eth0; ping -c {PINGS} -W 30 10.0.0.2; echo ping-$((2+2))-done\n"
    );
    match typed(&mut g, &ping, "ping-4-done\r\n") {
        Ok((wall, trips)) => (r.ping_wall, r.ping_trips) = (Some(wall), Some(trips)),
        Err(e) => {
            r.note = e;
            return r;
        }
    }
    r.ping_ms = ping_avg(&g.out.text());
    eprintln!(
        "io: pings done after {:.0} s",
        start.elapsed().as_secs_f64()
    );
    // The anchors: the same in the QEMU VM (its console is its own).
    let q = format!(
        "{}; ping -c {PINGS} -W 30 10.0.0.1; echo qping-$((2+2))-done\n",
        dd_line()
    );
    peer.stdin.write_all(q.as_bytes()).unwrap();
    let ptext = || peer.text();
    if wait_for(Instant::now(), &ptext, "qping-4-done") {
        r.qemu_dd_secs = timed_secs(&ptext(), "dd");
        r.qemu_ping_ms = ping_avg(&ptext());
    } else {
        r.note = format!("the QEMU VM did not finish: {}", tail(&ptext()));
    }
    match power_off(&mut g, "io") {
        Ok(rep) => {
            r.disk_report = rep
                .stats
                .report()
                .lines()
                .find(|l| l.starts_with("virtio-blk: "))
                .unwrap_or_default()
                .to_string();
        }
        Err(e) => r.note = e,
    }
    r
}

/// What a `kqueue` or `kseg` run measured: the root disk in the hypervisor.
#[derive(Default)]
struct KDisk {
    /// 9P requests from the tool's start to the shell on /dev/vda, and the wall time.
    trips_to_shell: Option<u64>,
    shell: Option<Duration>,
    dd: Dd,
    /// The tool's rows for the disk: (disk load), (blkq), (disk save) round trips.
    load_trips: Option<u64>,
    queue_trips: Option<u64>,
    save_trips: Option<u64>,
    note: String,
}

/// The dd both disk runs type, caches dropped first.
fn dd_line() -> String {
    format!(
        "echo 3 > /proc/sys/vm/drop_caches; {}",
        timed(
            &format!("dd if=/dev/vda of=/dev/null bs=64k count={}", DD_MIB * 16),
            "dd",
        )
    )
}

/// Debian's kernel on a copy of `vmx/mkroot`'s root disk served by the hypervisor
/// (`-d FILE`, or `-d seg:FILE` when `seg`), the PC devices there too: the round trips to
/// the shell, the dd of the `io` run, then a file written and a poweroff (the segment
/// written back).
fn kernel_disk(seg: bool) -> KDisk {
    let name = if seg { "kseg" } else { "kqueue" };
    let mut r = KDisk::default();
    let root = RootDisk::new(name);
    let spec = vmx::kdisk::Spec::parse(&format!(
        "{}{}",
        if seg { "seg:" } else { "" },
        root.copy.display()
    ));
    let mut g = boot(true, Link::Com1, root.initrd.clone(), move || {
        session::Devices {
            kdisks: vec![spec],
            ..Default::default()
        }
    });
    match shell_on_vda(&g).and_then(|at| Ok((at, dd(&mut g)?))) {
        Ok(((at, trips), dd)) => {
            (r.shell, r.trips_to_shell, r.dd) = (Some(at), Some(trips), dd);
        }
        Err(e) => {
            r.note = e;
            return r;
        }
    }
    if let Err(e) = typed(
        &mut g,
        "echo bench > /bench-wrote; sync; echo w-$((1+1))-done\n",
        "w-2-done\r\n",
    ) {
        r.note = e;
        return r;
    }
    match power_off(&mut g, name) {
        Ok(rep) => {
            let row = |k: &str| rep.stats.by_reason.get(k).map(|v| v.1);
            r.load_trips = row(vmx::kdisk::LOAD);
            r.queue_trips = row(vmx::kdisk::QUEUE);
            r.save_trips = row(vmx::kdisk::SAVE);
            if let Err(e) = &rep.outcome {
                r.note = e.clone();
            }
        }
        Err(e) => r.note = e,
    }
    r
}

/// The in-kernel disks' table: the queue file and the segment beside the tool's own
/// virtio-blk and the QEMU VM's (the `io` run, when it ran), and the anchors.
fn kdisk_table(q: &KDisk, s: &KDisk, io: Option<&Io>) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let mbs = |secs: Option<f64>| {
        secs.filter(|s| *s > 0.0)
            .map(|s| DD_MIB as f64 * 1.048576 / s)
    };
    let wall = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let per_mb = |t: Option<u64>| t.map(|n| n as f64 / (DD_MIB as f64 * 1.048576));
    let line = |name: &str, a: String, b: String, c: String, d: String, anchor: &str| {
        format!("{name:<36} {a:>12} {b:>12} {c:>14} {d:>13}  {anchor}\n")
    };
    let mut t = line(
        "in-kernel virtio-blk (root disk)",
        "queue file".into(),
        "segment".into(),
        "tool's device".into(),
        "QEMU VM (TCG)".into(),
        "anchor (issue 19)",
    );
    t += &line(
        "9P round trips, clone to the shell",
        n(q.trips_to_shell),
        n(s.trips_to_shell),
        "-".into(),
        "-".into(),
        "<= 300 (1,759 now, initramfs, tool's PCI)",
    );
    t += &line(
        "  wall s to the shell",
        f(wall(q.shell), 0),
        f(wall(s.shell), 0),
        "-".into(),
        "-".into(),
        "",
    );
    t += &line(
        &format!("dd {DD_MIB} MiB: MB/s (own clock)"),
        f(mbs(q.dd.secs), 3),
        f(mbs(s.dd.secs), 3),
        f(mbs(io.and_then(|i| i.dd.secs)), 3),
        f(mbs(io.and_then(|i| i.qemu_dd_secs)), 1),
        "QEMU 83.9; tool's device 2.2",
    );
    t += &line(
        "  MB/s, wall (typed to done)",
        f(mbs(wall(q.dd.wall)), 3),
        f(mbs(wall(s.dd.wall)), 3),
        f(mbs(wall(io.and_then(|i| i.dd.wall))), 3),
        "-".into(),
        "tool's device 0.065",
    );
    t += &line(
        "  9P round trips per MB",
        f(per_mb(q.dd.trips), 1),
        f(per_mb(s.dd.trips), 1),
        f(per_mb(io.and_then(|i| i.dd.trips)), 0),
        "-".into(),
        "queue <= 10, segment 0 (387 now)",
    );
    t += &line(
        "round trips: upload / blkq / write-back",
        format!("- / {} / -", n(q.queue_trips)),
        format!("{} / - / {}", n(s.load_trips), n(s.save_trips)),
        "-".into(),
        "-".into(),
        "",
    );
    for (name, r) in [("kqueue", q), ("kseg", s)] {
        if !r.note.is_empty() {
            t += &format!("{name}: {}\n", r.note);
        }
    }
    t
}

/// Pings the `knet` run's two test guests exchange through the kernel's switch.
const G2G_PINGS: u32 = 20;
/// The `knet` run's bulk file, fetched from the host's test server with wget.
const BULK_MIB: usize = 4;

/// What the `knet` run measured: the kernel's virtio-net cards and switch.
#[derive(Default)]
struct KNet {
    /// Two test guests through the kernel's switch: pings counted by each (pinger,
    /// echoer), 9P requests on the link from the pinger's `go` to its end, wall seconds.
    g2g_done: Option<(u32, u32)>,
    g2g_trips: Option<u64>,
    g2g_secs: Option<f64>,
    /// The Linux guest bridged onto slirp: the wall time to its shell (from `clone`),
    /// its lease, its pings to the host (average ms on its clock, wall, 9P requests), its
    /// wget of BULK_MIB (seconds on its clock, wall from typing to the end marker, 9P
    /// requests meanwhile, the server's wall time for the transfer).
    shell: Option<Duration>,
    trips_to_shell: Option<u64>,
    lease: Option<String>,
    ping: Net,
    /// The QEMU VM's same on its own slirp (its clock is the host's).
    qemu: Net,
    note: String,
}

/// One guest's pings and wget through slirp.
#[derive(Default)]
struct Net {
    ping_ms: Option<f64>,
    ping_wall: Option<Duration>,
    ping_trips: Option<u64>,
    wget_secs: Option<f64>,
    wget_wall: Option<Duration>,
    wget_trips: Option<u64>,
    served: Option<Duration>,
}

/// The shell lines of the `knet` run's slirp part, typed at the Linux guest and the QEMU
/// VM alike, each ending in a marker the shell computes: a lease, PINGS pings of the
/// host, a timed wget of the bulk file.
fn slirp_lines(port: u16) -> [(String, &'static str); 3] {
    [
        (
            format!("{}; echo lease-$((1+2))-done\n", slirp::dhcp()),
            "lease-3-done",
        ),
        (
            format!(
                "ping -c {PINGS} -W 30 {}; echo ping-$((2+2))-done\n",
                slirp::HOST
            ),
            "ping-4-done",
        ),
        (
            format!(
                "{}; echo bulk-$((3+3))-done\n",
                timed(&slirp::wget(port, "/bulk", "/dev/null"), "wget")
            ),
            "bulk-6-done",
        ),
    ]
}

/// The kernel's network, two ways. Guest to guest: the pingpong test guests through
/// the kernel's own switch (a hypervisor with two CPUs, the guests on the second), as
/// vmx_bochs's test runs them, with the 9P requests on the link counted; two test guests
/// rather than Linux ones (two Linux boots under one Bochs take the better part of an
/// hour, see the `io` run). Guest to host: the hypervisor booted with `switch` (its e1000
/// on Bochs's slirp the switch's uplink), Debian's kernel on a copy of mkroot's root disk
/// in a segment (`-d seg:FILE`) with an in-kernel card on that switch (`-n switch`): the
/// disk and the NIC both the hypervisor's, the round trips to the shell; a lease from slirp,
/// pings of the host (10.0.2.2) and a wget of BULK_MIB from a test server on the host's
/// 127.0.0.1; then the QEMU VM of the `io` run on QEMU's own slirp does the same, the
/// anchors.
fn kernel_net() -> KNet {
    let mut r = KNet::default();
    // The fixtures panic where a test would fail: here that is a note, and the run goes on.
    let g2g = std::panic::catch_unwind(|| {
        let m = Machine::bochs(Opts {
            cmdline: "owner=eve serve=uart".into(),
            virtio_ports: 0,
            cpus: 2,
            ..Opts::default()
        });
        let c = m.client("eve", "");
        c.set_timeout(Some(Duration::from_secs(600)));
        let x = vmm_tests::fixtures::pingpong::exchange(&c, G2G_PINGS);
        eprintln!(
            "knet: guest to guest: {:?} pings, {} round trips, {:.1} s, the pinger's end {:?}",
            x.done, x.trips, x.secs, x.end
        );
        (x.done, x.trips, x.secs)
    });
    match g2g {
        Ok((done, trips, secs)) => {
            (r.g2g_done, r.g2g_trips, r.g2g_secs) = (Some(done), Some(trips), Some(secs));
        }
        Err(_) => r.note = "guest to guest failed (above); ".into(),
    }
    let (port, served) = slirp::http_server(BULK_MIB << 20);
    let root = RootDisk::new("knet");
    let spec = vmx::kdisk::Spec::parse(&format!("seg:{}", root.copy.display()));
    let mac = [0x52, 0x54, 0, 0, 0, 0x19];
    let mut g = boot(true, Link::Bridged, root.initrd.clone(), move || {
        session::Devices {
            kdisks: vec![spec],
            switch_nets: vec![mac],
            ..Default::default()
        }
    });
    match shell_on_vda(&g) {
        Ok((at, trips)) => (r.shell, r.trips_to_shell) = (Some(at), Some(trips)),
        Err(e) => {
            r.note += &e;
            return r;
        }
    }
    let mut walls = Vec::new();
    for (line, done) in slirp_lines(port) {
        match typed(&mut g, &line, &format!("{done}\r\n")) {
            Ok(w) => walls.push(w),
            Err(e) => {
                r.note += &e;
                return r;
            }
        }
    }
    let text = g.out.text();
    r.lease = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(slirp::LEASE))
        .map(|ip| ip.trim().to_string());
    (r.ping.ping_wall, r.ping.ping_trips) = (Some(walls[1].0), Some(walls[1].1));
    (r.ping.wget_wall, r.ping.wget_trips) = (Some(walls[2].0), Some(walls[2].1));
    r.ping.ping_ms = ping_avg(&text);
    r.ping.wget_secs = timed_secs(&text, "wget");
    // The server's figure comes once the guest's side is closed, about when the marker.
    let bulk = || {
        served
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .map(|s| s.wall)
    };
    r.ping.served = bulk();
    if let Err(e) = power_off(&mut g, "knet") {
        r.note += &e;
    }
    drop(g);
    // The anchors: the QEMU VM on its own slirp (its console is its own).
    let dir = std::env::temp_dir().join(format!("bench-linux-knet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Its boot panics after 15 minutes without a shell: a note, the figures above kept.
    let Ok(mut peer) = std::panic::catch_unwind(|| vmm_tests::fixtures::QemuPeer::on_slirp(&dir))
    else {
        r.note += "the QEMU VM reached no shell (above)";
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    };
    for (line, done) in slirp_lines(port) {
        let t0 = Instant::now();
        peer.stdin.write_all(line.as_bytes()).unwrap();
        let ptext = || peer.text();
        if !wait_for(t0, &ptext, done) {
            r.note += &format!("the QEMU VM did not finish: {}", tail(&ptext()));
            break;
        }
        if done.starts_with("bulk") {
            r.qemu.wget_wall = Some(t0.elapsed());
        }
    }
    let ptext = peer.text();
    r.qemu.ping_ms = ping_avg(&ptext);
    r.qemu.wget_secs = timed_secs(&ptext, "wget");
    r.qemu.served = bulk();
    drop(peer);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The `knet` run's table.
fn knet_table(r: &KNet) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let wall = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let mbs = |secs: Option<f64>| {
        secs.filter(|s| *s > 0.0)
            .map(|s| (BULK_MIB << 20) as f64 / 1e6 / s)
    };
    let line = |name: &str, a: String, b: String, anchor: &str| {
        format!("{name:<40} {a:>16} {b:>16}  {anchor}\n")
    };
    let mut t = line(
        "knet (the kernel's virtio-net, switch)",
        "Bochs + vmx".into(),
        "QEMU VM (TCG)".into(),
        "anchor (issue 19)",
    );
    t += &line(
        &format!("guest to guest x{G2G_PINGS}: pings answered"),
        r.g2g_done
            .map_or("-".into(), |(a, b)| format!("{a} / {b} echoed")),
        "-".into(),
        "",
    );
    t += &line(
        "  9P round trips on the link (per ping)",
        match (r.g2g_trips, r.g2g_done) {
            (Some(t), Some((p, _))) if p > 0 => {
                format!("{t} ({:.2})", t as f64 / f64::from(p))
            }
            (t, _) => n(t),
        },
        "-".into(),
        "0 per ping (the go and the wait)",
    );
    t += &line("  wall s", f(r.g2g_secs, 1), "-".into(), "");
    t += &line(
        "bridged guest, root in a segment: to shell",
        format!("{} s, {} trips", f(wall(r.shell), 0), n(r.trips_to_shell)),
        "-".into(),
        "disk and NIC the hypervisor's",
    );
    t += &line(
        "  lease from slirp",
        r.lease.clone().unwrap_or("-".into()),
        "-".into(),
        "",
    );
    t += &line(
        &format!("ping {} x{PINGS}: avg ms (own clock)", slirp::HOST),
        f(r.ping.ping_ms, 2),
        f(r.qemu.ping_ms, 2),
        "",
    );
    t += &line(
        "  wall s; 9P round trips per ping",
        format!(
            "{}; {}",
            f(wall(r.ping.ping_wall), 1),
            f(r.ping.ping_trips.map(|t| t as f64 / f64::from(PINGS)), 1)
        ),
        "-".into(),
        "",
    );
    t += &line(
        &format!("wget {BULK_MIB} MiB from the host: MB/s (own clock)"),
        f(mbs(r.ping.wget_secs), 3),
        f(mbs(r.qemu.wget_secs), 2),
        "MB/s beside the QEMU VM's",
    );
    t += &line(
        "  MB/s, wall (typed to done)",
        f(mbs(wall(r.ping.wget_wall)), 3),
        f(mbs(wall(r.qemu.wget_wall)), 2),
        "",
    );
    t += &line(
        "  MB/s, the server's wall",
        f(mbs(wall(r.ping.served)), 3),
        f(mbs(wall(r.qemu.served)), 2),
        "",
    );
    t += &line(
        "  9P round trips during it",
        n(r.ping.wget_trips),
        "-".into(),
        "",
    );
    if !r.note.is_empty() {
        t += &format!("knet: {}\n", r.note);
    }
    t
}

/// Types `cmd` at the guest and waits for `done` on its console: the wall time it took
/// and the 9P requests meanwhile.
fn typed(g: &mut Guest, cmd: &str, done: &str) -> Result<(Duration, u64), String> {
    let (t0, n0) = (Instant::now(), g.trips());
    g.keys.write_all(cmd.as_bytes()).unwrap();
    g.wait(done)?;
    Ok((t0.elapsed(), g.trips() - n0))
}

/// The `io` run's table.
fn io_table(r: &Io) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mbs = |secs: Option<f64>| {
        secs.filter(|s| *s > 0.0)
            .map(|s| DD_MIB as f64 * 1.048576 / s)
    };
    let wall = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let per_mb = r.dd.trips.map(|n| n as f64 / (DD_MIB as f64 * 1.048576));
    let per_ping = r.ping_trips.map(|n| n as f64 / f64::from(PINGS));
    format!(
        "{:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {:<34} {:>14} {:>14}\n\
         {}\n{}",
        "io (Debian on a virtio root disk)",
        "Bochs + vmx",
        "QEMU VM (TCG)",
        format!("dd {DD_MIB} MiB of /dev/vda: MB/s (own clock)"),
        f(mbs(r.dd.secs), 3),
        f(mbs(r.qemu_dd_secs), 1),
        "  MB/s, wall (typed to done)",
        f(mbs(wall(r.dd.wall)), 3),
        "-",
        "  9P round trips per MB",
        f(per_mb, 0),
        "-",
        format!("ping x{PINGS}: avg ms (sender's clock)"),
        f(r.ping_ms, 2),
        f(r.qemu_ping_ms, 2),
        "  wall s for the pings",
        f(wall(r.ping_wall), 1),
        "-",
        "  9P round trips per ping",
        f(per_ping, 0),
        "-",
        r.disk_report,
        r.note
    )
}

/// A named way to boot.
type Run = (&'static str, fn() -> Figures);

/// One line of the table; the ratio is to the native row, if measured.
fn row(r: &Figures, rows: &[Figures]) -> String {
    let native_s = rows
        .iter()
        .find(|r| r.name == "native")
        .and_then(|r| r.prompt)
        .map(|d| d.as_secs_f64());
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let s = r.prompt.map(|d| d.as_secs_f64());
    format!(
        "{:<8} {:>10} {:>8} {:>8} {:>14} {:>12} {:>13} {:>13} {:>14}  {}",
        r.name,
        s.map_or("-".into(), |s| format!("{s:.1}")),
        match (s, native_s) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        },
        r.boot
            .map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64())),
        opt(r.trips_to_prompt),
        opt(r.trips_total),
        opt(r.cons_trips),
        opt(r.client_exits),
        opt(r.kernel_exits),
        r.note
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |n: &str| args.is_empty() || args.iter().any(|a| a == n);
    // Everything a run needs, checked before the first: one line, not a panic, when not.
    bench::require_programs(
        "bench-linux",
        &["bochs", "grub-mkrescue", "qemu-system-x86_64"],
    );
    bench::require("bench-linux", images::debian_kernel());
    bench::require("bench-linux", images::busybox());
    if want("io") || want("kqueue") || want("kseg") || want("knet") {
        bench::require("bench-linux", images::root_disk());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("bench-linux: load average before: {}", load.trim());
    // In this order, each row printed as it is measured (the tool's run is the slowest).
    let mut rows: Vec<Figures> = Vec::new();
    let header = format!(
        "{:<8} {:>10} {:>8} {:>8} {:>14} {:>12} {:>13} {:>13} {:>14}  note",
        "run",
        "prompt s",
        "x native",
        "boot s",
        "trips->prompt",
        "trips total",
        "console trips",
        "client exits",
        "kernel exits"
    );
    let runs: [Run; 4] = [
        ("kernel", || through_the_hypervisor(true, false)),
        ("tcp", || through_the_hypervisor(true, true)),
        ("native", native),
        ("tool", || through_the_hypervisor(false, false)),
    ];
    for (name, run) in runs {
        if want(name) {
            rows.push(run());
            eprintln!("{header}\n{}", row(rows.last().unwrap(), &rows));
        }
    }
    let io = want("io").then(disk_and_net);
    let kq = want("kqueue").then(|| kernel_disk(false));
    let ks = want("kseg").then(|| kernel_disk(true));
    let kn = want("knet").then(kernel_net);
    if !rows.is_empty() {
        println!("{header}");
    }
    for r in &rows {
        println!("{}", row(r, &rows));
    }
    if let Some(io) = &io {
        println!("{}", io_table(io));
    }
    if kq.is_some() || ks.is_some() {
        println!(
            "{}",
            kdisk_table(
                &kq.unwrap_or_default(),
                &ks.unwrap_or_default(),
                io.as_ref()
            )
        );
    }
    if let Some(kn) = &kn {
        println!("{}", knet_table(kn));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("bench-linux: load average after: {}", load.trim());
}
