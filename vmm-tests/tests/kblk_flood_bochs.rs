//! A guest that floods its in-kernel disks (devvmx's `pci blk`) under Bochs (VT-x): the
//! kblk_bochs guest's setup, then forever and without an exit: once its segment disk
//! (disk 0) has used the last ones, make 128 more 64 KiB reads available (the available
//! index moves on by a whole ring, every slot naming the same chain; a driver may not
//! have more outstanding than its ring holds, and the kernel serves a notify a budget at
//! a time), notify it whether or not, and notify its queue disk (disk 1), whose ring
//! holds 128 reads that nobody serves. While it runs, a second client's Tstat
//! round trips keep answering (each timed and printed; all must complete) and the
//! segment disk's used index keeps moving; the queue disk holds exactly its 128 requests
//! in `blkq` and no more; one request more breaks it, with its reason; after the VM and
//! segments are gone `memfree` is back.

mod kblk_common;

use kblk_common::{
    avail_idx_at, header, machine, nothing_left, segment, text, tstats, used_idx, used_idx_at, vm,
    OWNER, QUEUE0, QUEUE1, SETUP, STATS,
};
use ninep_client::om;
use std::time::{Duration, Instant};
use virtio::blk::T_IN;
use virtio::testing::{Driver, Ram};
use vmm_tests::guests::LOAD;
use vmm_tests::status::num as field;

const RAM: u64 = 0x20000;
const DISK: u64 = 0x10000;

/// After [`SETUP`], forever: the segment disk's available index on by 128 if its used
/// index caught up with it, notify it, notify the queue disk, count the round at
/// [`ROUNDS`].
const FLOOD: &[u8] = &[
    // loop:
    0x66, 0xa1, 0x02, 0x50, 0x00, 0x00, // mov ax, [0x5002]
    0x66, 0x3b, 0x05, 0x02, 0x48, 0x00, 0x00, // cmp ax, [0x4802]
    0x75, 0x09, // jne notify
    0x66, 0x81, 0x05, 0x02, 0x48, 0x00, 0x00, 0x80, 0x00, // add word [0x4802], 128
    // notify:
    0x66, 0xba, 0x10, 0xc0, // mov dx, 0xc010
    0x31, 0xc0, // xor eax, eax
    0x66, 0xef, // out dx, ax
    0x66, 0xba, 0x50, 0xc0, // mov dx, 0xc050
    0x66, 0xef, // out dx, ax
    0xff, 0x05, 0xf0, 0x7f, 0x00, 0x00, // inc dword [0x7ff0]
    0xeb, 0xd2, // jmp loop
];
/// FLOOD's count of its rounds.
const ROUNDS: u64 = 0x7ff0;

