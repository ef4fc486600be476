//! Twstat through 9P: all of it happens or none (stat(5)). VM files take the truncation
//! clients send before a write (9pfuse's length 0, Linux v9fs's length 0 with mtime now);
//! segment files take a mode and an mtime, and refuse what they cannot do.

mod common;
use common::*;
use protocol::{dm, om, Dir};

const NOW: u32 = 1_796_083_798;

fn dt() -> Dir<'static> {
    Dir::DONT_TOUCH
}

/// A length-0 wstat as 9pfuse sends it (mtime "don't touch") and as Linux v9fs sends it
/// for O_TRUNC (mtime now).
fn truncations() -> [Dir<'static>; 2] {
    let mut fuse = dt();
    fuse.length = 0;
    let mut linux = fuse;
    linux.mtime = NOW + 5;
    [fuse, linux]
}

fn vm_with_map() -> (Client, u32, String) {
    let mut c = Client::with_clock(NOW);
    c.segment("s", 0x2000);
    let (ctl, n) = c.new_vm();
    let m = format!("vmx/{n}/map");
    assert_eq!(c.write_path(&m, b"rwx wb 0x0 0x2000 s 0x0\n"), R::Count(24));
    assert_eq!(c.ns.segment_refs("s"), 2);
    (c, ctl, n)
}

#[test]
fn vm_files_take_both_truncation_shapes() {
    for (i, d) in truncations().into_iter().enumerate() {
        let (mut c, _ctl, n) = vm_with_map();
        let p = |f: &str| format!("vmx/{n}/{f}");
        c.write_path(&p("regs"), b"pc 0x1234\n");
        // ctl, regs and fpregs: accepted, nothing changes (what OTRUNC does to them).
        for f in ["ctl", "regs", "fpregs"] {
            assert_eq!(c.wstat_path(&p(f), d), R::Ok, "shape {i} on {f}");
        }
        assert!(c.read_text(&p("regs")).contains("pc 0x0000000000001234\n"));
        assert_eq!(c.read_text(&p("map")), "rwx wb 0x0 0x2000 s 0x0\n");
        // map: cleared, its segment reference given back.
        assert_eq!(c.wstat_path(&p("map"), d), R::Ok, "shape {i} on map");
        assert_eq!(c.read_text(&p("map")), "");
        assert_eq!(c.ns.segment_refs("s"), 1);
        // The VM's files keep the time it was made: the mtime is ignored.
        assert_eq!(c.times(&p("map")), (NOW, NOW));
    }
}

#[test]
fn linux_echo_into_ctl_regs_and_map() {
    // What `echo ... > /mnt/vmx/N/FILE` does from Linux v9fs: open for writing, a
    // length-0 wstat with mtime now, then the write.
    let (mut c, ctl, n) = vm_with_map();
    let [_, linux] = truncations();
    let echo = |c: &mut Client, f: &str, text: &[u8]| {
        let path = format!("vmx/{n}/{f}");
        let fid = c.open_path(&path, om::WRITE).unwrap();
        assert_eq!(
            c.rpc(9, protocol::Fcall::Twstat { fid, stat: linux }),
            R::Ok
        );
        let r = c.write(fid, 0, text);
        c.clunk(fid);
        r
    };
    assert_eq!(echo(&mut c, "regs", b"pc 0x1000\n"), R::Count(10));
    assert_eq!(
        echo(&mut c, "map", b"r-x wb 0x1000 0x2000 s 0x1000\n"),
        R::Count(30)
    );
    assert_eq!(
        c.read_text(&format!("vmx/{n}/map")),
        "r-x wb 0x1000 0x2000 s 0x1000\n"
    );
    assert_eq!(echo(&mut c, "ctl", b"go\n"), R::Count(3));
    assert_eq!(c.read_text(&format!("vmx/{n}/status")), "running\n");
    let _ = ctl;
}

