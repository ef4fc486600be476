//! The tool's virtio-net cards: the device model is the `virtio` crate's
//! ([`::virtio::net::device`], shared with the kernel), its frames cross a [`Link`] (a
//! stream socket in QEMU's `-netdev stream` framing, or a TAP device). Frames from the
//! link arrive through [`Net::receive`], called by the exit loop when the link's reader
//! thread hands it one, and wait in a bounded backlog until the guest has a receive
//! buffer.

use super::Mem;
pub use ::virtio::net::device::HDR;
use ::virtio::net::device::{self, FramePort};
pub use ::virtio::net::MAX_FRAME;
use ::virtio::queue::Queue;
use std::collections::VecDeque;
use std::io::{Read, Write};

/// Frames waiting for receive buffers, at most (the rest are dropped, as a NIC would).
const BACKLOG: usize = 256;

/// Where frames go.
pub trait Link: Send {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;
}

/// QEMU's stream framing (`-netdev stream`, `-netdev socket,connect=`): each frame
/// preceded by its length as 4 bytes, big-endian.
pub struct Stream<W: Write + Send>(pub W);

impl<W: Write + Send> Link for Stream<W> {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(4 + frame.len());
        b.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        b.extend_from_slice(frame);
        self.0.write_all(&b)
    }
}

/// Reads one frame in stream framing: Ok(None) at a clean end of stream; an error for
/// a length beyond [`MAX_FRAME`] and a header's room (the stream cannot be resynced).
pub fn read_frame(r: &mut dyn Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME + HDR {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame length {n} in the stream is too large"),
        ));
    }
    let mut f = vec![0u8; n];
    r.read_exact(&mut f)?;
    Ok(Some(f))
}

/// A Linux TAP device (IFF_TAP | IFF_NO_PI): one Ethernet frame per read and per write,
/// no framing. Opened through `tun-tap` (the tool has no `unsafe` for the ioctl); the
/// reader thread and the device share the one descriptor.
pub struct Tap(pub std::sync::Arc<tun_tap::Iface>);

impl Link for Tap {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self.0.send(frame)? {
            n if n == frame.len() => Ok(()),
            n => Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("the TAP device took {n} of {} bytes", frame.len()),
            )),
        }
    }
}

/// What a user can do about an error opening TAP device NAME: by errno (Linux's
/// numbers) and, where it matters, whether an interface of that name exists.
const TAP_ADVICE: &[(i32, Option<bool>, &str)] = &[
    (1, Some(false), "no such device, and making one needs CAP_NET_ADMIN (root); root can make one for you with `ip tuntap add NAME mode tap user YOU`"),
    (1, Some(true), "not permitted: it was made for another user, and attaching to it needs CAP_NET_ADMIN (root)"),
    (2, None, "no /dev/net/tun (is the tun module loaded? modprobe tun)"),
    (13, None, "no access to /dev/net/tun"),
    (16, None, "the device is busy (another process has it open)"),
    (19, None, "no TUN/TAP driver behind /dev/net/tun (modprobe tun)"),
    (22, None, "not a TAP device (a TUN device or another interface has that name?)"),
];

/// `-n tap!NAME`'s error: what went wrong, what to do, and the system's words; `exists`
/// tells whether the host has an interface NAME.
pub fn tap_error(name: &str, exists: bool, e: &std::io::Error) -> String {
    let advice = e
        .raw_os_error()
        .and_then(|n| {
            TAP_ADVICE
                .iter()
                .find(|(k, w, _)| *k == n && w.is_none_or(|w| w == exists))
        })
        .map_or(String::new(), |(_, _, a)| {
            format!("{}: ", a.replace("NAME", name))
        });
    format!("-n tap!{name}: {advice}{e}")
}

