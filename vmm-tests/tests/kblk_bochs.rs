//! virtio-blk in the kernel (devvmx's `pci blk`) on VT-x under Bochs (or QEMU on KVM,
//! `HV_ACCEL`): a tiny flat 32-bit guest turns on I/O decoding for two in-kernel disks,
//! gives each its queue and then, in a loop, notifies both and makes one exit to the
//! client (`out 0x99`). The test plays the rest of the driver: its rings and requests
//! are written into the guest's RAM segment over 9P with the virtio crate's test driver.
//! A segment disk's requests are served in the kernel before the exit (and `blkdirty`
//! lists the page written); a queue disk's come to the client through `blkq`, which
//! python-9p (an independent client, plain 9P reads and writes) reads and completes.
//! Nothing is left after the VM and segments.

mod kblk_common;

use kblk_common::{
    header, machine, nothing_left, segment, text, vm, NOTIFY_AND_EXIT, OWNER, SETUP,
};
use ninep_client::om;
use std::time::Duration;
use virtio::blk::{S_OK, T_IN, T_OUT};
use virtio::testing::{Driver, Ram};
use vmm_tests::emu::python;
use vmm_tests::guests::LOAD;
use vmm_tests::status::num as field;

const SEG: u64 = 0x10000;

/// python-9p serves VM N's queue disk: reads the two requests (the write's data with it)
/// and completes them in one write, the read's data included.
const PY_BLKQ: &str = r#"
import sys
import py9p.client as client
c = client.Client.connect_unix(sys.argv[1], msize=8192)
c.transport.settimeout(60)
c.negotiate()
c.attach(0, uname="eve", aname="")
c.walk(0, 1, ["vmx", sys.argv[2], "blkq"])
c.open(1, 2)
want = b"1 1 r 1536 512\n1 2 w 2560 512\n" + b"\x42" * 512
got = b""
while len(got) < len(want):
    got += c.read(1, 8192)
assert got == want, got
done = b"1 1 ok 512\n" + b"\x3c" * 512 + b"1 2 ok 0\n"
assert c.write(1, done) == len(done)
c.clunk(1)
print("python blkq ok")
"#;

/// The next wait line, which must be the guest's `out 0x99`; the pc after it.
fn exit_99(wait: &ninep_client::File) -> u64 {
    let line = String::from_utf8(wait.read_at(0, 512).expect("wait")).unwrap();
    eprintln!("{}", line.trim_end());
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[..2], ["io", "0x990040"], "{line}");
    let get = |k: &str| {
        let i = f.iter().position(|w| *w == k).unwrap();
        u64::from_str_radix(f[i + 1].trim_start_matches("0x"), 16).unwrap()
    };
    get("pc") + get("ilen")
}

