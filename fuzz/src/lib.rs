//! Fuzz target bodies, shared by the libFuzzer targets and the stable smoke runner.
//! Each takes arbitrary bytes and must neither panic nor break an invariant.

use ninep::framer::Framer;
use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Session};
use protocol::{Fcall, MsgType, Wnames, NOFID, NOTAG};

mod fwcfg;
mod kblk;
mod knet;
mod netswitch;
pub mod runner;
mod virtqueue;
mod world;

pub use fwcfg::fwcfg;
pub use kblk::kblk;
pub use knet::knet;
pub use netswitch::netswitch;
pub use virtqueue::virtqueue;

/// Decoding is total, and whatever decodes re-encodes to the same frame.
pub fn decode(data: &[u8]) {
    if let Ok((tag, f)) = Fcall::decode(data, 1 << 20) {
        let mut buf = vec![0u8; data.len()];
        let n = f
            .encode(tag, &mut buf)
            .expect("a decoded message re-encodes");
        assert_eq!(&buf[..n], data, "re-encoding differs");
    }
    let _ = protocol::DirIter::new(data).count();
}

/// A session fed a valid preamble then arbitrary bytes answers only with well-formed
/// replies and keeps its bounds. Then a new session is fed the same input cut into
/// well-framed requests (size and tag known; [`frames`] leaves out those the engine takes
/// for a new client's) followed by a probe: every request that does not decode (an
/// R-message too, but an Rerror) and every Tcreate of a name holding a NUL gets an Rerror
/// with its own tag, and the probe is answered, so the session went on (a kernel mount
/// driver has no timeout to save it).
pub fn session(data: &[u8]) {
    let (mut fs, mut s) = session_setup();
    let mut input = preamble();
    input.extend_from_slice(data);
    feed(&mut s, &mut fs, &input);
    let st = s.stats();
    assert!(st.fids <= 16 && st.pending <= 4);
    s.reset(&mut fs);

    let (mut fs, mut s) = session_setup();
    let mut input = preamble();
    let frames = frames(data, PREAMBLE_MSIZE);
    for f in &frames {
        input.extend_from_slice(f);
    }
    let mut probe = [0u8; 16];
    let n = Fcall::Tstat { fid: 0 }
        .encode(PROBE_TAG, &mut probe)
        .expect("encode the probe");
    input.extend_from_slice(&probe[..n]);
    let out = feed(&mut s, &mut fs, &input);
    let mut replies = Vec::new();
    let mut b = &out[..];
    while let Some(size) = protocol::frame_size(b) {
        replies.push((b[4], u16::from_le_bytes([b[5], b[6]])));
        b = &b[size as usize..];
    }
    for f in &frames {
        let tag = u16::from_le_bytes([f[5], f[6]]);
        // intro(5): no string may hold a NUL; a name with one must not be created.
        let refused = match Fcall::decode(f, PREAMBLE_MSIZE) {
            Ok((_, Fcall::Tcreate { name, .. })) => name.contains('\0'),
            Ok(_) => !f[4].is_multiple_of(2),
            Err(_) => true,
            // Except an Rerror, which is never answered: on a line that echoes, answering our
            // own echoed Rerror would never end (the engine's rule).
        } && f[4] != MsgType::Rerror as u8;
        assert!(
            !refused || replies.contains(&(MsgType::Rerror as u8, tag)),
            "no Rerror with tag {tag} for the well-framed request {f:02x?}"
        );
    }
    assert!(
        replies.iter().any(|&(_, t)| t == PROBE_TAG),
        "the session stopped answering: no reply to a Tstat after {frames:02x?}"
    );
    s.reset(&mut fs);
}

/// The tag of the request [`session`] sends after the fuzzed frames.
const PROBE_TAG: u16 = 0xfffe;

