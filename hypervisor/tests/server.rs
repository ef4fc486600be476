//! The main loop (hypervisor/src/server.rs) on the host: links and a listener made of byte
//! queues the test shares, serving the #X namespace over the TestHw double. The test is
//! the client at the far end of each link, speaking 9P frames as a transport carries them.

use devvmx::testhw::TestHw;
use devvmx::{Config, Namespace};
use hypervisor::server::{Server, BULK_LINKS, SMALL_MSIZE};
use hypervisor::transport::{Event, Kind, Link, Listener};
use ninep::testing::R;
use protocol::{om, Fcall, Wnames, NOFID, NOTAG};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;

/// Both ends of a link: what the client sent (the kernel receives) and what the kernel
/// sent, plus the next peer event.
#[derive(Default)]
struct Wire {
    to_kernel: VecDeque<u8>,
    from_kernel: Vec<u8>,
    event: Option<Event>,
    /// At most this many bytes taken per `send` (a full TCP send buffer), if set.
    send_cap: Option<usize>,
}

struct TestLink {
    wire: Rc<RefCell<Wire>>,
    name: &'static str,
    kind: Kind,
    network: bool,
    peer: Option<IpAddr>,
}

impl Link for TestLink {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let mut w = self.wire.borrow_mut();
        let n = buf.len().min(w.to_kernel.len());
        for (b, x) in buf.iter_mut().zip(w.to_kernel.drain(..n)) {
            *b = x;
        }
        n
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let mut w = self.wire.borrow_mut();
        let n = data.len().min(w.send_cap.unwrap_or(usize::MAX));
        w.from_kernel.extend_from_slice(&data[..n]);
        n
    }
    fn event(&mut self) -> Option<Event> {
        self.wire.borrow_mut().event.take()
    }
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn network(&self) -> bool {
        self.network
    }
    fn peer(&self) -> Option<IpAddr> {
        self.peer
    }
}

/// A TCP listener stand-in: hands out the links queued in it.
struct TestListener {
    pending: Rc<RefCell<Vec<TestLink>>>,
}

impl Listener for TestListener {
    fn poll(&mut self) -> bool {
        false
    }
    fn accept(&mut self) -> Option<Box<dyn Link>> {
        let l = self.pending.borrow_mut().pop()?;
        Some(Box::new(l))
    }
    fn address(&self) -> Option<String> {
        Some("tcp!10.0.2.15!564".into())
    }
}

type Srv = Server<TestHw>;

thread_local! {
    /// The server's throttle clock (ms), and how far it moves at each reading (once a
    /// step): 50 ms unless a test stops it.
    static CLOCK: Cell<(u64, u64)> = const { Cell::new((0, 50)) };
}

fn clock() -> u64 {
    CLOCK.with(|c| {
        let (now, step) = c.get();
        c.set((now + step, step));
        now
    })
}

/// Stops the clock at `ms`.
fn set_clock(ms: u64) {
    CLOCK.with(|c| c.set((ms, 0)));
}

/// A server whose owner is eve, and whose secret is `secret` if given.
fn server_with(echo: &[&str], secret: Option<&str>) -> Srv {
    let mut ns = Namespace::new(
        TestHw::new(4096),
        Config {
            owner: "eve".into(),
            version: "test",
        },
    );
    let mut facts = ns.facts().clone();
    facts.owners.set_secret(secret.map(String::from));
    ns.set_facts(facts);
    let mut s = Server::new(ns, echo.iter().map(|s| s.to_string()).collect());
    s.set_clock(clock);
    s
}

fn server(echo: &[&str]) -> Srv {
    server_with(echo, None)
}

fn link(name: &'static str, kind: Kind, network: bool) -> (TestLink, Rc<RefCell<Wire>>) {
    let wire = Rc::new(RefCell::new(Wire::default()));
    // The address a `tcp!ADDR!PORT` name gives.
    let peer = name
        .strip_prefix("tcp!")
        .and_then(|r| r.split('!').next())
        .and_then(|a| a.parse().ok());
    let l = TestLink {
        wire: wire.clone(),
        name,
        kind,
        network,
        peer,
    };
    (l, wire)
}

