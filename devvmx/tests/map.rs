//! The map file and segments through 9P: line format both ways, errors, vmmemupdate's
//! splits and merges, EPT entries, OTRUNC, reference counting and freeing, and a
//! segment's lifetime tied to a ctl fid opened with ORCLOSE.

mod common;
use common::*;
use devvmx::hw::Hw;
use protocol::{dm, om};

/// A VM and a 16-page segment "vm.0" whose page i starts with byte i+1.
fn setup() -> (Client, u32, String) {
    let mut c = Client::new();
    c.segment("vm.0", 0x10000);
    let data = c.open_path("segment/vm.0/data", om::RDWR).unwrap();
    for i in 0..16u8 {
        assert_eq!(c.write(data, i as u64 * 4096, &[i + 1]), R::Count(1));
    }
    c.clunk(data);
    let (ctl, n) = c.new_vm();
    (c, ctl, n)
}

fn map(c: &mut Client, n: &str, text: &str) -> R {
    c.write_path(&format!("vmx/{n}/map"), text.as_bytes())
}

fn ok(c: &mut Client, n: &str, text: &str) {
    assert_eq!(map(c, n, text), R::Count(text.len() as u32), "{text}");
}

/// The first byte of the frame EPT maps at `gpa`, and the leaf's low 12 bits.
fn ept(c: &mut Client, gpa: u64) -> Option<(u8, u64)> {
    let e = c.ns.ept_entry(0, gpa).unwrap();
    if e == 0 {
        return None;
    }
    let pa = e & !0xfff;
    Some((c.ns.hw_mut().frame(pa)[0], e & 0xfff))
}

#[test]
fn lines_round_trip_and_build_ept() {
    let (mut c, _ctl, n) = setup();
    ok(&mut c, &n, "rwx wb 0x0 0x4000 vm.0 0x0\n");
    assert_eq!(
        c.read_text(&format!("vmx/{n}/map")),
        "rwx wb 0x0 0x4000 vm.0 0x0\n"
    );
    // rwx is 7 plus bit 10 for x; wb is type 6.
    assert_eq!(ept(&mut c, 0x0), Some((1, 0x437)));
    assert_eq!(ept(&mut c, 0x3000), Some((4, 0x437)));
    assert_eq!(ept(&mut c, 0x4000), None);
    // Other attributes, '!' and offsets.
    ok(&mut c, &n, "r-- uc! 0x100000 0x102000 vm.0 0x8000\n");
    assert_eq!(ept(&mut c, 0x101000), Some((10, 0x041)));
    ok(&mut c, &n, "-w- wt 0x200000 0x201000 vm.0 0xf000\n");
    assert_eq!(ept(&mut c, 0x200000), Some((16, 0x022)));
    assert_eq!(
        c.read_text(&format!("vmx/{n}/map")),
        "rwx wb 0x0 0x4000 vm.0 0x0\n\
         r-- uc! 0x100000 0x102000 vm.0 0x8000\n\
         -w- wt 0x200000 0x201000 vm.0 0xf000\n"
    );
}

