//! 9P over TCP/IP under QEMU: the kernel's own TCP stack on virtio-net and e1000, reached
//! through QEMU's user-mode network and a host forward bound to 127.0.0.1 on a free port.
//! QEMU has no VT-x here, so these cover the network and the namespace; VMs over TCP are
//! tested under Bochs (net_bochs.rs).

use ninep_client::{om, Client};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};
use vmm_tests::emu::{self, Machine, Nic, Opts};
use vmm_tests::status::{num, read as status, text as field};

const SECRET: &str = "opensesame";
const OWNER: &str = "eve";
const STRANGER: &str = "glenda";

fn boot(nic: Nic) -> Machine {
    boot_with(nic, "")
}

/// Boots with `extra` words on the command line.
fn boot_with(nic: Nic, extra: &str) -> Machine {
    Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=uart,virtio,net {extra}"),
        virtio_ports: 1,
        nic: Some(nic),
        ..Opts::default()
    })
}

/// Polls `status` on a fresh connection until `sessions` reads `want` (closing
/// connections are noticed on the kernel's next pass).
fn await_sessions(m: &Machine, want: u64) -> String {
    let start = Instant::now();
    loop {
        let c = m.tcp_client(STRANGER, "");
        let st = status(&c);
        // This client is one of them.
        if num(&st, "sessions") == want + 1 {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sessions stay at {}: {st}\n{}",
            num(&st, "sessions"),
            m.diagnostics()
        );
        drop(c);
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PY9P: &str = r#"
import sys
import py9p.client as client
host, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = client.Client.connect_tcp(host, port, msize=8192)
c.transport.settimeout(60)
v = c.negotiate()
assert v.version == "9P2000", v
root = c.attach(0, uname="glenda", aname="")
assert root.type & 0x80, root
c.walk(0, 1, "status")
c.open(1)
text = c.read(1, 4000).decode()
assert "net tcp!10.0.2.15!564" in text, text
c.clunk(1)
c.walk(0, 2, "vmx/clone")
try:
    c.open(2, 2)
    raise SystemExit("glenda opened vmx/clone")
except client.RemoteError as e:
    assert "permission denied" in str(e), e
try:
    c.attach(3, uname="eve", aname="vmx")
    raise SystemExit("eve attached without the secret")
except client.RemoteError as e:
    assert "secret" in str(e), e
q = c.attach(4, uname="eve", aname="vmx!" + secret)
assert q.type & 0x80, q
c.walk(4, 5, "clone")
try:
    c.open(5, 2)
except client.RemoteError as e:
    # QEMU has no VT-x: the owner passes the permission check and the device says why.
    assert "permission denied" not in str(e), e
print("python-9p ok")
"#;

const P9FS: &str = r#"
import sys
from p9fs import P9FileSystem
host, port = sys.argv[1], int(sys.argv[2])
fs = P9FileSystem(host=host, port=port, username="glenda", version="9P2000",
                  skip_instance_cache=True)
names = sorted(i["name"].strip("/").split("/")[-1] for i in fs.ls(""))
assert names == ["segment", "status", "vmx"], names
assert "clone" in [n.split("/")[-1] for n in fs.ls("vmx", detail=False)]
assert fs.info("status")["type"] == "file"
# status reads length 0 (its text is made at read time): fsspec's cat_file trusts the
# length, so read through p9fs's own protocol client.
c = fs.client
c._walk(c.ROOT, 100, ["status"])
c._open(100, 0)
text = c._read(100, 0, 4000).data.decode()
c._clunk(100)
assert "memfree" in text and "net tcp!" in text, text
print("p9fs ok")
"#;

/// python-9p, p9fs and our client over TCP.
fn clients(m: &Machine) {
    let port = m.tcp_port().to_string();
    let out = emu::python(PY9P, &["127.0.0.1", &port, SECRET]);
    assert!(out.contains("python-9p ok"), "{out}");
    let out = emu::python(P9FS, &["127.0.0.1", &port]);
    assert!(out.contains("p9fs ok"), "{out}");
    let c = Client::dial(&m.tcp_dial(), STRANGER, "").expect("dial tcp!127.0.0.1!PORT");
    let st = status(&c);
    assert_eq!(field(&st, "net"), "tcp!10.0.2.15!564", "{st}");
    assert!(c.ls("vmx").unwrap().iter().any(|d| d.name == "clone"));
    // Bulk data crosses many TCP segments in order: a segment written and read back.
    let o = m.tcp_client(OWNER, &format!("!{SECRET}"));
    drop(vmm_tests::segment::bulk_round_trip(&o, "bulk"));
    o.remove("segment/bulk").expect("remove the segment");
}

#[test]
fn clients_over_virtio_net() {
    let m = boot(Nic::VirtioNet);
    // QEMU's virtio-net-pci offers MSI-X, on the PC (i440fx) too.
    let line = m.nic_line("virtio-net");
    assert!(line.contains(", msi-x vector 50 (entry 0 of "), "{line}");
    clients(&m);
    assert!(m.got_device_message(), "{}", m.log());
}

#[test]
fn clients_over_e1000() {
    let m = boot(Nic::E1000);
    // The 82540EM has no MSI: its INTx line, as the firmware routed it.
    let line = m.nic_line("e1000");
    assert!(line.contains(", intx irq "), "{line}");
    clients(&m);
}

/// With `switch`, the NIC is the switch's uplink (e1000 in promiscuous mode) and the
/// kernel's interface a port: the clients work as before, and `status` shows the ports
/// and their counters.
#[test]
fn clients_through_the_switch() {
    for nic in [Nic::E1000, Nic::VirtioNet] {
        let m = boot_with(nic, "switch");
        clients(&m);
        let c = Client::dial(&m.tcp_dial(), STRANGER, "").expect("dial");
        let st = status(&c);
        let line = |p: &str| {
            st.lines()
                .find(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("no {p:?} line in {st}"))
                .split(' ')
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let up = line("switch port 0 uplink - in ");
        let host = line("switch port 1 host ");
        // Words: switch port N KIND MAC in N out N full N spoof N bad N queued N.
        let n = |w: &[String], i: usize| w[i].parse::<u64>().unwrap();
        assert!(n(&up, 6) > 100, "frames from the wire: {st}");
        assert!(n(&host, 8) > 100, "frames for the interface: {st}");
        assert!(n(&host, 6) > 100, "frames from the interface: {st}");
        assert_eq!(
            n(&host, 12),
            0,
            "the interface sends from its own address: {st}"
        );
        assert!(st.contains("\nswitch table "), "{st}");
        a_client_port_reaches_the_lan(&m);
    }
}

/// A client's port on the switch (`switch/clone`) is on the LAN: an ARP request for
/// slirp's gateway written to it gets slirp's reply back through it.
fn a_client_port_reaches_the_lan(m: &Machine) {
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
    let o = m.tcp_client(OWNER, &format!("!{SECRET}"));
    let port = o.open("switch/clone", om::RDWR).expect("open switch/clone");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC);
    arp.extend_from_slice(&[10, 0, 2, 99, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2]);
    let mut w = format!("frame {}\n", arp.len()).into_bytes();
    w.extend_from_slice(&arp);
    port.write_at(0, &w).expect("write the ARP request");
    // Frames until slirp's reply: each read only once (on another connection) a frame
    // is queued for the port, so that no read blocks forever if none ever comes.
    let c = m.tcp_client(STRANGER, "");
    let start = Instant::now();
    let is_reply = |f: &[u8]| {
        f.len() >= 42
            && f[..6] == MAC
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 2]
            && f[28..32] == [10, 0, 2, 2]
    };
    let mut seen = Vec::new();
    loop {
        let st = status(&c);
        let queued = st
            .lines()
            .find(|l| l.starts_with("switch ") && l.contains(" client - "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no ARP reply from slirp: {st}\nframes: {seen:02x?}"
        );
        if queued.unwrap_or(0) == 0 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        // Whole frames, each "frame N\n" and N bytes.
        let got = port.read_at(0, 8192).expect("read the port");
        let mut b = &got[..];
        while !b.is_empty() {
            let nl = b.iter().position(|&x| x == b'\n').expect("a header line");
            let head = std::str::from_utf8(&b[..nl]).expect("a text header");
            let n: usize = head.strip_prefix("frame ").unwrap().parse().unwrap();
            seen.push(b[nl + 1..nl + 1 + n].to_vec());
            b = &b[nl + 1 + n..];
        }
        if seen.iter().any(|f| is_reply(f)) {
            return;
        }
    }
}

/// The owner over the network only with the secret, in the attach name; serial believes.
#[test]
fn the_secret_over_tcp_and_not_on_serial() {
    let m = boot(Nic::VirtioNet);
    for aname in [
        "",
        "vmx",
        "!",
        "!wrong",
        "vmx!wrong",
        "vmx!opensesam",
        "!opensesame2",
    ] {
        let e = m
            .try_tcp_client(OWNER, aname)
            .err()
            .unwrap_or_else(|| panic!("eve attached with aname {aname:?}"));
        assert!(
            e.contains("owner must present the secret"),
            "{aname:?}: {e}"
        );
    }
    for aname in [
        format!("!{SECRET}"),
        format!("vmx!{SECRET}"),
        format!("segment!{SECRET}"),
    ] {
        let c = m.tcp_client(OWNER, &aname);
        assert!(c.root_qid().is_dir());
    }
    let c = m.tcp_client(OWNER, &format!("!{SECRET}"));
    // The owner passes the permission check on clone (no VT-x under QEMU: the device
    // refuses with its own reason).
    if let Err(e) = c.open("vmx/clone", om::RDWR) {
        assert_ne!(e.remote(), Some("permission denied"), "{e}");
    }
    let s = m.tcp_client(STRANGER, &format!("!{SECRET}"));
    let e = s
        .open("vmx/clone", om::RDWR)
        .err()
        .expect("a stranger opened clone");
    assert_eq!(e.remote(), Some("permission denied"), "{e}");
    // COM1 and virtio links: a cable to the machine, today's rule.
    let c = m.client_on(&m.uart_path(), OWNER, "");
    if let Err(e) = c.open("vmx/clone", om::RDWR) {
        assert_ne!(e.remote(), Some("permission denied"), "{e}");
    }
    drop(c);
    let c = m.client_on(&m.virtio_path(0), OWNER, "vmx");
    assert!(c.root_qid().is_dir());
    assert!(
        !m.log().contains(SECRET),
        "the secret reached the log:\n{}",
        m.log()
    );
}

#[test]
fn thirty_two_connections_at_once_over_virtio_net() {
    thirty_two_connections_at_once(Nic::VirtioNet);
}

#[test]
fn thirty_two_connections_at_once_over_e1000() {
    thirty_two_connections_at_once(Nic::E1000);
}

/// 32 connections at once, each a session with fids of its own.
fn thirty_two_connections_at_once(nic: Nic) {
    let m = boot(nic);
    let before = await_sessions(&m, 0);
    let clients: Vec<Client> = (0..32).map(|_| m.tcp_client(STRANGER, "")).collect();
    // Each holds an open fid: the same fid numbers mean different files per session.
    let files: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = if i % 2 == 0 { "status" } else { "vmx" };
            (i, c.open(path, om::READ).expect("open"))
        })
        .collect();
    std::thread::scope(|s| {
        for (i, f) in &files {
            s.spawn(move || {
                for _ in 0..5 {
                    let data = f.read_at(0, 4096).expect("read");
                    if i % 2 == 0 {
                        assert!(String::from_utf8_lossy(&data).contains("memfree"));
                    } else {
                        assert!(!data.is_empty(), "vmx/ lists clone");
                    }
                }
            });
        }
    });
    let st = status(&clients[0]);
    assert_eq!(num(&st, "sessions"), 32, "{st}");
    drop(files);
    drop(clients);
    let after = await_sessions(&m, 0);
    assert_eq!(num(&after, "memfree"), num(&before, "memfree"));
}