#[test]
fn a_segment_disk_and_a_queue_disk_served_in_the_kernel() {
    let m = machine();
    let client = || {
        let c = m.client(OWNER, "");
        c.set_timeout(Some(Duration::from_secs(120)));
        c
    };
    let c = client();
    let before = field(&vmm_tests::status::read(&c), "memfree");
    let ramdata = segment(&c, "kbram", SEG);
    ramdata
        .write_all_at(LOAD, &[SETUP, NOTIFY_AND_EXIT].concat())
        .unwrap();
    let image: Vec<u8> = (0..0x8000u32).map(|i| (i / 512) as u8 ^ i as u8).collect();
    let diskdata = segment(&c, "kbdisk", image.len() as u64);
    diskdata.write_all_at(0, &image).unwrap();

    // Not ORCLOSE: the VM outlives this connection, while python-9p has the link.
    let (ctl, n) = vm(&c, om::RDWR, "kbram", SEG);
    let wait = c.open(&format!("vmx/{n}/wait"), om::READ).unwrap();
    for cmd in [
        "devices pic pci",
        "pci blk seg kbdisk",
        "pci blk queue 65536",
    ] {
        ctl.write_str(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    assert_eq!(
        text(&c, &format!("vmx/{n}/blk")),
        "0 seg kbdisk rw 64 0xc000 10 ok\n1 queue - rw 128 0xc040 11 ok\n"
    );

    // Disk 0 (queue at 0x4000): read sectors 2-3, write sector 20. Disk 1 (0x6000): read
    // sector 3, write sector 5.
    let mut ram = Ram::new(SEG as usize);
    let (mut d0, mut d1) = (Driver::new(128, 4), Driver::new(128, 6));
    header(&mut ram, 0x8000, T_IN, 2);
    d0.offer(
        &mut ram,
        &[(0x8000, 16, false), (0x9000, 1024, true), (0x8100, 1, true)],
    );
    header(&mut ram, 0x8010, T_OUT, 20);
    ram.b[0xa000..0xa200].fill(0xee);
    d0.offer(
        &mut ram,
        &[(0x8010, 16, false), (0xa000, 512, false), (0x8101, 1, true)],
    );
    header(&mut ram, 0x8020, T_IN, 3);
    d1.offer(
        &mut ram,
        &[(0x8020, 16, false), (0xb000, 512, true), (0x8102, 1, true)],
    );
    header(&mut ram, 0x8030, T_OUT, 5);
    ram.b[0xc000..0xc200].fill(0x42);
    d1.offer(
        &mut ram,
        &[(0x8030, 16, false), (0xc000, 512, false), (0x8103, 1, true)],
    );
    ram.b[0x8100..0x8104].fill(0xff);
    for (a, len) in [
        (0x4000, 0x1500),
        (0x6000, 0x1500),
        (0x8000, 0x200),
        (0xa000, 0x200),
        (0xc000, 0x200),
    ] {
        ramdata.write_all_at(a as u64, &ram.b[a..a + len]).unwrap();
    }

    ctl.write_str("go").unwrap();
    let next = exit_99(&wait);
    // The segment disk was served before the guest's exit.
    let st = ramdata.read_at(0x8100, 4).unwrap();
    assert_eq!(st[..2], [S_OK, S_OK], "{st:?}");
    assert_eq!(ramdata.read_at(0x9000, 1024).unwrap(), image[1024..2048]);
    assert_eq!(diskdata.read_at(20 * 512, 512).unwrap(), vec![0xee; 512]);
    assert_eq!(text(&c, &format!("vmx/{n}/blkdirty")), "0 0x2000 0x1000\n");
    // The queue disk's requests wait for python-9p (one client at a time on the link).
    drop((wait, ctl, ramdata, diskdata, c));
    let out = python(PY_BLKQ, &[&m.uart_path().display().to_string(), &n]);
    assert!(out.contains("python blkq ok"), "{out}");
    let c = client();
    let ctl = c.open(&format!("vmx/{n}/ctl"), om::RDWR).unwrap();
    let wait = c.open(&format!("vmx/{n}/wait"), om::READ).unwrap();
    let ramdata = c.open("segment/kbram/data", om::RDWR).unwrap();
    assert_eq!(ramdata.read_at(0x8102, 2).unwrap(), [S_OK, S_OK]);
    assert_eq!(ramdata.read_at(0xb000, 512).unwrap(), vec![0x3c; 512]);
    let used = ramdata.read_at(0x7002, 2).unwrap();
    assert_eq!(
        u16::from_le_bytes([used[0], used[1]]),
        2,
        "disk 1's used index"
    );
    // The guest runs on: its next notifies find nothing new.
    ctl.write_str(&format!("go pc={next:#x};")).unwrap();
    exit_99(&wait);
    assert!(text(&c, &format!("vmx/{n}/blk")).ends_with("11 ok\n"));

    ctl.write_str("quit").unwrap();
    drop((wait, ctl, ramdata));
    nothing_left(&c, &["kbram", "kbdisk"], before);
}
