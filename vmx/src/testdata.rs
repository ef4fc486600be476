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

/// A shell command line that runs `cmd` and then prints `TAG-secs A B`, the guest's
/// uptime before and after (its own clock, as dd and ping of busybox report no times).
pub fn timed(cmd: &str, tag: &str) -> String {
    format!(
        "a=$(cut -d' ' -f1 /proc/uptime); {cmd}; echo {tag}-secs $a $(cut -d' ' -f1 /proc/uptime)"
    )
}

/// The seconds the last [`timed`] command with `tag` took, from the console's `text`.
pub fn timed_secs(text: &str, tag: &str) -> Option<f64> {
    let head = format!("{tag}-secs ");
    text.lines().rev().find_map(|l| {
        let f: Vec<f64> = l
            .strip_prefix(&head)?
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [a, b] => Some(b - a),
            _ => None,
        }
    })
}

/// Runs `ip ARGS` (iproute2); panics with its error.
pub fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (the TAP tests need root with CAP_NET_ADMIN and /dev/net/tun)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A persistent TUN or TAP device made for one test (`ip tuntap add`), named `vmxt`, the
/// process ID and `letter`; removed on drop.
pub struct HostDev(pub String);

impl HostDev {
    pub fn new(letter: char, mode: &str) -> HostDev {
        let name = format!("vmxt{}{letter}", std::process::id());
        // One left by a killed run of a process with the same ID.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .output();
        ip(&["tuntap", "add", "dev", &name, "mode", mode]);
        HostDev(name)
    }

    /// Gives the host's side `cidr` and brings it up.
    pub fn up(&self, cidr: &str) {
        ip(&["addr", "add", cidr, "dev", &self.0]);
        ip(&["link", "set", &self.0, "up"]);
    }
}

impl Drop for HostDev {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// The guest's side of a virtio-net card, for tests that play its driver (rings in a byte
/// array, as `virtio::testing` lays them out): the card on `link`, 8 receive buffers
/// posted, a thread reading `frames` from the link.
pub struct NicDriver {
    pub dev: crate::virtio::Device,
    ram: crate::virtio::testing::Ram,
    rxq: crate::virtio::testing::Driver,
    txq: crate::virtio::testing::Driver,
    seen: u16,
    from_link: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl NicDriver {
    const LIMIT: u64 = 1 << 20;
    const TX_BUF: usize = 0x8000;
    const RX_BUFS: u64 = 0x40000;

    pub fn new(
        mac: [u8; 6],
        link: Box<dyn crate::virtio::net::Link>,
        mut frames: crate::virtio::net::FrameSource,
    ) -> NicDriver {
        use crate::virtio::testing::{Driver, Ram};
        use crate::virtio::{Device, Kind, QUEUE_SIZE};
        let (tx, from_link) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(Some(f)) = frames() {
                if tx.send(f).is_err() {
                    return;
                }
            }
        });
        let mut dev = Device::new(Kind::Net(crate::virtio::net::Net::new(mac, link)), 11);
        let mut ram = Ram::new(Self::LIMIT as usize);
        for (q, pfn) in [(0, 16), (1, 32)] {
            dev.write(0x0e, 2, q, &mut ram, Self::LIMIT);
            dev.write(0x08, 4, pfn, &mut ram, Self::LIMIT);
        }
        dev.write(0x12, 1, 7, &mut ram, Self::LIMIT);
        let mut rxq = Driver::new(QUEUE_SIZE, 16);
        for k in 0..8u64 {
            rxq.offer(&mut ram, &[(Self::RX_BUFS + k * 0x1000, 1526, true)]);
        }
        dev.write(0x10, 2, 0, &mut ram, Self::LIMIT);
        NicDriver {
            dev,
            ram,
            rxq,
            txq: Driver::new(QUEUE_SIZE, 32),
            seen: 0,
            from_link,
        }
    }

    /// Transmits `frame` (after a zero header: no offloads) and notifies the device.
    pub fn send(&mut self, frame: &[u8]) {
        let mut b = vec![0u8; crate::virtio::net::HDR];
        b.extend_from_slice(frame);
        let a = Self::TX_BUF;
        self.ram.b[a..a + b.len()].copy_from_slice(&b);
        self.txq
            .offer(&mut self.ram, &[(a as u64, b.len() as u32, false)]);
        assert_eq!(self.dev.write(0x10, 2, 1, &mut self.ram, Self::LIMIT), None);
    }