/// `data` cut into frames as a server reads them: size[4] first, each at least a header
/// long, at most `msize` and within `data`; the cut stops at the first that is not.
/// Left out: frames carrying [`PROBE_TAG`], and those that are no request of this session
/// by the engine's rules (`Session::undecodable`): a Tversion, which starts a new one,
/// and a frame of an even type that does not decode for its body and holds a Tversion
/// header after its first byte, which the engine takes for a departed client's partial
/// message and a new client's Tversion, and skips to that header unanswered (it may
/// claim bytes past the frame, swallowing what follows, the probe too). A frame of an
/// odd or unknown type is answered whatever it holds, so it stays.
pub fn frames(mut data: &[u8], msize: u32) -> Vec<&[u8]> {
    // The engine's own test, with the session's framer bound (its maximum msize).
    let framer = Framer::new(limits().max_msize);
    let new_client = |f: &[u8]| {
        f[4].is_multiple_of(2)
            && matches!(Fcall::decode(f, msize), Err(e) if !matches!(e, protocol::Error::BadType(_)))
            && framer.holds_tversion(f)
    };
    let mut out = Vec::new();
    while let Some(size) = protocol::frame_size(data) {
        let size = size as usize;
        if size < protocol::HEADER_LEN || size > msize as usize || size > data.len() {
            break;
        }
        let (f, rest) = data.split_at(size);
        if f[4] != MsgType::Tversion as u8
            && u16::from_le_bytes([f[5], f[6]]) != PROBE_TAG
            && !new_client(f)
        {
            out.push(f);
        }
        data = rest;
    }
    out
}

/// The bounds of every session run (small, so that the fuzzer reaches them).
fn limits() -> Limits {
    Limits {
        max_fids: 16,
        max_pending: 4,
        ..Limits::default()
    }
}

/// The tree and session every session run starts with: a file, a directory and a queue
/// (reads of `vmx/wait` block until a write).
fn session_setup() -> (Memfs, Session<Memfs>) {
    let mut fs = Memfs::new("glenda");
    let d = fs.mkdir(ROOT, "vmx", 0o775, "glenda").expect("mkdir");
    fs.add_queue(d, "wait", 0o666, "glenda").expect("queue");
    fs.add_file(ROOT, "f", 0o666, "glenda", b"data")
        .expect("file");
    (fs, Session::new(1, limits()))
}

/// Feeds `input` to the session as a transport would, checking every reply; returns all
/// the output.
fn feed(s: &mut Session<Memfs>, fs: &mut Memfs, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        let n = s.input(&input[off..]);
        off += n;
        s.process(fs);
        check_output(s);
        let len = s.output().len();
        out.extend_from_slice(s.output());
        s.consume_output(len);
        if len == 0 && (n == 0 || off == input.len()) {
            return out;
        }
    }
}

fn check_output(s: &Session<Memfs>) {
    let mut b = s.output();
    while !b.is_empty() {
        let size = protocol::frame_size(b).expect("whole frames") as usize;
        Fcall::decode(&b[..size], s.msize().max(1 << 17)).expect("replies decode");
        b = &b[size..];
    }
}

/// The msize the preamble's Tversion offers.
const PREAMBLE_MSIZE: u32 = 8192;

/// Tversion, Tattach and a walk, so that fuzzed frames reach fids.
pub fn preamble() -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let mut n = 0;
    let msgs = [
        (
            NOTAG,
            Fcall::Tversion {
                msize: PREAMBLE_MSIZE,
                version: "9P2000",
            },
        ),
        (
            1,
            Fcall::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "glenda",
                aname: "",
            },
        ),
        (
            2,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames: Wnames::new(&["vmx", "wait"]).expect("names"),
            },
        ),
    ];
    for (tag, m) in msgs {
        n += m.encode(tag, &mut out[n..]).expect("encode");
    }
    out.truncate(n);
    out
}

/// Well-formed frames of every T-message, valid #X texts, good virtqueues, fw_cfg
/// accesses, switched networks, in-kernel disks' and cards' rings: the seeds the mutator starts from.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut s = frame_seeds();
    s.extend(vmx_seeds());
    s.extend(virtqueue::seeds());
    s.extend(fwcfg::seeds());
    s.extend(netswitch::seeds());
    s.extend(kblk::seeds());
    s.extend(knet::seeds());
    s
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let names = Wnames::new(&["vmx", "wait"]).expect("names");
    let msgs = [
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
        Fcall::Tattach {
            fid: 2,
            afid: NOFID,
            uname: "glenda",
            aname: "vmx",
        },
        Fcall::Twalk {
            fid: 0,
            newfid: 3,
            wnames: names,
        },
        Fcall::Topen { fid: 1, mode: 0 },
        Fcall::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
        Fcall::Twrite {
            fid: 1,
            offset: 0,
            data: b"go",
        },
        Fcall::Tflush { oldtag: 5 },
        Fcall::Tclunk { fid: 1 },
        Fcall::Tremove { fid: 3 },
        Fcall::Tstat { fid: 0 },
        Fcall::Twstat {
            fid: 1,
            stat: protocol::Dir::DONT_TOUCH,
        },
        Fcall::Tcreate {
            fid: 0,
            name: "x",
            perm: 0o644,
            mode: 2,
        },
    ];
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let mut b = vec![0u8; 512];
            let n = m.encode(i as u16, &mut b).expect("encode");
            b.truncate(n);
            b
        })
        .collect()
}

