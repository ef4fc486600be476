//! The checks both boot tests run against a booted machine over one of its links.

use ninep_client::{om, Client};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use vmm_tests::emu::{self, Machine};

pub const OWNER: &str = "eve";
pub const STRANGER: &str = "glenda";

/// `key value` lines of the root status file.
pub use vmm_tests::status::{num as field, read as status};

fn names(c: &Client, path: &str) -> Vec<String> {
    let mut n: Vec<String> = c
        .ls(path)
        .unwrap_or_else(|e| panic!("ls {path}: {e}"))
        .into_iter()
        .map(|s| s.name)
        .collect();
    n.sort();
    n
}

/// Version, attach by every aname, walk, status, listing vmx/.
pub fn namespace(m: &Machine, link: &Path) {
    let c = m.client_on(link, OWNER, "");
    assert!(c.root_qid().is_dir(), "root is a directory");
    let root = names(&c, "");
    for want in ["segment", "status", "vmx"] {
        assert!(
            root.contains(&want.to_string()),
            "root lists {want}: {root:?}"
        );
    }
    assert!(names(&c, "vmx").contains(&"clone".to_string()));

    let st = status(&c);
    let version = vmm_tests::status::text(&st, "version");
    assert!(version.contains("hypervisor"), "version line: {version}");
    let (free, total) = (field(&st, "memfree"), field(&st, "memtotal"));
    assert!(
        total > 0 && free <= total,
        "memfree {free} memtotal {total}"
    );

    // Walks: a file, a directory, and a name that is not there.
    assert!(!c.stat("vmx/clone").expect("stat vmx/clone").is_dir());
    assert!(c.stat("vmx").expect("stat vmx").is_dir());
    let e = c.stat("vmx/nonesuch").expect_err("walk to a missing file");
    assert!(e.to_string().contains("does not exist"), "{e}");

    // The anames that give each tree directly.
    let vmx = c.attach(OWNER, "vmx").expect("attach vmx");
    assert!(vmx.qid().is_dir());
    vmx.walk("clone").expect("walk clone from the vmx attach");
    let seg = c.attach(OWNER, "segment").expect("attach segment");
    assert!(seg.qid().is_dir());
    let Err(e) = c.attach(OWNER, "nonesuch") else {
        panic!("attached an unknown tree");
    };
    assert!(!e.to_string().is_empty());
}

/// Only the owner may open clone; anyone may read status.
pub fn permissions(m: &Machine, link: &Path) {
    let c = m.client_on(link, STRANGER, "");
    let Err(e) = c.open("vmx/clone", om::RDWR) else {
        panic!("a stranger opened vmx/clone");
    };
    assert_eq!(e.remote(), Some("permission denied"), "{e}");
    let st = status(&c);
    assert!(field(&st, "memtotal") > 0);
    drop(c);
    let c = m.client_on(link, OWNER, "");
    let f = c.open("vmx/clone", om::READ).map(|f| f.clunk());
    // The owner passes the permission check (a kernel without VT-x may still refuse
    // the open itself, with an error that says so).
    if let Err(e) = f {
        assert_ne!(e.remote(), Some("permission denied"), "{e}");
    }
}

fn tversion(msize: u32, tag: u16) -> Vec<u8> {
    let v = b"9P2000";
    let size = 4 + 1 + 2 + 4 + 2 + v.len();
    let mut m = Vec::new();
    m.extend_from_slice(&(size as u32).to_le_bytes());
    m.push(100);
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(&msize.to_le_bytes());
    m.extend_from_slice(&(v.len() as u16).to_le_bytes());
    m.extend_from_slice(v);
    m
}

/// Reads 9P frames until an Rversion; returns its msize.
fn read_rversion(s: &mut impl Read, deadline: Instant) -> u32 {
    loop {
        assert!(Instant::now() < deadline, "no Rversion after garbage");
        let mut hdr = [0u8; 4];
        s.read_exact(&mut hdr).expect("read a reply size");
        let size = u32::from_le_bytes(hdr) as usize;
        assert!((7..=1 << 20).contains(&size), "reply size {size}");
        let mut body = vec![0u8; size - 4];
        s.read_exact(&mut body).expect("read a reply");
        if body[0] == 101 {
            assert_eq!(
                u16::from_le_bytes([body[1], body[2]]),
                0xffff,
                "Rversion tag"
            );
            return u32::from_le_bytes(body[3..7].try_into().unwrap());
        }
    }
}