impl Tap {
    /// Attaches to TAP device `name` (creating it, with CAP_NET_ADMIN, if there is none;
    /// a created device goes away when the tool ends): the link and its frame source.
    pub fn open(name: &str) -> Result<(Box<dyn Link>, FrameSource), String> {
        let dev = tun_tap::Iface::without_packet_info(name, tun_tap::Mode::Tap).map_err(|e| {
            let exists = std::path::Path::new("/sys/class/net").join(name).exists();
            tap_error(name, exists, &e)
        })?;
        let dev = std::sync::Arc::new(dev);
        let r = dev.clone();
        // Room for anything the host sends (its MTU may be above Ethernet's): a frame too
        // long for the device is read whole and dropped there, not cut short.
        let mut buf = vec![0u8; 1 << 16];
        let source: FrameSource = Box::new(move || loop {
            match r.recv(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Some(buf[..n].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        });
        Ok((Box::new(Tap(dev)), source))
    }
}

/// A Linux interface name as the kernel takes it: 1 to 15 bytes, no `/`, `:` or white
/// space, not `.` or `..`; and no `%` (a pattern the kernel would fill in, leaving the
/// user without the name).
pub fn valid_ifname(n: &str) -> bool {
    (1..16).contains(&n.len())
        && n != "."
        && n != ".."
        && !n.contains(|c: char| c == '/' || c == ':' || c == '%' || c.is_whitespace())
}

/// Reads the next frame from a network link: Ok(None) when it ends.
pub type FrameSource = Box<dyn FnMut() -> std::io::Result<Option<Vec<u8>>> + Send>;

/// A `-n` argument: `[mac=XX:XX:XX:XX:XX:XX,]LINK`, LINK one of `unix!/PATH` or
/// `tcp!HOST!PORT` (connect to a peer speaking QEMU's stream framing, e.g. QEMU's
/// `-netdev stream,server=on`), `listen!unix!/PATH`, `listen!tcp!HOST!PORT` (wait for
/// one peer, e.g. another vmx or QEMU's `-netdev stream,server=off`), or `tap!NAME` (a
/// Linux TAP device), or `switch` (a card the hypervisor serves itself on its Ethernet
/// switch, `pci net`: its frames never come here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub mac: Option<[u8; 6]>,
    pub listen: bool,
    /// Unix socket path, or host and port.
    pub addr: Addr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Unix(String),
    Tcp(String, u16),
    /// A TAP device's interface name.
    Tap(String),
    /// The hypervisor's switch: the card is the hypervisor's (`pci net`).
    Switch,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix!{p}"),
            Addr::Tcp(h, p) => write!(f, "tcp!{h}!{p}"),
            Addr::Tap(n) => write!(f, "tap!{n}"),
            Addr::Switch => write!(f, "switch"),
        }
    }
}

/// Parses a MAC address `XX:XX:XX:XX:XX:XX` (the switch's syntax, `netswitch::Mac`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    netswitch::Mac::parse(s).map(|m| m.0)
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, String> {
        let bad = || {
            format!("-n {s:?}: expected [mac=XX:XX:XX:XX:XX:XX,] then [listen!]unix!/PATH, [listen!]tcp!HOST!PORT, tap!NAME (an interface name of at most 15 bytes) or switch")
        };
        let (mac, rest) = match s.strip_prefix("mac=") {
            Some(r) => {
                let (m, rest) = r.split_once(',').ok_or_else(bad)?;
                (Some(parse_mac(m).ok_or_else(bad)?), rest)
            }
            None => (None, s),
        };
        let (listen, rest) = match rest.strip_prefix("listen!") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let addr = match rest.split('!').collect::<Vec<_>>()[..] {
            ["unix", p] if !p.is_empty() => Addr::Unix(p.to_string()),
            ["tcp", h, p] if !h.is_empty() => {
                Addr::Tcp(h.to_string(), p.parse().map_err(|_| bad())?)
            }
            ["tap", n] if !listen && valid_ifname(n) => Addr::Tap(n.to_string()),
            ["switch"] if !listen => Addr::Switch,
            _ => return Err(bad()),
        };
        Ok(Spec { mac, listen, addr })
    }

    /// Connects (or waits for the peer): the link to send on and the frame source.
    pub fn open(&self) -> Result<(Box<dyn Link>, FrameSource), String> {
        use std::os::unix::net::{UnixListener, UnixStream};
        fn halves<S: Read + Write + Send + 'static>(w: S, r: S) -> (Box<dyn Link>, FrameSource) {
            let mut r = std::io::BufReader::new(r);
            (Box::new(Stream(w)), Box::new(move || read_frame(&mut r)))
        }
        let e = |x: std::io::Error| format!("-n {}: {x}", self.addr);
        Ok(match (&self.addr, self.listen) {
            (Addr::Unix(p), false) => {
                let s = UnixStream::connect(p).map_err(e)?;
                halves(s.try_clone().map_err(e)?, s)
            }
            (Addr::Unix(p), true) => {
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p).map_err(e)?;
                let (s, _) = l.accept().map_err(e)?;
                halves(s.try_clone().map_err(e)?, s)
            }
            (Addr::Tcp(h, port), false) => {
                let s = std::net::TcpStream::connect((h.as_str(), *port)).map_err(e)?;
                let _ = s.set_nodelay(true);
                halves(s.try_clone().map_err(e)?, s)
            }
            (Addr::Tcp(h, port), true) => {
                let l = std::net::TcpListener::bind((h.as_str(), *port)).map_err(e)?;
                let (s, _) = l.accept().map_err(e)?;
                let _ = s.set_nodelay(true);
                halves(s.try_clone().map_err(e)?, s)
            }
            (Addr::Tap(n), _) => Tap::open(n)?,
            (Addr::Switch, _) => {
                return Err("-n switch: the hypervisor's card has no link here".into())
            }
        })
    }
}