/// 1,000 connect/version/attach/walk/clunk/close cycles: nothing accumulates.
#[test]
fn reconnect_storm_leaks_nothing() {
    let m = boot(Nic::VirtioNet);
    let before = await_sessions(&m, 0);
    for i in 0..1000 {
        let c = m
            .try_tcp_client(STRANGER, "")
            .unwrap_or_else(|e| panic!("cycle {i}: {e}\n{}", m.diagnostics()));
        let f = c.walk("status").expect("walk");
        f.clunk().expect("clunk");
        drop(c);
    }
    let after = await_sessions(&m, 0);
    assert_eq!(num(&after, "memfree"), num(&before, "memfree"), "{after}");
    let log = m.log();
    assert!(
        log.matches(": closed (session").count() >= 1000,
        "closes not logged"
    );
}

/// A round trip on a good connection while a bad one does its worst.
fn still_serves(m: &Machine, good: &Client) {
    let st = status(good);
    assert!(st.contains("memfree"), "{st}");
    let _ = m;
}

/// Reads until the kernel ends the connection: EOF or a reset, within the timeout.
fn hung_up(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn hostile_connections_cost_only_themselves() {
    let m = boot(Nic::VirtioNet);
    let good = m.tcp_client(STRANGER, "");
    let before = status(&good);

    // Garbage: "GET " read as a size far above msize ends that connection at once.
    let mut g = m.tcp_raw();
    g.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(hung_up(&mut g), "garbage did not end its connection");
    still_serves(&m, &good);

    // A frame claiming 4 GiB.
    let mut big = m.tcp_raw();
    big.write_all(&[0xff, 0xff, 0xff, 0xff, 118, 1, 0]).unwrap();
    assert!(
        hung_up(&mut big),
        "a 4 GiB frame did not end its connection"
    );
    still_serves(&m, &good);

    // A frame smaller than a header.
    let mut tiny = m.tcp_raw();
    tiny.write_all(&[3, 0, 0, 0, 100, 0xff, 0xff]).unwrap();
    assert!(
        hung_up(&mut tiny),
        "a 3-byte frame did not end its connection"
    );

    // Half a frame, then a hang-up: the session is dropped, fids and all.
    let c = m.tcp_client(STRANGER, "");
    let f = c.open("status", om::READ).unwrap();
    let mut half = m.tcp_raw();
    half.write_all(&emu::tversion(8192)[..9]).unwrap();
    half.shutdown(Shutdown::Both).unwrap();
    drop(f);
    drop(c);
    still_serves(&m, &good);

    // A client reset (RST, not FIN) with a fid open: its session goes too (the sessions
    // count at the end comes back to 0).
    let r = m.tcp_raw();
    let rc = Client::over(r.try_clone().unwrap(), STRANGER, "").expect("attach");
    let f = rc.open("status", om::READ).unwrap();
    socket2::SockRef::from(&r)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    r.shutdown(Shutdown::Read).ok();
    drop(r);
    drop(f);
    drop(rc);
    still_serves(&m, &good);

    // Slowloris: a Tversion one byte at a time, 400 ms apart; the good client's round
    // trips stay quick meanwhile, and the slow one is answered in the end.
    let mut slow = m.tcp_raw();
    let tv = emu::tversion(8192);
    let mut worst = Duration::ZERO;
    for b in &tv {
        slow.write_all(std::slice::from_ref(b)).unwrap();
        let t = Instant::now();
        still_serves(&m, &good);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        worst < Duration::from_secs(10),
        "a slow client held up another for {worst:?}"
    );
    let mut h = [0u8; 7];
    slow.read_exact(&mut h).expect("the slow client's Rversion");
    assert_eq!(h[4], 101, "Rversion");
    drop(slow);

    drop(good);
    let after = await_sessions(&m, 0);
    assert_eq!(num(&after, "memfree"), num(&before, "memfree"), "{after}");
    let log = m.log();
    assert!(
        log.matches("a frame that can never be valid; hanging up")
            .count()
            >= 3,
        "{log}"
    );
}

/// A connection whose client stops reading fills its send window and then its session's
/// output: that stalls it alone. Another connection is served meanwhile, and the stalled
/// one carries on, in order, once its client reads again.
#[test]
fn a_full_send_window_stalls_only_its_connection() {
    use protocol::Fcall;
    let m = boot(Nic::VirtioNet);
    let mut slow = m.tcp_raw();
    slow.write_all(&emu::tversion(8192)).unwrap();
    let mut h = [0u8; 19];
    slow.read_exact(&mut h).expect("Rversion");
    let frame = |tag: u16, f: &Fcall<'_>| {
        let mut b = vec![0u8; 256];
        let n = f.encode(tag, &mut b).unwrap();
        b.truncate(n);
        b
    };
    let attach = Fcall::Tattach {
        fid: 1,
        afid: protocol::NOFID,
        uname: STRANGER,
        aname: "",
    };
    slow.write_all(&frame(1, &attach)).unwrap();
    let mut size = [0u8; 4];
    slow.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(size) as usize - 4];
    slow.read_exact(&mut body).unwrap();
    assert_eq!(body[0], 105, "Rattach");
    // 20,000 Tstats whose 1.4 MB of replies nobody reads for now: more than the kernel's
    // session output, socket buffer, slirp and the host's receive window hold.
    const N: u32 = 20_000;
    let tag = |i: u32| (i % 0xFFFF) as u16;
    let mut burst = Vec::new();
    for i in 0..N {
        burst.extend(frame(tag(i), &Fcall::Tstat { fid: 1 }));
    }
    let mut writer = slow.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&burst));
    std::thread::sleep(Duration::from_secs(2));
    let other = m.tcp_client(STRANGER, "");
    for _ in 0..20 {
        let t = Instant::now();
        assert!(status(&other).contains("memfree"));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "held up {:?}",
            t.elapsed()
        );
    }
    drop(other);
    for i in 0..N {
        slow.read_exact(&mut size).expect("a reply's size");
        let n = u32::from_le_bytes(size) as usize;
        let mut f = size.to_vec();
        f.resize(n, 0);
        slow.read_exact(&mut f[4..]).expect("a reply");
        let (t, r) = Fcall::decode(&f, 8192).unwrap();
        assert_eq!(t, tag(i));
        assert!(matches!(r, Fcall::Rstat { .. }), "reply {i}: {r:?}");
    }
    w.join().unwrap().unwrap();
}