/// Sends one request down the wire and steps the server until its reply comes back.
fn rpc(s: &mut Srv, wire: &Rc<RefCell<Wire>>, tag: u16, f: Fcall<'_>) -> R {
    let mut buf = vec![0u8; 8192];
    let n = f.encode(tag, &mut buf).unwrap();
    wire.borrow_mut().to_kernel.extend(&buf[..n]);
    for _ in 0..10 {
        s.step();
        let mut w = wire.borrow_mut();
        if let Some(size) = protocol::frame_size(&w.from_kernel) {
            let frame: Vec<u8> = w.from_kernel.drain(..size as usize).collect();
            let (t, reply) = Fcall::decode(&frame, 1 << 20).unwrap();
            assert_eq!(t, tag);
            return R::from(reply);
        }
    }
    panic!("no reply to tag {tag}");
}

/// Tversion and Tattach of `uname` on fid 0.
fn attach(s: &mut Srv, wire: &Rc<RefCell<Wire>>, uname: &str) -> R {
    version(s, wire);
    let attach = Fcall::Tattach {
        fid: 0,
        afid: NOFID,
        uname,
        aname: "",
    };
    rpc(s, wire, 1, attach)
}

fn version(s: &mut Srv, wire: &Rc<RefCell<Wire>>) {
    let v = rpc(
        s,
        wire,
        NOTAG,
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
    );
    assert_eq!(v, R::Version(8192, "9P2000".into()));
}

/// The root `status` file, read through fid 1.
fn status(s: &mut Srv, wire: &Rc<RefCell<Wire>>) -> String {
    let walk = Fcall::Twalk {
        fid: 0,
        newfid: 1,
        wnames: Wnames::new(&["status"]).unwrap(),
    };
    assert!(matches!(rpc(s, wire, 2, walk), R::Qids(q) if q.len() == 1));
    assert!(matches!(
        rpc(
            s,
            wire,
            3,
            Fcall::Topen {
                fid: 1,
                mode: om::READ
            }
        ),
        R::Open(_)
    ));
    let read = Fcall::Tread {
        fid: 1,
        offset: 0,
        count: 4096,
    };
    let R::Data(d) = rpc(s, wire, 4, read) else {
        panic!("status unread");
    };
    assert_eq!(rpc(s, wire, 5, Fcall::Tclunk { fid: 1 }), R::Ok);
    String::from_utf8(d).unwrap()
}

#[test]
fn links_and_accepted_connections_each_serve_a_session() {
    let mut s = server(&[]);
    let (uart, uart_wire) = link("uart", Kind::Line, false);
    s.add(Box::new(uart));
    let accepted = Rc::new(RefCell::new(Vec::new()));
    s.add_listener(Box::new(TestListener {
        pending: accepted.clone(),
    }));
    assert!(matches!(attach(&mut s, &uart_wire, "eve"), R::Open(_)));
    let st = status(&mut s, &uart_wire);
    assert!(st.contains("\nsessions 1\n"), "{st}");
    assert!(st.contains("\nnet tcp!10.0.2.15!564\n"), "{st}");

    // A network link: the owner's uname alone is not believed there.
    let (tcp, tcp_wire) = link("tcp!10.0.2.2!40000", Kind::Stream, true);
    accepted.borrow_mut().push(tcp);
    assert_eq!(
        attach(&mut s, &tcp_wire, "eve"),
        R::Error(devvmx::owner::ENOSECRET.into())
    );
    assert!(matches!(attach(&mut s, &tcp_wire, "glenda"), R::Open(_)));
    let st = status(&mut s, &uart_wire);
    assert!(st.contains("\nsessions 2\n"), "{st}");
}