/// A card's port as the tool serves it: the link, and the frames from it not yet taken
/// by the guest.
struct LinkPort {
    link: Box<dyn Link>,
    backlog: VecDeque<Vec<u8>>,
}

impl FramePort for LinkPort {
    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.link.send(frame).map_err(|e| e.to_string())
    }
    fn next(&mut self) -> Option<Vec<u8>> {
        self.backlog.pop_front()
    }
}

pub struct Net {
    pub dev: device::Net,
    port: LinkPort,
    /// Frames from the link dropped before the guest could take them (backlog full or
    /// too long); the model counts the rest.
    pub dropped: u64,
}

impl Net {
    pub fn new(mac: [u8; 6], link: Box<dyn Link>) -> Net {
        Net {
            dev: device::Net::new(mac),
            port: LinkPort {
                link,
                backlog: VecDeque::new(),
            },
            dropped: 0,
        }
    }

    pub fn features(&self) -> u32 {
        self.dev.features()
    }

    pub fn config(&self) -> Vec<u8> {
        self.dev.config()
    }

    pub fn config_write(&mut self, off: u16, size: u8, v: u32) {
        self.dev.config_write(off, size, v);
    }

    pub fn reset(&mut self) {
        self.dev.reset();
        self.port.backlog.clear();
    }

    /// A frame from the link; the caller then serves the receive queue.
    pub fn receive(&mut self, frame: Vec<u8>) {
        if self.port.backlog.len() >= BACKLOG || frame.len() > MAX_FRAME {
            self.dropped += 1;
            return;
        }
        self.port.backlog.push_back(frame);
    }

    /// The receive queue's index, for the exit loop.
    pub const RX_QUEUE: u16 = device::RX;