/// A static address and another port from the command line; status shows them.
#[test]
fn static_address_and_port() {
    let m = Machine::qemu(Opts {
        cmdline: "owner=eve serve=net ip=10.0.2.77/24 gw=10.0.2.2 port=5640".into(),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        guest_fwd: ("10.0.2.77", 5640),
        ..Opts::default()
    });
    let c = m.tcp_client(STRANGER, "");
    let st = status(&c);
    assert_eq!(field(&st, "net"), "tcp!10.0.2.77!5640", "{st}");
    assert!(
        m.log().contains("10.0.2.77/24 (command line)"),
        "{}",
        m.log()
    );
}

/// A client that half-closes (sends its requests, then FIN, and reads on) gets a reply to
/// every request before the kernel closes its side: here 2,000 Tstats, whose replies are
/// more than the connection's send buffer holds at once.
#[test]
fn a_half_closed_client_gets_every_reply() {
    use protocol::Fcall;
    let m = boot(Nic::VirtioNet);
    let mut s = m.tcp_raw();
    let frame = |tag: u16, f: &Fcall<'_>| {
        let mut b = vec![0u8; 256];
        let n = f.encode(tag, &mut b).unwrap();
        b.truncate(n);
        b
    };
    const N: u16 = 2_000;
    let mut burst = emu::tversion(8192);
    burst.extend(frame(
        N,
        &Fcall::Tattach {
            fid: 1,
            afid: protocol::NOFID,
            uname: STRANGER,
            aname: "",
        },
    ));
    for tag in 0..N {
        burst.extend(frame(tag, &Fcall::Tstat { fid: 1 }));
    }
    s.write_all(&burst).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("replies, then the kernel's FIN");
    let mut rest = &got[..];
    let mut stats = 0;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(
            n >= 7 && n <= rest.len(),
            "a cut reply after {stats} Rstats"
        );
        let (tag, r) = Fcall::decode(&rest[..n], 8192).unwrap();
        if let Fcall::Rstat { .. } = r {
            assert_eq!(tag, stats, "replies in order");
            stats += 1;
        }
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "{} stray bytes", rest.len());
    assert_eq!(stats, N, "Rstats before the FIN\n{}", m.diagnostics());
    await_sessions(&m, 0);
}