#[test]
fn merge_split_and_unmap() {
    let (mut c, _ctl, n) = setup();
    let m = format!("vmx/{n}/map");
    // Two lines continuing each other merge.
    ok(
        &mut c,
        &n,
        "rwx wb 0x0 0x4000 vm.0 0x0\nrwx wb 0x4000 0x8000 vm.0 0x4000\n",
    );
    assert_eq!(c.read_text(&m), "rwx wb 0x0 0x8000 vm.0 0x0\n");
    // A range inside splits it in three.
    ok(&mut c, &n, "r-- uc 0x2000 0x3000 vm.0 0x9000\n");
    assert_eq!(
        c.read_text(&m),
        "rwx wb 0x0 0x2000 vm.0 0x0\n\
         r-- uc 0x2000 0x3000 vm.0 0x9000\n\
         rwx wb 0x3000 0x8000 vm.0 0x3000\n"
    );
    assert_eq!(ept(&mut c, 0x2000), Some((10, 0x001)));
    // Putting the original back merges all three again.
    ok(&mut c, &n, "rwx wb 0x2000 0x3000 vm.0 0x2000\n");
    assert_eq!(c.read_text(&m), "rwx wb 0x0 0x8000 vm.0 0x0\n");
    // The same segment and contiguous offsets but other attributes do not merge (a fix).
    ok(&mut c, &n, "r-x wb 0x8000 0x9000 vm.0 0x8000\n");
    assert_eq!(
        c.read_text(&m),
        "rwx wb 0x0 0x8000 vm.0 0x0\nr-x wb 0x8000 0x9000 vm.0 0x8000\n"
    );
    // Unmapping with a 4-field line cuts a hole and clears EPT there.
    ok(&mut c, &n, "--- uc 0x1000 0x3000\n");
    assert_eq!(
        c.read_text(&m),
        "rwx wb 0x0 0x1000 vm.0 0x0\n\
         rwx wb 0x3000 0x8000 vm.0 0x3000\n\
         r-x wb 0x8000 0x9000 vm.0 0x8000\n"
    );
    assert_eq!(ept(&mut c, 0x1000), None);
    assert_eq!(ept(&mut c, 0x2000), None);
    assert_eq!(ept(&mut c, 0x3000), Some((4, 0x437)));
    // A range over several entries replaces them all; a 6-field --- line ignores the rest.
    ok(&mut c, &n, "--- wb 0x0 0x100000000 whatever 0x0\n");
    assert_eq!(c.read_text(&m), "");
    assert_eq!(ept(&mut c, 0x0), None);
    assert_eq!(ept(&mut c, 0x8000), None);
    // Overlapping the tail and the head of neighbours.
    ok(
        &mut c,
        &n,
        "rwx wb 0x0 0x4000 vm.0 0x0\nrwx wb 0x8000 0xc000 vm.0 0x8000\n",
    );
    ok(&mut c, &n, "r-- wb 0x3000 0x9000 vm.0 0xa000\n");
    assert_eq!(
        c.read_text(&m),
        "rwx wb 0x0 0x3000 vm.0 0x0\n\
         r-- wb 0x3000 0x9000 vm.0 0xa000\n\
         rwx wb 0x9000 0xc000 vm.0 0x9000\n"
    );
}

#[test]
fn line_errors_change_nothing_after_them() {
    let (mut c, _ctl, n) = setup();
    for (line, e) in [
        ("rwx wb 0x0 0x1000 vm.0\n", "number of fields wrong"),
        ("rwx wb 0x0\n", "number of fields wrong"),
        ("rwx wb 0x0 0x1000\n", "number of fields wrong"),
        ("rwxr wb 0x0 0x1000 vm.0 0x0\n", "invalid access field"),
        ("rrw wb 0x0 0x1000 vm.0 0x0\n", "invalid access field"),
        ("rwq wb 0x0 0x1000 vm.0 0x0\n", "invalid access field"),
        ("rwx zz 0x0 0x1000 vm.0 0x0\n", "invalid memory type"),
        ("rwx w 0x0 0x1000 vm.0 0x0\n", "invalid memory type"),
        ("rwx wbb 0x0 0x1000 vm.0 0x0\n", "invalid memory type"),
        ("rwx wb!! 0x0 0x1000 vm.0 0x0\n", "invalid memory type"),
        (
            "rwx wb 0x10 0x1000 vm.0 0x0\n",
            "invalid low guest physical address",
        ),
        (
            "rwx wb 1x 0x1000 vm.0 0x0\n",
            "invalid low guest physical address",
        ),
        (
            "rwx wb 0x1000000000000 0x1000 vm.0 0x0\n",
            "invalid low guest physical address",
        ),
        (
            "rwx wb 0x1000 0x1000 vm.0 0x0\n",
            "invalid high guest physical address",
        ),
        (
            "rwx wb 0x2000 0x1000 vm.0 0x0\n",
            "invalid high guest physical address",
        ),
        (
            "rwx wb 0x0 0x1001 vm.0 0x0\n",
            "invalid high guest physical address",
        ),
        ("rwx wb 0x0 0x1000 nosuch 0x0\n", "no such segment"),
        ("rwx wb 0x0 0x11000 vm.0 0x0\n", "out of bounds"),
        ("rwx wb 0x0 0x1000 vm.0 0x10\n", "invalid offset"),
        ("rwx wb 0x0 0x2000 vm.0 0xf000\n", "out of bounds"),
    ] {
        assert_eq!(map(&mut c, &n, line), err(e), "{line}");
    }
    // The lines before a bad one are applied; nothing after it.
    assert_eq!(
        map(
            &mut c,
            &n,
            "rwx wb 0x0 0x1000 vm.0 0x0\nbad\nrwx wb 0x5000 0x6000 vm.0 0x0\n"
        ),
        err("number of fields wrong")
    );
    assert_eq!(
        c.read_text(&format!("vmx/{n}/map")),
        "rwx wb 0x0 0x1000 vm.0 0x0\n"
    );
    // Failed lines left no references behind: the named entry and one mapping.
    assert_eq!(c.ns.segment_refs("vm.0"), 2);
}