#[test]
fn a_closed_link_is_dropped_and_a_broken_stream_hung_up() {
    let mut s = server(&[]);
    let (uart, uart_wire) = link("uart", Kind::Line, false);
    let (tcp, tcp_wire) = link("tcp!10.0.2.2!40000", Kind::Stream, true);
    let (tcp2, tcp2_wire) = link("tcp!10.0.2.2!40001", Kind::Stream, true);
    s.add(Box::new(uart));
    s.add(Box::new(tcp));
    s.add(Box::new(tcp2));
    for w in [&uart_wire, &tcp_wire, &tcp2_wire] {
        assert!(matches!(attach(&mut s, w, "glenda"), R::Open(_)));
    }
    tcp_wire.borrow_mut().event = Some(Event::Closed);
    // A frame shorter than its header can never be valid on a stream.
    tcp2_wire.borrow_mut().to_kernel.extend([3, 0, 0, 0]);
    let st = status(&mut s, &uart_wire);
    assert!(st.contains("\nsessions 1\n"), "{st}");
    // Neither link is read again.
    for w in [&tcp_wire, &tcp2_wire] {
        assert!(w.borrow().to_kernel.is_empty());
        w.borrow_mut().to_kernel.extend([1, 2, 3]);
    }
    s.step();
    for w in [&tcp_wire, &tcp2_wire] {
        assert_eq!(w.borrow().to_kernel.len(), 3);
    }
}

/// A peer that finished sending (a TCP FIN: it still reads) gets a reply to every request
/// it sent, however slowly its link takes them, before its session ends.
#[test]
fn a_finished_peer_gets_every_reply_before_its_link_is_dropped() {
    let mut s = server(&[]);
    let (tcp, wire) = link("tcp!10.0.2.2!40000", Kind::Stream, true);
    s.add(Box::new(tcp));
    assert!(matches!(attach(&mut s, &wire, "glenda"), R::Open(_)));
    const N: u16 = 300;
    let mut buf = [0u8; 64];
    for tag in 0..N {
        let n = Fcall::Tstat { fid: 0 }.encode(tag, &mut buf).unwrap();
        wire.borrow_mut().to_kernel.extend(&buf[..n]);
    }
    wire.borrow_mut().send_cap = Some(100);
    s.step();
    assert!(wire.borrow().to_kernel.is_empty(), "every request read");
    // Like TCP, the FIN is reported once every byte before it was read.
    wire.borrow_mut().event = Some(Event::Closed);
    let mut steps = 0;
    while Rc::strong_count(&wire) > 1 {
        s.step();
        steps += 1;
        assert!(steps < 10_000, "the finished link is never dropped");
    }
    let w = wire.borrow();
    let mut rest = &w.from_kernel[..];
    let mut stats = 0;
    while let Some(size) = protocol::frame_size(rest) {
        let (tag, r) = Fcall::decode(&rest[..size as usize], 1 << 20).unwrap();
        assert!(matches!(r, Fcall::Rstat { .. }), "{r:?}");
        assert_eq!(tag, stats);
        stats += 1;
        rest = &rest[size as usize..];
    }
    assert!(rest.is_empty(), "a cut reply");
    assert_eq!(stats, N);
}

#[test]
fn echo_links_send_back_what_they_receive() {
    let mut s = server(&["virtio:9p.1"]);
    let (l, wire) = link("virtio:9p.1", Kind::Line, false);
    s.add(Box::new(l));
    wire.borrow_mut().to_kernel.extend(b"not 9P at all");
    assert!(s.step());
    assert_eq!(wire.borrow().from_kernel, b"not 9P at all");
    assert!(!s.step(), "nothing moves once echoed");
}

/// Sends the owner's attach of `aname` on fid `fid` (tag 7), without waiting.
fn send_owner_attach(wire: &Rc<RefCell<Wire>>, fid: u32, aname: &str) {
    let mut buf = [0u8; 256];
    let f = Fcall::Tattach {
        fid,
        afid: NOFID,
        uname: "eve",
        aname,
    };
    let n = f.encode(7, &mut buf).unwrap();
    wire.borrow_mut().to_kernel.extend(&buf[..n]);
}

/// The reply on the wire, if one came.
fn reply(wire: &Rc<RefCell<Wire>>) -> Option<R> {
    let mut w = wire.borrow_mut();
    let size = protocol::frame_size(&w.from_kernel)? as usize;
    let frame: Vec<u8> = w.from_kernel.drain(..size).collect();
    Some(R::from(Fcall::decode(&frame, 1 << 20).unwrap().1))
}