/// Garbage, then a Tversion: the server resyncs and answers, and a session goes on.
pub fn garbage_then_version(m: &Machine, link: &Path) {
    let mut s = m.raw(link);
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    // A huge size field, text, and a well-framed message of an unknown type.
    s.write_all(b"\xff\xff\xff\x7fthis is not 9P at all\r\n\x00\x01\x02")
        .unwrap();
    s.write_all(&[7, 0, 0, 0, 0xfe, 1, 0]).unwrap();
    s.write_all(&tversion(8192, 0xffff)).unwrap();
    let msize = read_rversion(&mut s, Instant::now() + Duration::from_secs(60));
    assert!((256..=8192).contains(&msize), "msize {msize}");
    // The same stream carries a full session on.
    let c = Client::over_msize(s, OWNER, "", 8192).expect("session after garbage");
    c.set_timeout(Some(Duration::from_secs(30)));
    assert!(field(&status(&c), "memtotal") > 0);
}

/// A client leaves with fids open; the next one on the same link gets a fresh session.
pub fn reconnect(m: &Machine, link: &Path) {
    let c = m.client_on(link, OWNER, "");
    let f = c.open("status", om::READ).expect("open status");
    let before = status(&c);
    assert_eq!(field(&before, "sessions"), 1, "{before:?}");
    drop(f);
    drop(c);
    for round in 0..2 {
        let c = m.client_on(link, OWNER, "");
        let st = status(&c);
        assert_eq!(field(&st, "sessions"), 1, "round {round}: {st:?}");
        assert_eq!(
            field(&st, "memfree"),
            field(&before, "memfree"),
            "round {round}: memory leaked over a reconnect"
        );
        assert!(names(&c, "vmx").contains(&"clone".to_string()));
    }
}

const PY9P: &str = r#"
import sys
import py9p.client as client
path = sys.argv[1]
c = client.Client.connect_unix(path, msize=8192)
c.transport.settimeout(60)
v = c.negotiate()
assert v.version == "9P2000", v
root = c.attach(0, uname="eve", aname="")
assert root.type & 0x80, root
c.walk(0, 1, "status")
c.open(1)
text = c.read(1, 4000).decode()
assert "version" in text and "memfree" in text, text
c.clunk(1)
c.walk(0, 2, "vmx")
c.open(2)
listing = c.read(2, 4000)
assert b"clone" in listing, listing
c.clunk(2)
q = c.attach(3, uname="eve", aname="vmx")
assert q.type & 0x80, q
c.walk(3, 4, "clone")
c.attach(5, uname="glenda", aname="")
c.walk(5, 6, "vmx/clone")
try:
    c.open(6, 2)
    raise SystemExit("glenda opened vmx/clone")
except client.RemoteError as e:
    assert "permission denied" in str(e), e
print("python-9p ok")
"#;

/// python-9p, an independent client, over the same link.
pub fn python_9p(m: &Machine, link: &Path) {
    let _ = m;
    let out = emu::python(PY9P, &[&link.display().to_string()]);
    assert!(out.contains("python-9p ok"), "{out}");
}

/// Every one of `cpus` CPUs came up (the kernel logs each AP, with VT-x's verdict on it:
/// where `vmx`, `vmx ok` and the VMXON region it is in VMX root operation on), status says
/// so, each woke from `hlt` for its doorbell IPIs, and 9P is served on `link` all the while.
pub fn all_cpus_up(m: &Machine, link: &Path, cpus: u64, vmx: bool) {
    let log = m.log();
    for n in 1..cpus {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("smp: cpu {n} (APIC ")))
            .unwrap_or_else(|| panic!("cpu {n} not started:\n{}", m.diagnostics()));
        assert!(
            log.contains(&format!("smp: cpu {n} answers its doorbell\n")),
            "cpu {n} did not wake for its IPIs:\n{log}"
        );
        let verdict = line.split(") online, ").nth(1).unwrap_or("");
        if vmx {
            assert!(verdict.starts_with("vmx ok (VMXON region 0x"), "{line}");
        } else {
            assert!(verdict.starts_with("no vmx: "), "{line}");
        }
    }
    assert!(
        !log.contains(&format!("smp: cpu {cpus} ")),
        "more CPUs than the machine has:\n{log}"
    );
    if cpus > 1 {
        assert!(log.contains(&format!("; starting {}\n", cpus - 1)), "{log}");
    }
    {
        // One client at a time: a link serves one connection.
        let c = m.client_on(link, OWNER, "");
        for _ in 0..10 {
            assert_eq!(field(&status(&c), "cpus"), cpus);
        }
    }
    namespace(m, link);
}