#[test]
fn otrunc_clears_and_refcounts_follow_mappings() {
    let (mut c, _ctl, n) = setup();
    assert_eq!(c.ns.segment_refs("vm.0"), 1);
    ok(
        &mut c,
        &n,
        "rwx wb 0x0 0x1000 vm.0 0x0\nrwx wb 0x2000 0x3000 vm.0 0x5000\nr-- wb 0x4000 0x5000 vm.0 0x0\n",
    );
    assert_eq!(c.ns.segment_refs("vm.0"), 4);
    let free_mapped = c.ns.hw().frames_free();
    let fid = c
        .open_path(&format!("vmx/{n}/map"), om::WRITE | om::TRUNC)
        .unwrap();
    assert_eq!(c.ns.segment_refs("vm.0"), 1);
    assert_eq!(c.read_text(&format!("vmx/{n}/map")), "");
    assert_eq!(ept(&mut c, 0x0), None);
    // The EPT tables went back.
    assert_eq!(c.ns.hw().frames_free(), free_mapped + 3);
    assert_eq!(
        c.write(fid, 0, b"rwx wb 0x0 0x1000 vm.0 0x0\n"),
        R::Count(27)
    );
    assert_eq!(c.ns.segment_refs("vm.0"), 2);
}

#[test]
fn segment_lives_while_mapped_and_quit_frees_everything() {
    let mut c = Client::new();
    let start = c.ns.hw().frames_free();
    c.segment("vm.0", 0x4000);
    assert_eq!(c.ns.hw().frames_free(), start - 4);
    let (ctl, n) = c.new_vm();
    ok(
        &mut c,
        &n,
        "rwx wb 0x0 0x4000 vm.0 0x0\nrwx wb 0x100000 0x101000 vm.0 0x0\n",
    );
    // Removing the segment's name keeps its memory while a VM maps it.
    let seg = c.fid();
    c.walk(0, seg, &["segment", "vm.0"]);
    assert_eq!(c.remove(seg), R::Ok);
    assert_eq!(c.ls("segment"), Vec::<String>::new());
    assert_eq!(c.read_text(&format!("vmx/{n}/map")).lines().count(), 2);
    assert!(c.ns.hw().frames_free() < start - 4);
    // quit: VMCS, EPT, MSR pages and the last segment references all go, and VMX is off.
    assert_eq!(c.write(ctl, 0, b"quit"), R::Count(4));
    assert_eq!(c.ns.hw().frames_free(), start);
    assert!(!c.ns.hw().vmx_on());
    assert_eq!(c.ls("vmx"), vec!["clone"]);
}