/// A fuzz target: arbitrary bytes in, a panic on failure.
pub type Target = fn(&[u8]);

/// Every target, by name, for runners that take them all.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode", decode),
    ("session", session),
    ("eventparse", eventparse),
    ("vmx_files", vmx_files),
    ("virtqueue", virtqueue),
    ("fwcfg", fwcfg),
    ("netswitch", netswitch),
    ("kblk", kblk),
    ("knet", knet),
];

/// The #X event syntax (`exc`/`irq` arguments): a value or Ebadctl, and a value is a
/// valid interruption: valid bit set, vector and type in range.
pub fn eventparse(data: &[u8]) {
    let s = devvmx::plan9::cstr(data);
    if let Ok(v) = devvmx::event::eventparse(&s) {
        let info = v.info.0;
        assert!(info & 1 << 31 != 0);
        assert_eq!(info & 0x7fff_f000, 0, "stray bits in {:#x}", info);
        assert!(matches!(info >> 8 & 7, 0 | 3 | 6));
    }
}

/// Writes to the #X and segment files (ctl, regs, map, fpregs, cons, segment ctl and data,
/// a switch port's queue file), runs the guest on scripted exits, reads every file back,
/// then ends the VM, the segment and the port: nothing may panic, every frame must come
/// back and the switch keeps no port.
pub fn vmx_files(data: &[u8]) {
    use devvmx::hw::Hw;
    use devvmx::testhw::{Exit, TestHw};
    use devvmx::{Config, Namespace};
    use ninep::{Ctx, Read, Tree};

    let mut hw = TestHw::new(256);
    // Exit reasons for the run, from the input's bytes.
    for b in data.iter().take(8) {
        hw.exits.push_back(Exit::new(*b as u32 % 66));
    }
    let mut ns = Namespace::new(
        hw,
        Config {
            owner: "eve".into(),
            version: "fuzz",
        },
    );
    let switch = std::sync::Arc::new(spin::Mutex::new(::netswitch::Switch::new(
        ::netswitch::Config {
            queue: 4,
            ..Default::default()
        },
    )));
    ns.set_switch(devvmx::HostSwitch {
        switch: switch.clone(),
        millis: || 0,
    });
    let start = ns.hw().frames_free();
    let ctx = Ctx {
        uname: "eve",
        session: 1,
    };
    let root = ns.attach(&ctx, "").expect("attach");
    let walk = |ns: &mut Namespace<TestHw>, path: &[&str]| {
        let mut n = root.clone();
        for p in path {
            n = ns.walk(&ctx, &n, p).ok()?;
        }
        Some(n)
    };
    let mut segdir = walk(&mut ns, &["segment"]).expect("segment");
    ns.create(&ctx, &mut segdir, "s", protocol::dm::DIR | 0o777, 0)
        .expect("create");
    let mut sctl = walk(&mut ns, &["segment", "s", "ctl"]).expect("seg ctl");
    ns.open(&ctx, &mut sctl, 2).expect("open seg ctl");
    ns.write(&ctx, &mut sctl, 0, b"va 0x10000000 0x8000")
        .expect("size");
    let mut ctl = walk(&mut ns, &["vmx", "clone"]).expect("clone");
    ns.open(&ctx, &mut ctl, 2).expect("clone open");
    let mut files: Vec<_> = ["ctl", "regs", "map", "fpregs", "status", "wait", "cons"]
        .iter()
        .map(|f| {
            let mut n = walk(&mut ns, &["vmx", "0", f]).expect("vm file");
            let mode = if matches!(*f, "status" | "wait") {
                0
            } else {
                2
            };
            ns.open(&ctx, &mut n, mode).expect("open vm file");
            n
        })
        .collect();
    let mut sdata = walk(&mut ns, &["segment", "s", "data"]).expect("data");
    ns.open(&ctx, &mut sdata, 2).expect("open data");
    // Two client ports: what one writes (broadcast, unknown unicast) the other reads.
    let mut ports: Vec<_> = (0..2)
        .map(|_| {
            let mut p = walk(&mut ns, &["switch", "clone"]).expect("switch clone");
            ns.open(&ctx, &mut p, 2).expect("open switch clone");
            p
        })
        .collect();
    // Records separated by 0xfe: the first byte of each picks the file.
    for rec in data.split(|&b| b == 0xfe) {
        let Some((&sel, body)) = rec.split_first() else {
            continue;
        };
        let off = body.len() as u64 * 37 % 0x9000;
        let _ = match sel % 8 {
            0 => ns.write(&ctx, &mut files[0], 0, body),
            1 => ns.write(&ctx, &mut files[1], 0, body),
            2 => ns.write(&ctx, &mut files[2], 0, body),
            3 => ns.write(&ctx, &mut files[3], off, body),
            4 => ns.write(&ctx, &mut sctl, 0, body),
            5 => ns.write(&ctx, &mut sdata, off, body),
            6 => ns.write(&ctx, &mut files[6], 0, body),
            _ => ns.write(&ctx, &mut ports[usize::from(sel >> 7)], 0, body),
        };
        ns.run_guests();
    }
    for _ in 0..4 {
        ns.run_guests();
    }
    let mut buf = vec![0u8; 8192];
    for f in files.iter_mut() {
        match ns.read(&ctx, f, 0, &mut buf) {
            Ok(Read::Done(n)) => assert!(n <= buf.len()),
            Ok(Read::Pending) | Err(_) => {}
        }
    }
    for p in ports.iter_mut() {
        match ns.read(&ctx, p, 0, &mut buf) {
            Ok(Read::Done(n)) => {
                ::netswitch::qfile::decode(&buf[..n]).expect("a port's read is whole frames");
            }
            Ok(Read::Pending) | Err(_) => {}
        }
    }
    for p in ports {
        ns.clunk(&ctx, p, true);
    }
    assert_eq!(
        switch.lock().status().to_string().lines().count(),
        1,
        "a port stayed"
    );
    let _ = ns.read(&ctx, &mut sctl, 0, &mut buf);
    let _ = ns.read(&ctx, &mut sdata, 0x7ff0, &mut buf);
    // The VM may already be gone through a "quit" in the input.
    let _ = ns.remove(&ctx, &ctl);
    let seg = walk(&mut ns, &["segment", "s"]).expect("seg dir");
    ns.remove(&ctx, &seg).expect("remove segment");
    assert_eq!(ns.vm_count(), 0);
    assert_eq!(ns.hw().frames_free(), start, "frames leaked");
    assert!(!ns.hw().vmx_on());
}

