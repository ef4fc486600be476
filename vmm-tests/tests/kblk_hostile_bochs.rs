//! Hostile rings on an in-kernel disk (devvmx's `pci blk`) under Bochs (VT-x): the test
//! guest of kblk_bochs sets up two segment disks and notifies both; the test writes the
//! rings into its RAM: disk 0's is broken in one way per VM (a descriptor loop, an
//! available index far ahead, a descriptor outside the table, an indirect descriptor, a
//! buffer past mapped memory, a request without a status byte), disk 1's holds a good read.
//! Each breaks only disk 0, with its reason in `blk`, touching none of its memory, while
//! disk 1 serves its read; after the VMs and segments are gone `memfree` is back.

mod kblk_common;

use kblk_common::{
    header, machine, nothing_left, segment, text, used_idx, vm, NOTIFY_AND_EXIT, OWNER, QUEUE0,
    QUEUE1, SETUP,
};
use ninep_client::om;
use std::time::Duration;
use virtio::blk::{S_OK, T_IN};
use virtio::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use virtio::testing::{Driver, Ram};
use vmm_tests::guests::LOAD;
use vmm_tests::status::num as field;

const RAM: u64 = 0x10000;
/// Where disk 0's request would have put its status byte and data: never written.
const STATUS0: usize = 0x8100;
const DATA0: usize = 0x9000;

/// Disk 0's ring, broken one way; the words its reason must hold.
type Case = (&'static str, fn(&mut Driver, &mut Ram), &'static str);

const CASES: &[Case] = &[
    (
        "a descriptor loop",
        |d, ram| {
            header(ram, 0x8000, T_IN, 0);
            d.desc(ram, 0, 0x8000, 16, DESC_F_NEXT, 1);
            d.desc(ram, 1, DATA0 as u64, 512, DESC_F_NEXT | DESC_F_WRITE, 0);
            d.publish(ram, 0);
        },
        "loops",
    ),
    (
        "an available index far ahead",
        |d, ram| {
            d.offer(ram, &[(0x8000, 16, false), (STATUS0 as u64, 1, true)]);
            d.set_avail_idx(ram, 1000);
        },
        "is 1000 entries ahead of 0",
    ),
    (
        "a descriptor outside the table",
        |d, ram| d.publish(ram, 200),
        "descriptor 200 is outside the table of 128",
    ),
    (
        "an indirect descriptor",
        |d, ram| {
            d.desc(ram, 0, 0x8000, 48, DESC_F_INDIRECT, 0);
            d.publish(ram, 0);
        },
        "indirect",
    ),
    (
        "a buffer past mapped memory",
        |d, ram| {
            header(ram, 0x8000, T_IN, 0);
            d.offer(
                ram,
                &[
                    (0x8000, 16, false),
                    (0xf000, 0x2000, true),
                    (STATUS0 as u64, 1, true),
                ],
            );
        },
        "buffer 0xf000+0x2000 lies past the end of guest memory (0x10000)",
    ),
    (
        "a request without a status byte",
        |d, ram| {
            header(ram, 0x8000, T_IN, 0);
            d.offer(ram, &[(0x8000, 16, false)]);
        },
        "has 16 readable and 0 writable bytes",
    ),
];

#[test]
fn hostile_rings_break_only_their_disk() {
    let m = machine();
    let c = m.client(OWNER, "");
    c.set_timeout(Some(Duration::from_secs(120)));
    let before = field(&vmm_tests::status::read(&c), "memfree");
    let ramdata = segment(&c, "hram", RAM);
    let image: Vec<u8> = (0..0x8000u32).map(|i| (i / 512) as u8 ^ i as u8).collect();
    for d in ["hd0", "hd1"] {
        segment(&c, d, image.len() as u64)
            .write_all_at(0, &image)
            .unwrap();
    }
    for (what, break_ring, reason) in CASES {
        let mut ram = Ram::new(RAM as usize);
        ram.b[LOAD as usize..][..SETUP.len() + NOTIFY_AND_EXIT.len()]
            .copy_from_slice(&[SETUP, NOTIFY_AND_EXIT].concat());
        ram.b[STATUS0] = 0xff;
        ram.b[DATA0..DATA0 + 512].fill(0xdd);
        let mut d0 = Driver::new(128, QUEUE0);
        break_ring(&mut d0, &mut ram);
        // Disk 1: read sector 1.
        let mut d1 = Driver::new(128, QUEUE1);
        header(&mut ram, 0x8020, T_IN, 1);
        ram.b[0x8102] = 0xff;
        d1.offer(
            &mut ram,
            &[(0x8020, 16, false), (0xb000, 512, true), (0x8102, 1, true)],
        );
        ramdata.write_all_at(0, &ram.b).unwrap();

        let (ctl, n) = vm(&c, om::RDWR | om::RCLOSE, "hram", RAM);
        let wait = c.open(&format!("vmx/{n}/wait"), om::READ).unwrap();
        for cmd in [
            "devices pic pci",
            "pci blk seg hd0",
            "pci blk seg hd1",
            "go",
        ] {
            ctl.write_str(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
        let line = String::from_utf8(wait.read_at(0, 512).unwrap()).unwrap();
        assert!(line.starts_with("io 0x990040"), "{what}: {line}");

        let blk = text(&c, &format!("vmx/{n}/blk"));
        println!("{what}: {}", blk.lines().next().unwrap_or(""));
        let lines: Vec<&str> = blk.lines().collect();
        assert!(
            lines[0].starts_with("0 seg hd0 rw 64 0xc000 10 broken '") && lines[0].contains(reason),
            "{what}: {blk}"
        );
        assert_eq!(lines[1], "1 seg hd1 rw 64 0xc040 11 ok", "{what}");
        // Disk 0 touched nothing; disk 1 served its read.
        assert_eq!(
            ramdata.read_at(STATUS0 as u64, 1).unwrap(),
            [0xff],
            "{what}"
        );
        assert_eq!(
            ramdata.read_at(DATA0 as u64, 512).unwrap(),
            vec![0xdd; 512],
            "{what}"
        );
        assert_eq!(used_idx(&ramdata, QUEUE0), 0, "{what}");
        assert_eq!(ramdata.read_at(0x8102, 1).unwrap(), [S_OK], "{what}");
        assert_eq!(ramdata.read_at(0xb000, 512).unwrap(), image[512..1024]);
        assert_eq!(used_idx(&ramdata, QUEUE1), 1, "{what}");
        drop(wait);
        ctl.clunk().unwrap();
    }
    drop(ramdata);
    nothing_left(&c, &["hram", "hd0", "hd1"], before);
    assert!(!m.log().contains("kernel panic"), "{}", m.diagnostics());
}
