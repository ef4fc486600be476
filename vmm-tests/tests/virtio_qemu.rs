//! The virtio-console transport under QEMU: each `virtserialport` is an independent 9P
//! session, a port whose host socket closes and reopens starts a fresh session, and
//! bursts larger than the driver's buffers go through in order.

use protocol::{Fcall, Wnames, NOFID, NOTAG};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use vmm_tests::emu::{Machine, Opts};

const MSIZE: u32 = 8192;
const OWNER: &str = "eve";

/// QEMU with `ports` virtserialports (sockets `virtio0.sock`, ...), kernel loaded directly.
fn boot(ports: usize) -> Machine {
    Machine::qemu(Opts {
        cmdline: "owner=eve serve=virtio".into(),
        virtio_ports: ports,
        direct: true,
        ..Opts::default()
    })
}

/// A raw connection to virtio port `i`.
fn connect(m: &Machine, i: usize) -> UnixStream {
    m.raw(&m.virtio_path(i))
}

fn frame(tag: u16, f: &Fcall<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; MSIZE as usize];
    let n = f.encode(tag, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn read_frame(s: &mut UnixStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("reply size");
    let n = u32::from_le_bytes(size) as usize;
    assert!((7..=MSIZE as usize).contains(&n), "reply size {n}");
    let mut f = size.to_vec();
    f.resize(n, 0);
    s.read_exact(&mut f[4..]).expect("reply body");
    f
}

/// Sends one request and returns (tag, reply frame).
fn rpc(s: &mut UnixStream, tag: u16, f: &Fcall<'_>) -> (u16, Vec<u8>) {
    s.write_all(&frame(tag, f)).unwrap();
    let r = read_frame(s);
    let (t, _) = Fcall::decode(&r, MSIZE).expect("reply decodes");
    (t, r)
}

fn reply(frame: &[u8]) -> Fcall<'_> {
    Fcall::decode(frame, MSIZE).unwrap().1
}

fn version(s: &mut UnixStream) {
    let (tag, r) = rpc(
        s,
        NOTAG,
        &Fcall::Tversion {
            msize: MSIZE,
            version: "9P2000",
        },
    );
    assert_eq!(tag, NOTAG);
    assert_eq!(
        reply(&r),
        Fcall::Rversion {
            msize: MSIZE,
            version: "9P2000"
        }
    );
}

fn attach(s: &mut UnixStream, fid: u32) -> Result<(), String> {
    let (_, r) = rpc(
        s,
        1,
        &Fcall::Tattach {
            fid,
            afid: NOFID,
            uname: OWNER,
            aname: "",
        },
    );
    match reply(&r) {
        Fcall::Rattach { .. } => Ok(()),
        Fcall::Rerror { ename } => Err(ename.to_string()),
        other => panic!("Tattach answered {other:?}"),
    }
}

/// Clones `fid` to `newfid` with an empty walk: succeeds exactly when `fid` exists.
fn clone_fid(s: &mut UnixStream, fid: u32, newfid: u32) -> Result<(), String> {
    let wnames = Wnames::new(&[]).unwrap();
    let (_, r) = rpc(
        s,
        2,
        &Fcall::Twalk {
            fid,
            newfid,
            wnames,
        },
    );
    match reply(&r) {
        Fcall::Rwalk { .. } => Ok(()),
        Fcall::Rerror { ename } => Err(ename.to_string()),
        other => panic!("Twalk answered {other:?}"),
    }
}

#[test]
fn each_port_is_its_own_session() {
    let m = boot(2);
    let mut a = connect(&m, 0);
    let mut b = connect(&m, 1);
    version(&mut a);
    version(&mut b);
    attach(&mut a, 7).unwrap();
    // Port 1's session has no fid 7 and can take fid 7 itself.
    assert!(
        clone_fid(&mut b, 7, 8).is_err(),
        "fid 7 leaked from port 0 to port 1"
    );
    attach(&mut b, 7).unwrap();
    clone_fid(&mut a, 7, 8).unwrap();
    clone_fid(&mut b, 7, 8).unwrap();
    drop((a, b));

    // The project's client on both ports at once, reading the status file.
    let ca = m.client_on(&m.virtio_path(0), OWNER, "");
    let cb = m.client_on(&m.virtio_path(1), OWNER, "");
    let sa = ca.read_file("status").expect("status over port 0");
    let sb = cb.read_file("status").expect("status over port 1");
    assert!(!sa.is_empty() && !sb.is_empty());
    let names: Vec<String> = ca.ls("").unwrap().into_iter().map(|d| d.name).collect();
    assert!(names.iter().any(|n| n == "vmx"), "root holds {names:?}");
}