#[test]
fn segment_files() {
    let mut c = Client::new();
    let dir = c.fid();
    c.walk(0, dir, &["segment"]);
    assert_eq!(
        c.create(dir, "plain", 0o644, om::READ),
        err("bad arg in system call")
    );
    assert!(matches!(
        c.create(dir, "s", dm::DIR | 0o777, om::READ),
        R::Open(_)
    ));
    c.clunk(dir);
    let dir = c.fid();
    c.walk(0, dir, &["segment"]);
    assert_eq!(
        c.create(dir, "s", dm::DIR | 0o777, om::READ),
        err("file already exists")
    );
    assert_eq!(c.ls("segment"), vec!["s"]);
    assert_eq!(c.ls("segment/s"), vec!["ctl", "data"]);
    // Unsized: no data yet.
    assert_eq!(
        c.open_path("segment/s/data", om::READ),
        Err(err("segment not yet allocated"))
    );
    let ctl = c.open_path("segment/s/ctl", om::RDWR).unwrap();
    assert_eq!(c.read(ctl, 0, 100), err("segment not yet allocated"));
    for (w, e) in [
        ("", "bad process or channel control request"),
        ("size 100", "bad process or channel control request"),
        ("va 0x1000", "bad arg in system call"),
        ("va 0 0x1000", "bad arg in system call"),
        ("va 0x10000000 0", "bad arg in system call"),
        ("va 0x7ffffffff000 0x2000", "bad arg in system call"),
        (
            "va 0x10000000 0x100000000000",
            "virtual memory allocation failed",
        ),
    ] {
        assert_eq!(c.write(ctl, 0, w.as_bytes()), err(e), "{w}");
    }
    // The address only names it; the length rounds up to pages.
    assert_eq!(
        c.write(ctl, 0, b"va 0x10000800 0x2001 sticky\n"),
        R::Count(28)
    );
    assert_eq!(
        c.read(ctl, 0, 100),
        R::Data(b"va 0x10000000 0x3000\n".to_vec())
    );
    assert_eq!(
        c.write(ctl, 0, b"va 0x20000000 0x1000"),
        err("already has a virtual address")
    );
    let data = c.open_path("segment/s/data", om::RDWR).unwrap();
    assert_eq!(
        c.stat(data),
        R::Stat("data".into(), 0x3000, 0o660, OWNER.into())
    );
    assert_eq!(c.read(data, 0x1000, 4), R::Data(vec![0; 4]));
    assert_eq!(c.write(data, 0xffe, b"abcd"), R::Count(4));
    assert_eq!(c.read(data, 0xffe, 4), R::Data(b"abcd".to_vec()));
    // Past the end: short reads, EOF, and writes refused whole.
    assert_eq!(c.read(data, 0x2ffe, 100), R::Data(vec![0; 2]));
    assert_eq!(c.read(data, 0x3000, 100), R::Data(vec![]));
    assert_eq!(
        c.write(data, 0x2ffe, b"abcd"),
        err("bad arg in system call")
    );
    assert_eq!(c.write(data, 0x3000, b"a"), err("bad arg in system call"));
    assert_eq!(c.read(data, 0x2ffe, 2), R::Data(vec![0; 2]));
    // Another user may not remove it.
    c.attach(50, "glenda", "segment");
    let g = c.fid();
    c.walk(50, g, &["s"]);
    assert_eq!(c.remove(g), err("permission denied"));
    let s = c.fid();
    c.walk(0, s, &["segment", "s"]);
    let before = c.ns.hw().frames_free();
    assert_eq!(c.remove(s), R::Ok);
    assert_eq!(c.ns.hw().frames_free(), before + 3);
    assert_eq!(c.read(data, 0, 1), err("global segment disappeared"));
}

#[test]
fn map_needs_segment_permission_and_size() {
    let mut c = Client::new();
    c.attach(50, "glenda", "segment");
    let d = c.fid();
    c.walk(50, d, &[]);
    assert!(matches!(
        c.create(d, "theirs", dm::DIR | 0o777, om::READ),
        R::Open(_)
    ));
    let (_ctl, n) = c.new_vm();
    assert_eq!(
        map(&mut c, &n, "rwx wb 0x0 0x1000 theirs 0x0\n"),
        err("permission denied")
    );
    c.segment("mine", 0x1000);
    let dir = c.fid();
    c.walk(0, dir, &["segment"]);
    assert!(matches!(
        c.create(dir, "unsized", dm::DIR | 0o777, om::READ),
        R::Open(_)
    ));
    assert_eq!(
        map(&mut c, &n, "rwx wb 0x0 0x1000 unsized 0x0\n"),
        err("global segment not assigned a virtual address")
    );
}

/// Opens `segment/NAME/ctl` with ORCLOSE as `uname` (attached on fid `root`), sizes the
/// segment to `len` bytes; the ctl fid.
fn rclose_segment(c: &mut Client, root: u32, name: &str, len: u64) -> u32 {
    let dir = c.fid();
    c.walk(root, dir, &["segment"]);
    assert!(matches!(
        c.create(dir, name, dm::DIR | 0o770, om::READ),
        R::Open(_)
    ));
    c.clunk(dir);
    let ctl = c
        .open_from(root, &format!("segment/{name}/ctl"), om::RDWR | om::RCLOSE)
        .unwrap();
    let va = format!("va 0x10000000 {len:#x}");
    assert_eq!(c.write(ctl, 0, va.as_bytes()), R::Count(va.len() as u32));
    ctl
}