/// Valid #X texts, the seeds the mutator starts from for the devvmx targets.
fn vmx_seeds() -> Vec<Vec<u8>> {
    let texts: [&[u8]; 17] = [
        b"#gp,0",
        b"#bp,,1",
        b"32",
        b"\x00go pc=0x1000;sp=0x7000;\xfe\x00step\xfe\x00exc #ud\xfe\x00irq 32",
        b"\x01pc 0x7c00\ncr0real 0x80000031\nefer 0x500\nxcr0 7\n",
        b"\x02rwx wb 0x0 0x4000 s 0x0\nr-- uc! 0x4000 0x8000 s 0x4000\n",
        b"\x02--- uc 0x1000 0x3000\n\xfe\x02rw- wt 0x2000 0x3000 s 0x7000\n",
        b"\x03\x7f\x03\x00\x00",
        b"\x04va 0x1000 0x2000 sticky",
        b"\x05hello",
        b"\x00extrap 0x4000a\xfe\x00quit",
        b"\x00irq\xfe\x00stop\xfe\x00go",
        // In-kernel devices: the console, a client's PIC line.
        b"\x00devices pic pit uart rtc=0 kbd quiet cpu\xfe\x06hi\xfe\x00line 4 1\xfe\x00go",
        b"\x00devices pic uart\xfe\x00go\xfe\x00devices pit\xfe\x06x\xfe\x00line 11 0",
        // A broadcast frame written to the first switch port.
        b"\x07frame 14\n\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x00",
        // In-kernel PCI and a client's function on it.
        b"\x00devices pic pci\xfe\x00pci add 1af4:1001 010000 1af4:0002 64 10 0xc000\xfe\x00go",
        b"\x00pci add 1af4:1000 020000 1af4:0001 32 11 0xc040\xfe\x00devices pci\xfe\x00pci x",
    ];
    texts.iter().map(|t| t.to_vec()).collect()
}