#[test]
fn vm_files_refuse_the_rest_whole() {
    let (mut c, _ctl, n) = vm_with_map();
    let p = |f: &str| format!("vmx/{n}/{f}");
    let [fuse, linux] = truncations();
    let mut rename = fuse;
    rename.name = "map2";
    let mut chmod = linux;
    chmod.mode = 0o600;
    let mut chgrp = linux;
    chgrp.gid = "glenda";
    let mut long = dt();
    long.length = 5;
    for d in [rename, chmod, chgrp, long] {
        assert_eq!(
            c.wstat_path(&p("map"), d),
            err("permission denied"),
            "{d:?}"
        );
        // Nothing happened: not even the truncation that came with it.
        assert_eq!(c.read_text(&p("map")), "rwx wb 0x0 0x2000 s 0x0\n");
    }
    // The values the file already has change nothing, and are no error.
    let mut same = linux;
    same.name = "map";
    same.mode = 0o660;
    same.uid = OWNER;
    same.gid = OWNER;
    same.atime = NOW + 9;
    assert_eq!(c.wstat_path(&p("map"), same), R::Ok);
    assert_eq!(c.read_text(&p("map")), "");
    // Read-only files take no wstat at all.
    for f in ["status", "wait"] {
        assert_eq!(c.wstat_path(&p(f), fuse), err("permission denied"), "{f}");
    }
    // Only the owner.
    c.attach(50, "glenda", "");
    let f = c.fid();
    c.walk(50, f, &["vmx", &n, "regs"]);
    assert_eq!(
        c.rpc(9, protocol::Fcall::Twstat { fid: f, stat: fuse }),
        err("permission denied")
    );
}

fn seg_stat(c: &mut Client, f: &str) -> (u64, u32) {
    let fid = c.open_path(&format!("segment/s/{f}"), om::READ).unwrap();
    let R::Stat(_, len, mode, _) = c.stat(fid) else {
        panic!()
    };
    c.clunk(fid);
    (len, mode)
}

#[test]
fn segment_files_are_all_or_nothing() {
    let mut c = Client::with_clock(NOW);
    c.segment("s", 0x2000);
    for f in ["ctl", "data"] {
        let p = format!("segment/s/{f}");
        // A mode applies.
        let mut chmod = dt();
        chmod.mode = 0o640;
        assert_eq!(c.wstat_path(&p, chmod), R::Ok, "{f}");
        assert_eq!(seg_stat(&mut c, f).1, 0o640);
        // With a rename, a nonzero length, a new group or a directory bit, nothing
        // happens, the mode included (the seed applied the mode and dropped the rest).
        for (field, d) in [
            ("name", Dir { name: "t", ..chmod }),
            (
                "length",
                Dir {
                    length: 100,
                    ..chmod
                },
            ),
            (
                "gid",
                Dir {
                    gid: "glenda",
                    ..chmod
                },
            ),
            (
                "dir bit",
                Dir {
                    mode: dm::DIR | 0o600,
                    ..dt()
                },
            ),
        ] {
            let d = Dir {
                mode: d.mode & !0o777 | 0o600,
                ..d
            };
            assert_eq!(c.wstat_path(&p, d), err("permission denied"), "{f} {field}");
            assert_eq!(seg_stat(&mut c, f).1, 0o640, "{f} {field}");
        }
        assert_eq!(c.ls("segment"), vec!["s"]);
        // Length 0 in both shapes: accepted, and it truncates nothing (as OTRUNC on a
        // segment); the current length is no change either.
        for d in truncations() {
            assert_eq!(c.wstat_path(&p, d), R::Ok, "{f}");
        }
        let mut same = dt();
        same.length = if f == "data" { 0x2000 } else { 0 };
        same.name = f;
        assert_eq!(c.wstat_path(&p, same), R::Ok, "{f}");
        assert_eq!(seg_stat(&mut c, "data").0, 0x2000);
    }
    // data keeps an mtime it is given (touch); ctl keeps the time the segment was made.
    let mut touch = dt();
    touch.mtime = NOW - 1000;
    touch.atime = NOW - 2000;
    assert_eq!(c.wstat_path("segment/s/data", touch), R::Ok);
    assert_eq!(c.times("segment/s/data"), (NOW - 1000, NOW - 1000));
    assert_eq!(c.wstat_path("segment/s/ctl", touch), R::Ok);
    assert_eq!(c.times("segment/s/ctl"), (NOW, NOW));
    // A stranger may change nothing; the directory takes no wstat.
    c.attach(50, "glenda", "segment");
    let g = c.fid();
    c.walk(50, g, &["s", "data"]);
    let mut chmod = dt();
    chmod.mode = 0o666;
    assert_eq!(
        c.rpc(
            9,
            protocol::Fcall::Twstat {
                fid: g,
                stat: chmod
            }
        ),
        err("permission denied")
    );
    assert_eq!(c.wstat_path("segment/s", chmod), err("permission denied"));
}