    /// Frames sent so far that the device has given back.
    pub fn transmitted(&self) -> u16 {
        self.txq.used_idx(&self.ram)
    }

    /// What the device put in the receive buffers, waiting up to `wait` for a frame from
    /// the link; each buffer's header is checked (all zeros) and the buffer reposted.
    pub fn receive(&mut self, wait: std::time::Duration) -> Vec<Vec<u8>> {
        use crate::virtio::{net::HDR, Kind};
        if let Ok(f) = self.from_link.recv_timeout(wait) {
            if let Kind::Net(n) = &mut self.dev.kind {
                n.receive(f);
            }
            assert_eq!(self.dev.notify(0, &mut self.ram, Self::LIMIT), None);
        }
        let mut got = Vec::new();
        while self.seen != self.rxq.used_idx(&self.ram) {
            let (head, len) = self.rxq.used_entry(&self.ram, self.seen);
            let a = Self::RX_BUFS as usize + 0x1000 * head as usize;
            assert_eq!(self.ram.b[a..a + HDR], [0; HDR]);
            got.push(self.ram.b[a + HDR..a + len as usize].to_vec());
            self.rxq.publish(&mut self.ram, head as u16);
            self.seen = self.seen.wrapping_add(1);
        }
        got
    }
}

/// Ethernet frames the network tests send and look for.
pub mod ether {
    pub const ARP: [u8; 2] = [0x08, 0x06];
    pub const IPV4: [u8; 2] = [0x08, 0x00];

    /// ARP: who has `target`? tell `ip` at `mac` (broadcast, padded to 60 bytes).
    pub fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&ARP);
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.resize(60, 0);
        f
    }

    /// The MAC address in `f` if it is an ARP reply to `to` saying where `ip` is.
    pub fn arp_reply(f: &[u8], to: [u8; 6], ip: [u8; 4]) -> Option<[u8; 6]> {
        (f.len() >= 42
            && f[0..6] == to
            && f[12..14] == ARP
            && f[20..22] == [0, 2]
            && f[28..32] == ip)
            .then(|| f[22..28].try_into().unwrap())
    }

    /// The Internet checksum (RFC 1071).
    pub fn checksum(b: &[u8]) -> u16 {
        let mut s: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// An ICMP echo request (id, sequence, payload) from `src` to `dst`, MACs and IPs.
    pub fn echo_request(
        mac: ([u8; 6], [u8; 6]),
        ip: ([u8; 4], [u8; 4]),
        id: u16,
        seq: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(payload);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut iph = vec![0x45, 0];
        iph.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
        iph.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
        iph.extend_from_slice(&ip.0);
        iph.extend_from_slice(&ip.1);
        let c = checksum(&iph);
        iph[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = mac.1.to_vec();
        f.extend_from_slice(&mac.0);
        f.extend_from_slice(&IPV4);
        f.extend_from_slice(&iph);
        f.extend_from_slice(&icmp);
        f
    }

    /// Whether `f` is the echo reply to `request` (addresses swapped, same id, sequence
    /// and payload, checksums right).
    pub fn is_echo_reply(f: &[u8], request: &[u8]) -> bool {
        let q = &request[14..];
        let r = f.get(14..).unwrap_or_default();
        // The IP packet without any Ethernet padding.
        let total = r
            .get(2..4)
            .map_or(0, |t| usize::from(u16::from_be_bytes([t[0], t[1]])));
        let r = r.get(..total).unwrap_or_default();
        let ihl = usize::from(r.first().map_or(0, |b| b & 15)) * 4;
        f.len() >= 42
            && f[0..6] == request[6..12]
            && f[6..12] == request[0..6]
            && f[12..14] == IPV4
            && ihl >= 20
            && r.len() >= ihl + 8
            && r[9] == 1
            && checksum(&r[..ihl]) == 0
            && r[12..16] == q[16..20]
            && r[16..20] == q[12..16]
            && r[ihl] == 0
            && checksum(&r[ihl..]) == 0
            && r[ihl + 4..] == q[24..]
    }
}