#[test]
fn a_flooding_guest_does_not_stop_9p() {
    assert_eq!(avail_idx_at(QUEUE0), 0x4802, "FLOOD's add");
    assert_eq!(used_idx_at(QUEUE0), 0x5002, "FLOOD's mov");
    let m = machine();
    let c = m.client(OWNER, "");
    let before = field(&vmm_tests::status::read(&c), "memfree");
    let ramdata = segment(&c, "flram", RAM);
    segment(&c, "fldisk", DISK)
        .write_all_at(0, &vec![0x5a; DISK as usize])
        .unwrap();

    let mut ram = Ram::new(RAM as usize);
    ram.b[LOAD as usize..][..SETUP.len() + FLOOD.len()].copy_from_slice(&[SETUP, FLOOD].concat());
    // Disk 0: every slot of the available ring is the chain at descriptor 0, a 64 KiB
    // read; the guest moves the index.
    let mut d0 = Driver::new(128, QUEUE0);
    header(&mut ram, 0x8000, T_IN, 0);
    let head = d0.offer(
        &mut ram,
        &[
            (0x8000, 16, false),
            (0x10000, 0x10000, true),
            (0x8100, 1, true),
        ],
    );
    for _ in 1..128 {
        d0.publish(&mut ram, head);
    }
    d0.set_avail_idx(&mut ram, 0);
    // Disk 1: 128 reads of sector 1 available, the same chain each.
    let mut d1 = Driver::new(128, QUEUE1);
    header(&mut ram, 0x8010, T_IN, 1);
    let head = d1.offer(
        &mut ram,
        &[(0x8010, 16, false), (0x9000, 512, true), (0x8101, 1, true)],
    );
    for _ in 1..128 {
        d1.publish(&mut ram, head);
    }
    ramdata.write_all_at(0, &ram.b[..0x10000]).unwrap();

    // Not ORCLOSE: the VM outlives this connection.
    let (ctl, n) = vm(&c, om::RDWR, "flram", RAM);
    for cmd in [
        "devices pic pci",
        "pci blk seg fldisk ro",
        "pci blk queue 65536",
    ] {
        ctl.write_str(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    tstats(
        &c,
        &format!("vmx/{n}/status"),
        "before the guest runs",
        STATS,
    );
    ctl.write_str("go").unwrap();
    drop((ctl, ramdata, c));

    // A second client, while the guest floods.
    let c = m.client(OWNER, "");
    let path = |f: &str| format!("vmx/{n}/{f}");
    let ramdata = c.open("segment/flram/data", om::RDWR).unwrap();
    let rounds = |f: &ninep_client::File| {
        let b = f.read_at(ROUNDS, 4).unwrap();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    let (first, served) = (rounds(&ramdata), used_idx(&ramdata, QUEUE0));
    tstats(&c, &path("status"), "while the guest floods", STATS);
    assert_eq!(text(&c, &path("status")).trim(), "running");
    let (last, now) = (rounds(&ramdata), used_idx(&ramdata, QUEUE0));
    println!(
        "the guest made {} rounds (notifies of both disks) and the segment disk ended {} reads of 64 KiB meanwhile",
        last.wrapping_sub(first),
        now.wrapping_sub(served)
    );
    assert!(last != first && now != served, "the guest did not flood");

    // The queue disk holds its 128 requests, no more.
    let blkq = c.open(&path("blkq"), om::RDWR).unwrap();
    let mut got = String::new();
    while got.lines().count() < 128 {
        let mut p = c.start_read(&blkq, 0, 8192).unwrap();
        let b = p
            .wait_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("the queue disk's requests");
        got.push_str(std::str::from_utf8(&b).unwrap());
    }
    for (i, l) in got.lines().enumerate() {
        assert_eq!(l, format!("1 {} r 512 512", i + 1));
    }
    assert_eq!(got.lines().count(), 128);
    let p = c.start_read(&blkq, 0, 8192).unwrap();
    let mut p = p;
    assert_eq!(
        p.wait_timeout(Duration::from_secs(2)).unwrap(),
        None,
        "a 129th request"
    );
    p.flush().unwrap();
    let blk = text(&c, &path("blk"));
    assert_eq!(
        blk,
        "0 seg fldisk ro 128 0xc000 10 ok\n1 queue - rw 128 0xc040 11 ok\n"
    );
    // One more available while 128 are outstanding breaks the queue disk.
    ramdata
        .write_all_at(avail_idx_at(QUEUE1), &129u16.to_le_bytes())
        .unwrap();
    let start = Instant::now();
    let blk = loop {
        let blk = text(&c, &path("blk"));
        if blk.contains("broken") || start.elapsed() > Duration::from_secs(20) {
            break blk;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("{}", blk.trim_end());
    assert!(
        blk.ends_with("11 broken 'more than 128 requests outstanding (descriptor 0 made available again before it was used)'\n"),
        "{blk}"
    );
    assert!(
        blk.starts_with("0 seg fldisk ro 128 0xc000 10 ok\n"),
        "{blk}"
    );

    c.open(&path("ctl"), om::WRITE)
        .and_then(|f| f.write_str("quit"))
        .unwrap();
    drop((blkq, ramdata));
    let start = Instant::now();
    while !vmm_tests::status::read(&c).contains("vms 0") {
        assert!(start.elapsed() < Duration::from_secs(20), "the VM stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    nothing_left(&c, &["flram", "fldisk"], before);
    assert!(!m.log().contains("kernel panic"), "{}", m.diagnostics());
}