#[test]
fn reopened_port_starts_a_fresh_session() {
    let m = boot(1);
    let mut s = connect(&m, 0);
    version(&mut s);
    attach(&mut s, 7).unwrap();
    clone_fid(&mut s, 7, 8).unwrap();
    drop(s);

    // Same port, new connection: the old session's fids are gone and it is not versioned,
    // so a walk from fid 7 sent before Tversion must not succeed. (It is answered with an
    // error, or skipped when the reconnect raced the close: then the driver drops input
    // up to the new client's Tversion.)
    let mut s = connect(&m, 0);
    let wnames = Wnames::new(&[]).unwrap();
    let walk = frame(
        2,
        &Fcall::Twalk {
            fid: 7,
            newfid: 9,
            wnames,
        },
    );
    let tversion = frame(
        NOTAG,
        &Fcall::Tversion {
            msize: MSIZE,
            version: "9P2000",
        },
    );
    s.write_all(&[walk, tversion].concat()).unwrap();
    loop {
        let r = read_frame(&mut s);
        match reply(&r) {
            Fcall::Rversion { msize, .. } => {
                assert_eq!(msize, MSIZE);
                break;
            }
            Fcall::Rerror { .. } => {}
            other => panic!("old session survived the reconnect: {other:?}"),
        }
    }
    attach(&mut s, 7).expect("fid 7 free again");
    // Half a request, then hang up: the next connection's framer starts clean.
    let half = frame(
        3,
        &Fcall::Tattach {
            fid: 9,
            afid: NOFID,
            uname: OWNER,
            aname: "",
        },
    );
    s.write_all(&half[..half.len() / 2]).unwrap();
    drop(s);
    let mut s = connect(&m, 0);
    version(&mut s);
    attach(&mut s, 7).unwrap();
    // QEMU serves one client per socket: hang up before the next connects.
    drop(s);

    // Many quick reconnects, each a working session that starts clean.
    for _ in 0..50 {
        let mut s = connect(&m, 0);
        version(&mut s);
        attach(&mut s, 1).unwrap();
        clone_fid(&mut s, 1, 2).unwrap();
    }
}

#[test]
fn bursts_cross_many_buffers_in_order() {
    let m = boot(1);
    let mut s = connect(&m, 0);
    version(&mut s);
    attach(&mut s, 1).unwrap();
    // 3000 pipelined Tstats (33 KB in, about 200 KB of Rstat out) in one write: far more
    // than the port's receive and transmit buffers hold at once.
    const N: u16 = 3000;
    let mut burst = Vec::new();
    for tag in 0..N {
        burst.extend(frame(tag, &Fcall::Tstat { fid: 1 }));
    }
    let mut writer = s.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&burst));
    let mut first = None;
    for tag in 0..N {
        let r = read_frame(&mut s);
        let (t, f) = Fcall::decode(&r, MSIZE).unwrap();
        assert_eq!(t, tag, "replies out of order");
        match f {
            Fcall::Rstat { .. } => {}
            other => panic!("Tstat {tag} answered {other:?}"),
        }
        match &first {
            None => first = Some(r),
            Some(f0) => assert_eq!(&r[7..], &f0[7..], "Rstat {tag} differs"),
        }
    }
    w.join().unwrap().unwrap();
}

#[test]
fn a_client_that_stops_reading_does_not_block_another_port() {
    let m = boot(2);
    let mut slow = connect(&m, 0);
    version(&mut slow);
    attach(&mut slow, 1).unwrap();
    // 100000 Tstats (1.1 MB) whose 6.8 MB of replies nobody reads: far more than the
    // sockets, the rings and the session's output hold, so the socket fills, QEMU throttles
    // the port, the session stops taking input, and the writer blocks.
    const N: u32 = 100_000;
    let tag = |i: u32| (i % 0xFFFF) as u16; // never NOTAG
    let mut burst = Vec::new();
    for i in 0..N {
        burst.extend(frame(tag(i), &Fcall::Tstat { fid: 1 }));
    }
    let mut writer = slow.try_clone().unwrap();
    let w = std::thread::spawn(move || writer.write_all(&burst));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut other = connect(&m, 1);
    for _ in 0..20 {
        version(&mut other);
        attach(&mut other, 7).unwrap();
        clone_fid(&mut other, 7, 8).unwrap();
    }
    assert!(
        !w.is_finished(),
        "the stalled port took all its input: no back-pressure?"
    );
    drop(other);
    // The stalled port carries on once its client reads again.
    for i in 0..N {
        let r = read_frame(&mut slow);
        let (t, f) = Fcall::decode(&r, MSIZE).unwrap();
        assert_eq!(t, tag(i));
        assert!(matches!(f, Fcall::Rstat { .. }), "reply {i}: {f:?}");
    }
    w.join().unwrap().unwrap();
}

#[test]
fn a_message_larger_than_the_receive_ring_arrives_whole() {
    let m = boot(1);
    let mut s = connect(&m, 0);
    let big = 64 * 1024 + 24;
    let (_, r) = rpc(
        &mut s,
        NOTAG,
        &Fcall::Tversion {
            msize: big,
            version: "9P2000",
        },
    );
    assert_eq!(
        reply(&r),
        Fcall::Rversion {
            msize: big,
            version: "9P2000"
        }
    );
    attach(&mut s, 1).unwrap();
    // A 64 KiB Twrite (16 receive buffers, twice the port's ring) on a fid that is not
    // open: the session can only answer once the whole frame is in.
    let data = vec![0x5a; 64 * 1024];
    let mut buf = vec![0u8; big as usize];
    let n = Fcall::Twrite {
        fid: 1,
        offset: 0,
        data: &data,
    }
    .encode(5, &mut buf)
    .unwrap();
    s.write_all(&buf[..n]).unwrap();
    let r = read_frame(&mut s);
    let (tag, f) = Fcall::decode(&r, MSIZE).unwrap();
    assert_eq!(tag, 5);
    assert!(matches!(f, Fcall::Rerror { .. }), "{f:?}");
    // Still in step afterwards.
    clone_fid(&mut s, 1, 2).unwrap();
}