    pub(super) fn serve(
        &mut self,
        qi: u16,
        q: &mut Queue,
        mem: &mut dyn Mem,
        limit: u64,
        done: &mut Vec<(u16, u32)>,
    ) -> Result<(), String> {
        self.dev.serve(qi, q, mem, limit, &mut self.port, done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Device, Kind};
    use super::*;
    use crate::virtio::testing::{Driver, Ram};
    use std::sync::{Arc, Mutex};

    /// What the device wrote to its link.
    #[derive(Clone, Default)]
    struct Wire(Arc<Mutex<Vec<u8>>>);

    impl Write for Wire {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_both_ways() {
        let wire = Wire::default();
        let net = Net::new([2, 0, 0, 0, 0, 1], Box::new(Stream(wire.clone())));
        let mut d = Device::new(Kind::Net(net), 11);
        let mut ram = Ram::new(1 << 20);
        let lim = 1 << 20;
        assert_eq!(d.read(0x14, 4), 0x0000_0002);
        assert_eq!(d.read(0x18, 2), 0x0100);
        // Queues: rx at pfn 16, tx at pfn 32.
        d.write(0x0e, 2, 0, &mut ram, lim);
        d.write(0x08, 4, 16, &mut ram, lim);
        d.write(0x0e, 2, 1, &mut ram, lim);
        d.write(0x08, 4, 32, &mut ram, lim);
        let mut rx = Driver::new(super::super::QUEUE_SIZE, 16);
        let mut tx = Driver::new(super::super::QUEUE_SIZE, 32);
        // Transmit one frame: header then data.
        ram.b[0x1000 + HDR..0x1000 + HDR + 60].fill(0x5a);
        tx.offer(&mut ram, &[(0x1000, (HDR + 60) as u32, false)]);
        d.write(0x10, 2, 1, &mut ram, lim);
        let w = wire.0.lock().unwrap().clone();
        assert_eq!(w[..4], 60u32.to_be_bytes());
        assert_eq!(w[4..], [0x5a; 60]);
        assert_eq!(tx.used_idx(&ram), 1);
        // A frame arrives before any receive buffer: it waits.
        if let Kind::Net(n) = &mut d.kind {
            n.receive(vec![0xa5; 42]);
        }
        d.notify(0, &mut ram, lim);
        assert_eq!(rx.used_idx(&ram), 0);
        // A buffer is posted: the frame lands in it, after a zero header.
        ram.b[0x4000..0x4000 + HDR].fill(0xff);
        rx.offer(&mut ram, &[(0x4000, 1526, true)]);
        d.read(0x13, 1);
        d.write(0x10, 2, 0, &mut ram, lim);
        assert_eq!(rx.used_idx(&ram), 1);
        assert_eq!(rx.used_entry(&ram, 0), (0, (HDR + 42) as u32));
        assert_eq!(ram.b[0x4000..0x4000 + HDR], [0; HDR]);
        assert_eq!(ram.b[0x4000 + HDR..0x4000 + HDR + 42], [0xa5; 42]);
        assert!(d.line());
    }

    #[test]
    fn specs() {
        assert_eq!(
            Spec::parse("unix!/tmp/n.sock").unwrap(),
            Spec {
                mac: None,
                listen: false,
                addr: Addr::Unix("/tmp/n.sock".into())
            }
        );
        assert_eq!(
            Spec::parse("mac=52:54:00:12:34:56,listen!tcp!127.0.0.1!5555").unwrap(),
            Spec {
                mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                listen: true,
                addr: Addr::Tcp("127.0.0.1".into(), 5555)
            }
        );
        for bad in [
            "",
            "unix!",
            "tcp!h",
            "tcp!h!x",
            "mac=1:2,unix!/a",
            "mac=52:54:00:12:34:56",
            "tap!",
            "listen!tap!tap0",
            "tap!sixteen-bytes-xx",
            "tap!a/b",
            "tap!a:1",
            "tap!tap%d",
            "tap!..",
            "tap!a b",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_mac("02:00:00:00:00:0g"), None);
        assert_eq!(
            Spec::parse("mac=02:00:00:00:00:01,switch").unwrap(),
            Spec {
                mac: Some([2, 0, 0, 0, 0, 1]),
                listen: false,
                addr: Addr::Switch
            }
        );
        assert!(Spec::parse("listen!switch").is_err());
        let tap = Spec::parse("mac=02:00:00:00:00:01,tap!fifteen-bytes-x").unwrap();
        assert_eq!(tap.addr, Addr::Tap("fifteen-bytes-x".into()));
        assert_eq!(tap.addr.to_string(), "tap!fifteen-bytes-x");
        assert!(!tap.listen);
    }

    #[test]
    fn tap_errors_say_what_to_do() {
        let e = |n| tap_error("tap9", true, &std::io::Error::from_raw_os_error(n));
        assert!(e(1).starts_with("-n tap!tap9: not permitted: "), "{}", e(1));
        assert!(e(1).contains("CAP_NET_ADMIN"));
        let absent = tap_error("tap9", false, &std::io::Error::from_raw_os_error(1));
        assert!(
            absent.starts_with("-n tap!tap9: no such device, "),
            "{absent}"
        );
        assert!(
            absent.contains("ip tuntap add tap9 mode tap user YOU"),
            "{absent}"
        );
        assert!(e(2).contains("/dev/net/tun"));
        assert!(e(16).contains("busy"));
        assert!(e(22).contains("not a TAP device"));
        // Any other error still names the device and says what the system said.
        let other = std::io::Error::from_raw_os_error(5);
        assert_eq!(e(5), format!("-n tap!tap9: {other}"));
    }

    #[test]
    fn two_links_on_one_socket() {
        // One side listens (as `-n listen!unix!P`), the other connects (`-n unix!P`).
        let p = std::env::temp_dir().join(format!("vmx-link-{}.sock", std::process::id()));
        let listen = Spec::parse(&format!("listen!unix!{}", p.display())).unwrap();
        let server = std::thread::spawn(move || listen.open().unwrap());
        let connect = Spec::parse(&format!("unix!{}", p.display())).unwrap();
        let mut tries = 0;
        let (mut a_link, mut a_frames) = loop {
            match connect.open() {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 1000, "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        let (mut b_link, mut b_frames) = server.join().unwrap();
        a_link.send(&[1; 60]).unwrap();
        a_link.send(&[2; 1514]).unwrap();
        assert_eq!(b_frames().unwrap(), Some(vec![1; 60]));
        assert_eq!(b_frames().unwrap(), Some(vec![2; 1514]));
        b_link.send(&[3; 42]).unwrap();
        assert_eq!(a_frames().unwrap(), Some(vec![3; 42]));
        drop((b_link, b_frames));
        assert_eq!(a_frames().unwrap(), None);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn stream_framing() {
        let mut b: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1];
        assert_eq!(read_frame(&mut b).unwrap(), Some(vec![1, 2, 3]));
        assert!(read_frame(&mut b).is_err()); // cut short
        let mut b: &[u8] = &[];
        assert_eq!(read_frame(&mut b).unwrap(), None);
        let mut b: &[u8] = &[0xff, 0, 0, 0];
        assert!(read_frame(&mut b).is_err());
    }
}