/// Wrong secrets are answered after the throttle's delay (devvmx::throttle), on the
/// server's clock; the other connections are served meanwhile, a right secret from
/// another address at once, and from the guesser's connection once its last wrong guess
/// was answered.
#[test]
fn wrong_secrets_wait_and_nobody_else_does() {
    use devvmx::throttle::delay;
    let mut s = server_with(&[], Some("s3"));
    set_clock(1000);
    let (good, good_wire) = link("tcp!10.0.2.2!40000", Kind::Stream, true);
    let (guess, guess_wire) = link("tcp!10.0.2.2!40001", Kind::Stream, true);
    let (other, other_wire) = link("tcp!10.0.2.3!40000", Kind::Stream, true);
    for l in [good, guess, other] {
        s.add(Box::new(l));
    }
    assert!(matches!(attach(&mut s, &good_wire, "glenda"), R::Open(_)));
    version(&mut s, &guess_wire);
    version(&mut s, &other_wire);
    let enosecret = R::Error(devvmx::owner::ENOSECRET.into());
    let mut now = 1000;
    for n in 1..=4 {
        send_owner_attach(&guess_wire, 0, "vmx!guess");
        s.step();
        assert_eq!(reply(&guess_wire), None, "failure {n} answered at once");
        // The glenda client is served meanwhile.
        let st = status(&mut s, &good_wire);
        assert!(st.contains("sessions"), "{st}");
        set_clock(now + delay(n) - 1);
        s.step();
        assert_eq!(reply(&guess_wire), None, "failure {n} answered early");
        now += delay(n);
        set_clock(now);
        s.step();
        assert_eq!(reply(&guess_wire), Some(enosecret.clone()), "failure {n}");
    }
    // Another address: the right secret at once.
    send_owner_attach(&other_wire, 0, "!s3");
    s.step();
    assert!(matches!(reply(&other_wire), Some(R::Open(_))));
    // The guesser's own connection: the right secret, with its wrong ones answered.
    send_owner_attach(&guess_wire, 1, "!s3");
    s.step();
    assert!(matches!(reply(&guess_wire), Some(R::Open(_))));
}

/// The first [`BULK_LINKS`] links get the engine's largest msize, later ones
/// [`SMALL_MSIZE`] (their buffers must fit the heap), until a bulk link goes.
#[test]
fn only_the_first_links_get_the_bulk_msize() {
    const NAMES: [&str; 10] = [
        "tcp!10.0.2.2!1",
        "tcp!10.0.2.2!2",
        "tcp!10.0.2.2!3",
        "tcp!10.0.2.2!4",
        "tcp!10.0.2.2!5",
        "tcp!10.0.2.2!6",
        "tcp!10.0.2.2!7",
        "tcp!10.0.2.2!8",
        "tcp!10.0.2.2!9",
        "tcp!10.0.2.2!10",
    ];
    let bulk = protocol::BULK_IO + protocol::IOHDRSZ as u32;
    let mut s = server(&[]);
    // A new link's Tversion asking for 16 MiB: the msize it gets, and its wire.
    let msize = |s: &mut Srv, name| {
        let (l, w) = link(name, Kind::Stream, true);
        s.add(Box::new(l));
        let v = Fcall::Tversion {
            msize: 1 << 24,
            version: "9P2000",
        };
        (rpc(s, &w, NOTAG, v), w)
    };
    let mut wires = Vec::new();
    for name in &NAMES[..BULK_LINKS] {
        let (v, w) = msize(&mut s, name);
        assert_eq!(v, R::Version(bulk, "9P2000".into()));
        wires.push(w);
    }
    let (v, _small) = msize(&mut s, NAMES[8]);
    assert_eq!(v, R::Version(SMALL_MSIZE, "9P2000".into()));
    wires[0].borrow_mut().event = Some(Event::Closed);
    s.step();
    let (v, _) = msize(&mut s, NAMES[9]);
    assert_eq!(v, R::Version(bulk, "9P2000".into()));
}