#[test]
fn segment_opened_rclose_goes_at_clunk() {
    let mut c = Client::new();
    let start = c.ns.hw().frames_free();
    let ctl = rclose_segment(&mut c, 0, "g", 0x3000);
    assert_eq!(c.ns.hw().frames_free(), start - 3);
    assert_eq!(c.write_path("segment/g/data", b"guest"), R::Count(5));
    // Other fids come and go without ending it.
    assert_eq!(c.read_text("segment/g/ctl"), "va 0x10000000 0x3000\n");
    assert_eq!(c.ls("segment"), vec!["g"]);
    assert_eq!(c.clunk(ctl), R::Ok);
    assert_eq!(c.ls("segment"), Vec::<String>::new());
    assert_eq!(c.ns.hw().frames_free(), start);
    assert!(c.read_text("status").contains("segments 0\n"));
    // Its name is free again.
    let _ctl = rclose_segment(&mut c, 0, "g", 0x1000);
    // A session that ends (Tversion clunks every fid) ends it too.
    c.rpc(
        protocol::NOTAG,
        protocol::Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
    );
    assert!(matches!(c.attach(0, OWNER, ""), R::Open(_)));
    assert_eq!(c.ls("segment"), Vec::<String>::new());
    assert_eq!(c.ns.hw().frames_free(), start);
}

#[test]
fn segment_opened_rclose_stays_mapped_until_the_vm_ends() {
    let mut c = Client::new();
    let start = c.ns.hw().frames_free();
    let seg = rclose_segment(&mut c, 0, "vm.0", 0x4000);
    let (_vm, n) = c.new_vm();
    ok(&mut c, &n, "rwx wb 0x0 0x4000 vm.0 0x0\n");
    assert_eq!(c.ns.segment_refs("vm.0"), 2);
    // The tool dies: its segment's name goes, the memory stays while the VM maps it.
    assert_eq!(c.clunk(seg), R::Ok);
    assert_eq!(c.ls("segment"), Vec::<String>::new());
    assert_eq!(c.read_text(&format!("vmx/{n}/map")).lines().count(), 1);
    assert!(c.ns.hw().frames_free() < start - 4);
    // ... and goes with the VM.
    let ctl = c.fid();
    c.walk(0, ctl, &["vmx", &n, "ctl"]);
    assert_eq!(c.remove(ctl), R::Ok);
    assert_eq!(c.ns.hw().frames_free(), start);
}

#[test]
fn segment_rclose_and_ctl_remove_need_the_right_to_remove() {
    let mut c = Client::new();
    c.segment("s", 0x1000);
    // eve's segment is 0660: let the world write its ctl so that glenda may open it.
    // ORCLOSE still needs the right to remove the segment.
    let mut chmod = protocol::Dir::DONT_TOUCH;
    chmod.mode = 0o666;
    assert_eq!(c.wstat_path("segment/s/ctl", chmod), R::Ok);
    c.attach(50, "glenda", "");
    assert_eq!(
        c.open_from(50, "segment/s/ctl", om::RDWR | om::RCLOSE),
        Err(err("permission denied"))
    );
    let plain = c.open_from(50, "segment/s/ctl", om::READ).unwrap();
    let g = c.fid();
    c.walk(50, g, &["segment", "s", "ctl"]);
    assert_eq!(c.remove(g), err("permission denied"));
    c.clunk(plain);
    assert_eq!(c.ls("segment"), vec!["s"]);
    // Her own segment she may tie to her fid.
    let ctl = rclose_segment(&mut c, 50, "mine", 0x1000);
    assert_eq!(c.clunk(ctl), R::Ok);
    assert_eq!(c.ls("segment"), vec!["s"]);
    // A plain remove of ctl removes the segment, as removing a VM's ctl ends the VM.
    let f = c.fid();
    c.walk(0, f, &["segment", "s", "ctl"]);
    assert_eq!(c.remove(f), R::Ok);
    assert_eq!(c.ls("segment"), Vec::<String>::new());
}
