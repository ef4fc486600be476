//! virtio-blk in the kernel through 9P over TestHw: `pci blk` after `devices pic pci`,
//! the guest's driver played by the test (its ring laid out with the virtio crate's test
//! driver and uploaded into the guest's RAM segment, its port I/O as TestHw exits). A
//! segment disk serves a notify with no exit to the client and lists the pages written
//! in `blkdirty`; a queue disk's requests are read from `blkq` and completed by writing
//! it; a hostile ring breaks only its device, with its reason in `blk`, until the driver
//! resets it; every frame comes back when the VM and segments go.

mod common;
use common::*;
use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use protocol::om;
use virtio::blk::{S_IOERR, S_OK, T_IN, T_OUT};
use virtio::legacy::{R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_STATUS};
use virtio::testing::{Driver, Ram};

const RAM: usize = 0x10000;
/// The queue's page frame number (the ring at 0x4000, its used ring at 0x5000).
const PFN: u32 = 4;
/// Where the kernel put the disk's BAR (the first free block from 0xc000).
const BAR: u16 = 0xc000;

fn upload(c: &mut Client, seg: &str, off: u64, data: &[u8]) {
    let fid = c
        .open_path(&format!("segment/{seg}/data"), om::WRITE)
        .unwrap();
    for (i, chunk) in data.chunks(4096).enumerate() {
        let at = off + (i * 4096) as u64;
        assert_eq!(c.write(fid, at, chunk), R::Count(chunk.len() as u32));
    }
    c.clunk(fid);
}

fn download(c: &mut Client, seg: &str, off: u64, len: usize) -> Vec<u8> {
    let fid = c
        .open_path(&format!("segment/{seg}/data"), om::READ)
        .unwrap();
    let mut out = Vec::new();
    while out.len() < len {
        let n = (len - out.len()).min(4096) as u32;
        match c.read(fid, off + out.len() as u64, n) {
            R::Data(d) => out.extend(d),
            r => panic!("{r:?}"),
        }
    }
    c.clunk(fid);
    out
}

fn disk_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 512) as u8 ^ (i as u8)).collect()
}

/// A VM with 64 KiB of RAM (segment `ram`) at 0 and the in-kernel pic and pci; the
/// frames free before it.
fn machine() -> (Client, Vm, usize) {
    machine_on(&[])
}

/// As [`machine`], with VMs on `cpus` (none: the boot CPU runs them).
fn machine_on(cpus: &[usize]) -> (Client, Vm, usize) {
    machine_with(cpus, RAM, 8192 + 24)
}

/// As [`machine_on`], with `ram` bytes of RAM, the session at `msize`.
fn machine_with(cpus: &[usize], ram: usize, msize: u32) -> (Client, Vm, usize) {
    let mut hw = TestHw::new(4096);
    hw.tsc_step = 0;
    for &cpu in cpus {
        hw.ap_vmxon(cpu);
    }
    let free0 = hw.frames_free();
    let mut c = Client::with_hw_msize(hw, msize);
    c.ns.vms_mut().set_cpus(cpus);
    let v = c.vm();
    c.segment("ram", ram as u64);
    let line = format!("rwx wb 0 {ram:#x} ram 0\n");
    assert_eq!(
        c.write_path(&format!("vmx/{}/map", v.n), line.as_bytes()),
        R::Count(line.len() as u32)
    );
    assert_eq!(c.write(v.ctl, 0, b"devices pic pci"), R::Count(15));
    (c, v, free0)
}

/// The VM quits and the segments go: every frame is back.
fn end(mut c: Client, v: &Vm, segs: &[&str], free0: usize) {
    assert_eq!(ctl(&mut c, v, "quit"), R::Count(4));
    for s in segs {
        let d = c.fid();
        c.walk(0, d, &["segment", s]);
        assert_eq!(c.remove(d), R::Ok, "{s}");
    }
    assert_eq!(c.ns.hw().frames_free(), free0);
}

/// A whole file's text, or the error reading it gave.
fn text(c: &mut Client, path: &str) -> Result<String, R> {
    let fid = c.open_path(path, om::READ)?;
    let r = match c.read(fid, 0, 4096) {
        R::Data(d) => Ok(String::from_utf8(d).unwrap()),
        r => Err(r),
    };
    c.clunk(fid);
    r
}

fn ctl(c: &mut Client, v: &Vm, msg: &str) -> R {
    c.write(v.ctl, 0, msg.as_bytes())
}

/// The guest turns I/O decoding on for device 1 and tells the device its queue.
fn setup_exits() -> Vec<Exit> {
    vec![
        Exit::io(0xcf8, 4, false, 0x8000_0804),
        Exit::io(0xcfc, 2, false, 1),
        Exit::io(BAR + R_QUEUE_PFN, 4, false, u64::from(PFN)),
    ]
}

/// The guest notifies the queue, reads the ISR, and then makes an exit for its client.
fn notify_exits() -> Vec<Exit> {
    vec![
        Exit::io(BAR + R_QUEUE_NOTIFY, 2, false, 0),
        Exit::io(BAR + R_ISR, 1, true, 0),
        Exit::new(10),
    ]
}

/// Runs the guest through `exits`; the wait line its client gets, and the ax of each
/// entry (what the guest's ins read).
fn run(c: &mut Client, v: &Vm, exits: Vec<Exit>) -> (String, Vec<u64>) {
    let before = c.ns.hw().entries.len();
    c.ns.hw_mut().exits.extend(exits);
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    let line = match c.read(v.wait, 0, 512) {
        R::Data(d) => String::from_utf8(d).unwrap(),
        r => panic!("{r:?}"),
    };
    let ax = c.ns.hw().entries[before..].iter().map(|e| e.ax).collect();
    (line, ax)
}

fn header(ram: &mut Ram, at: usize, ty: u32, sector: u64) {
    ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
}

#[test]
fn a_segment_disk_is_served_in_the_kernel_and_lists_what_the_guest_wrote() {
    let (mut c, v, free0) = machine();
    c.segment("disk", 0x4000);
    let image = disk_bytes(0x4000);
    upload(&mut c, "disk", 0, &image);
    assert_eq!(
        ctl(&mut c, &v, "pci blk seg nosuch"),
        err("no such segment")
    );
    assert_eq!(ctl(&mut c, &v, "pci blk seg disk"), R::Count(16));
    assert_eq!(c.ns.segment_refs("disk"), 2);
    let blk = format!("vmx/{}/blk", v.n);
    assert_eq!(c.read_text(&blk), "0 seg disk rw 32 0xc000 10 ok\n");

    // A read of sectors 3-4 across two buffers and a write of sector 9 (page 1).
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(128, PFN);
    header(&mut ram, 0x8000, T_IN, 3);
    d.offer(
        &mut ram,
        &[
            (0x8000, 16, false),
            (0x9000, 512, true),
            (0xa000, 512, true),
            (0x8100, 1, true),
        ],
    );
    header(&mut ram, 0xb000, T_OUT, 9);
    ram.b[0xb010..0xb210].fill(0xee);
    d.offer(&mut ram, &[(0xb000, 0x210, false), (0x8101, 1, true)]);
    ram.b[0x8100] = 0xff;
    ram.b[0x8101] = 0xff;
    upload(&mut c, "ram", 0, &ram.b);
    let mut exits = setup_exits();
    exits.extend(notify_exits());
    let (line, ax) = run(&mut c, &v, exits);
    // No exit reached the client before the cpuid, and the ISR read 1.
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(ax[5] & 0xff, 1, "the ISR");
    ram.b = download(&mut c, "ram", 0, RAM);
    assert_eq!(d.used_idx(&ram), 2);
    assert_eq!(ram.b[0x8100], S_OK);
    assert_eq!(ram.b[0x8101], S_OK);
    assert_eq!(ram.b[0x9000..0x9200], image[3 * 512..4 * 512]);
    assert_eq!(ram.b[0xa000..0xa200], image[4 * 512..5 * 512]);
    let disk = download(&mut c, "disk", 0, 0x4000);
    assert!(disk[9 * 512..10 * 512].iter().all(|&b| b == 0xee));
    assert_eq!(disk[..9 * 512], image[..9 * 512]);

    // The write changed page 1; reading the list clears it.
    let dirty = format!("vmx/{}/blkdirty", v.n);
    assert_eq!(c.read_text(&dirty), "0 0x1000 0x1000\n");
    assert_eq!(c.read_text(&dirty), "");

    // Frames come back when the VM and the segments go.
    end(c, &v, &["ram", "disk"], free0);
}

#[test]
fn a_queue_disk_is_served_by_the_client_through_blkq() {
    let (mut c, v, free0) = machine();
    assert_eq!(ctl(&mut c, &v, "pci blk queue 8192 ro"), R::Count(21));
    let blk = format!("vmx/{}/blk", v.n);
    assert_eq!(c.read_text(&blk), "0 queue - ro 16 0xc000 10 ok\n");
    let q = c.open_path(&format!("vmx/{}/blkq", v.n), om::RDWR).unwrap();
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(128, PFN);
    header(&mut ram, 0x8000, T_IN, 2);
    d.offer(
        &mut ram,
        &[(0x8000, 16, false), (0x9000, 1024, true), (0x8100, 1, true)],
    );
    // A write to a read-only disk fails at once.
    header(&mut ram, 0xb000, T_OUT, 0);
    d.offer(&mut ram, &[(0xb000, 0x210, false), (0x8101, 1, true)]);
    upload(&mut c, "ram", 0, &ram.b);
    // The client's read waits for the guest's requests (a short one: the record is
    // cut, and the next read has the rest).
    c.start_read(7, q, 5);
    c.process();
    assert_eq!(c.replies(), vec![]);
    c.ns.hw_mut().exits.extend(setup_exits());
    c.ns.hw_mut().exits.extend(notify_exits());
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    c.run();
    let rec = b"0 1 r 1024 1024\n";
    assert_eq!(c.replies(), vec![(7, R::Data(rec[..5].to_vec()))]);
    let got = download(&mut c, "ram", 0, RAM);
    assert_eq!(got[0x8101], S_IOERR);
    assert_eq!(c.read(q, 0, 100), R::Data(rec[5..].to_vec()));
    c.start_read(8, q, 100);
    c.process();
    assert_eq!(c.replies(), vec![]);
    // Completed in two writes, the data cut anywhere; an unknown tag is dropped.
    let mut w = b"0 9 ok 3\nabc0 1 ok 1024\n".to_vec();
    w.extend(vec![0x5a; 600]);
    assert_eq!(c.write(q, 0, &w), R::Count(w.len() as u32));
    assert_eq!(c.write(q, 0, &[0x5a; 424]), R::Count(424));
    let got = download(&mut c, "ram", 0, RAM);
    assert_eq!(got[0x8100], S_OK);
    assert!(got[0x9000..0x9400].iter().all(|&b| b == 0x5a));
    ram.b = got;
    assert_eq!(d.used_idx(&ram), 2);
    assert_eq!(d.used_entry(&ram, 1), (0, 1025));
    assert_eq!(
        c.write(q, 0, b"0 1 maybe 0\n"),
        err("bad blkq completion 0 1 maybe 0")
    );
    // The completion raised the interrupt.
    let (_, ax) = run(
        &mut c,
        &v,
        vec![Exit::io(BAR + R_ISR, 1, true, 0), Exit::new(10)],
    );
    assert_eq!(ax[1] & 0xff, 1);
    // The waiting read ends with its VM.
    c.send(
        9,
        protocol::Fcall::Twrite {
            fid: v.ctl,
            offset: 0,
            data: b"quit",
        },
    );
    c.process();
    let mut r = c.replies();
    r.sort_by_key(|(t, _)| *t);
    assert_eq!(r, vec![(8, err(devvmx::EQUIT)), (9, R::Count(4))]);
    c.clunk(q);
    let d = c.fid();
    c.walk(0, d, &["segment", "ram"]);
    assert_eq!(c.remove(d), R::Ok);
    assert_eq!(c.ns.hw().frames_free(), free0);
}

/// 1 MiB of RAM holding a full descriptor table: 42 reads of 128 KiB (5.25 MiB) of a
/// 256 KiB segment disk, request i's header at 0x8000 + 16i, its status at 0x9000 + i,
/// reading disk offset (i % 3) * 64 KiB into 0x40000 + (i % 4) * 128 KiB. The disk's
/// image, the RAM and the driver.
fn big_reads(c: &mut Client) -> (Vec<u8>, Ram, Driver) {
    c.segment("disk", 0x40000);
    let image = disk_bytes(0x40000);
    upload(c, "disk", 0, &image);
    let mut ram = Ram::new(0x100000);
    let mut d = Driver::new(128, PFN);
    for i in 0..BIG_READS {
        let (h, st) = (0x8000 + 16 * i, 0x9000 + i);
        header(&mut ram, h, T_IN, (i % 3) as u64 * 128);
        ram.b[st] = 0xff;
        let data = 0x40000 + (i % 4) * 0x20000;
        d.offer(
            &mut ram,
            &[
                (h as u64, 16, false),
                (data as u64, 0x20000, true),
                (st as u64, 1, true),
            ],
        );
    }
    upload(c, "ram", 0, &ram.b);
    (image, ram, d)
}

const BIG_READS: usize = 42;
/// Reads of [`big_reads`] one budget (1 MiB) ends.
const PER_BUDGET: u16 = 8;

#[test]
fn a_notify_serves_a_budget_and_each_entry_after_it_the_next() {
    let (mut c, v, free0) = machine_with(&[], 0x100000, 8192 + 24);
    let (image, mut ram, d) = big_reads(&mut c);
    assert_eq!(ctl(&mut c, &v, "pci blk seg disk"), R::Count(16));
    // The notify's budget, and one more before the entry that exits to the client.
    let mut exits = setup_exits();
    exits.extend([Exit::io(BAR + R_QUEUE_NOTIFY, 2, false, 0), Exit::new(10)]);
    let (line, _) = run(&mut c, &v, exits);
    assert!(line.starts_with(".cpuid "), "{line}");
    ram.b = download(&mut c, "ram", 0, 0x100000);
    assert_eq!(d.used_idx(&ram), 2 * PER_BUDGET);
    assert_eq!(ram.b[0x9000 + 2 * usize::from(PER_BUDGET)], 0xff);
    // A budget before each entry, with no notify: the guest sees each one's interrupt.
    let mut exits = vec![Exit::io(BAR + R_ISR, 1, true, 0); 4];
    exits.push(Exit::new(10));
    let (line, ax) = run(&mut c, &v, exits);
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(ax[1..].iter().map(|a| a & 0xff).collect::<Vec<_>>(), [1; 4]);
    ram.b = download(&mut c, "ram", 0, 0x100000);
    assert_eq!(usize::from(d.used_idx(&ram)), BIG_READS);
    for i in 0..BIG_READS {
        assert_eq!(d.used_entry(&ram, i as u16), (3 * i as u32, 0x20001), "{i}");
        assert_eq!(ram.b[0x9000 + i], S_OK, "{i}");
    }
    // Each buffer holds the last read into it.
    for i in BIG_READS - 4..BIG_READS {
        let (at, off) = (0x40000 + (i % 4) * 0x20000, (i % 3) * 0x10000);
        assert!(ram.b[at..at + 0x20000] == image[off..off + 0x20000], "{i}");
    }
    let blk = format!("vmx/{}/blk", v.n);
    assert_eq!(c.read_text(&blk), "0 seg disk rw 512 0xc000 10 ok\n");
    end(c, &v, &["ram", "disk"], free0);
}

#[test]
fn a_reset_drops_the_work_a_budget_left() {
    let (mut c, v, free0) = machine_with(&[], 0x100000, 8192 + 24);
    let (_, mut ram, d) = big_reads(&mut c);
    assert_eq!(ctl(&mut c, &v, "pci blk seg disk"), R::Count(16));
    let mut exits = setup_exits();
    exits.extend([Exit::io(BAR + R_QUEUE_NOTIFY, 2, false, 0), Exit::new(10)]);
    run(&mut c, &v, exits);
    // One more budget before the entry that resets the device, then nothing.
    let exits = vec![
        Exit::io(BAR + R_STATUS, 1, false, 0),
        Exit::io(BAR + R_ISR, 1, true, 0),
        Exit::new(10),
    ];
    let (line, ax) = run(&mut c, &v, exits);
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(ax[2] & 0xff, 0, "no interrupt after the reset");
    ram.b = download(&mut c, "ram", 0, 0x100000);
    let done = usize::from(3 * PER_BUDGET);
    assert_eq!(usize::from(d.used_idx(&ram)), done);
    assert!(ram.b[0x9000..0x9000 + done].iter().all(|&s| s == S_OK));
    assert!(ram.b[0x9000 + done..0x9000 + BIG_READS]
        .iter()
        .all(|&s| s == 0xff));
    let blk = format!("vmx/{}/blk", v.n);
    assert_eq!(c.read_text(&blk), "0 seg disk rw 512 0xc000 10 ok\n");
    end(c, &v, &["ram", "disk"], free0);
}

#[test]
fn a_hostile_ring_breaks_only_its_device_until_the_driver_resets_it() {
    let (mut c, v, free0) = machine();
    c.segment("disk", 0x2000);
    assert_eq!(ctl(&mut c, &v, "pci blk seg disk"), R::Count(16));
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(128, PFN);
    // A buffer past the end of guest memory.
    header(&mut ram, 0x8000, T_IN, 0);
    d.offer(
        &mut ram,
        &[
            (0x8000, 16, false),
            (0xfff0, 0x100, true),
            (0x8100, 1, true),
        ],
    );
    upload(&mut c, "ram", 0, &ram.b);
    let mut exits = setup_exits();
    exits.extend(notify_exits());
    let (line, ax) = run(&mut c, &v, exits);
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(ax[5] & 0xff, 2, "a configuration change");
    let blk = format!("vmx/{}/blk", v.n);
    let t = c.read_text(&blk);
    assert!(
        t.starts_with("0 seg disk rw 16 0xc000 10 broken '") && t.contains("past the end"),
        "{t}"
    );
    // The device status says so; a reset brings it back.
    let (_, ax) = run(
        &mut c,
        &v,
        vec![
            Exit::io(BAR + R_STATUS, 1, true, 0),
            Exit::io(BAR + R_STATUS, 1, false, 0),
            Exit::new(10),
        ],
    );
    assert_eq!(ax[1] & 0x40, 0x40);
    assert_eq!(c.read_text(&blk), "0 seg disk rw 16 0xc000 10 ok\n");
    end(c, &v, &["ram", "disk"], free0);
}

#[test]
fn disks_need_the_in_kernel_pci_and_pic_and_a_whole_line() {
    let mut c = Client::with_hw(TestHw::new(4096));
    let v = c.vm();
    assert_eq!(
        ctl(&mut c, &v, "pci blk queue 512"),
        err("no in-kernel pci")
    );
    assert_eq!(c.write(v.ctl, 0, b"devices pci"), R::Count(11));
    assert_eq!(
        ctl(&mut c, &v, "pci blk queue 512"),
        err("in-kernel disks need the in-kernel pci and pic")
    );
    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, b"devices pic pci"), R::Count(15));
    assert_eq!(
        ctl(&mut c, &v, "pci blk queue 100"),
        err("bad arg in system call")
    );
    // Without a disk the files are not listed, and say why.
    let names: Vec<String> = c
        .read_dir(&format!("vmx/{}", v.n))
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(!names.contains(&"blkq".to_string()), "{names:?}");
    assert_eq!(
        text(&mut c, &format!("vmx/{}/blk", v.n)),
        Err(err("no in-kernel disks"))
    );
    for _ in 0..4 {
        assert_eq!(ctl(&mut c, &v, "pci blk queue 512"), R::Count(17));
    }
    assert_eq!(
        ctl(&mut c, &v, "pci blk queue 512"),
        err("too many in-kernel disks")
    );
    let t = c.read_text(&format!("vmx/{}/blk", v.n));
    assert_eq!(
        t,
        "0 queue - rw 1 0xc000 10 ok\n1 queue - rw 1 0xc040 11 ok\n\
         2 queue - rw 1 0xc080 5 ok\n3 queue - rw 1 0xc0c0 9 ok\n"
    );
    let names: Vec<String> = c
        .read_dir(&format!("vmx/{}", v.n))
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        names.ends_with(&["blk".into(), "blkdirty".into(), "blkq".into()]),
        "{names:?}"
    );
}

#[test]
fn a_waiting_blkq_read_of_a_vm_on_another_cpu_asks_no_cpu_until_the_guest_notifies() {
    let (mut c, v, _) = machine_on(&[1]);
    assert_eq!(ctl(&mut c, &v, "pci blk queue 4096"), R::Count(18));
    let q = c.open_path(&format!("vmx/{}/blkq", v.n), om::RDWR).unwrap();
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(128, PFN);
    ram.b[0x8000..0x8004].copy_from_slice(&virtio::blk::T_FLUSH.to_le_bytes());
    d.offer(&mut ram, &[(0x8000, 16, false), (0x8100, 1, true)]);
    upload(&mut c, "ram", 0, &ram.b);
    c.start_read(7, q, 100);
    c.process();
    let calls = c.ns.hw().calls.len();
    for _ in 0..5 {
        c.run();
    }
    assert_eq!(c.replies(), vec![]);
    assert_eq!(
        c.ns.hw().calls.len(),
        calls,
        "a waiting blkq read asked the VM's cpu"
    );
    c.ns.hw_mut().exits.extend(setup_exits());
    c.ns.hw_mut().exits.extend(notify_exits());
    assert_eq!(c.write(v.ctl, 0, b"go"), R::Count(2));
    let list = c.ns.vms().run_list(1).unwrap();
    c.ns.hw_mut().on_cpu(1, &mut |hw| {
        list.run(hw, &mut |_| {});
    });
    c.run();
    assert_eq!(c.replies(), vec![(7, R::Data(b"0 1 f 0 0\n".to_vec()))]);
    assert_eq!(c.write(q, 0, b"0 1 ok 0\n"), R::Count(9));
    ram.b = download(&mut c, "ram", 0, RAM);
    assert_eq!((d.used_idx(&ram), ram.b[0x8100]), (1, S_OK));
}

#[test]
fn blkq_completion_lines_may_be_cut_anywhere_and_bad_ones_are_refused() {
    let (mut c, v, _) = machine();
    assert_eq!(ctl(&mut c, &v, "pci blk queue 4096"), R::Count(18));
    let q = c.open_path(&format!("vmx/{}/blkq", v.n), om::RDWR).unwrap();
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(128, PFN);
    header(&mut ram, 0x8000, T_IN, 1);
    d.offer(
        &mut ram,
        &[(0x8000, 16, false), (0x9000, 512, true), (0x8100, 1, true)],
    );
    ram.b[0x8100] = 0xff;
    upload(&mut c, "ram", 0, &ram.b);
    let mut exits = setup_exits();
    exits.extend(notify_exits());
    run(&mut c, &v, exits);
    assert_eq!(c.read(q, 0, 100), R::Data(b"0 1 r 512 512\n".to_vec()));
    // A line in three writes, its data in two.
    for w in [&b"0 1"[..], b" ok 5", b"12\n"] {
        assert_eq!(c.write(q, 0, w), R::Count(w.len() as u32));
    }
    assert_eq!(c.write(q, 0, &[1; 500]), R::Count(500));
    assert_eq!(download(&mut c, "ram", 0x8100, 1), [0xff]);
    assert_eq!(c.write(q, 0, &[1; 12]), R::Count(12));
    assert_eq!(download(&mut c, "ram", 0x8100, 1), [S_OK]);
    assert_eq!(download(&mut c, "ram", 0x9000, 512), vec![1; 512]);
    // Bad lines: fields, numbers, status, length.
    for bad in [
        &b"0 1 ok\n"[..],
        b"x 1 ok 0\n",
        b"0 1 ok -1\n",
        b"0 1 ok 0x10\n",
        b"0 1 fine 0\n",
        b"0 1 ok 0 0\n",
    ] {
        let line = String::from_utf8_lossy(&bad[..bad.len() - 1]).into_owned();
        assert_eq!(
            c.write(q, 0, bad),
            err(&format!("bad blkq completion {line}"))
        );
    }
    let long = [b'7'; 100];
    assert_eq!(
        c.write(q, 0, &long),
        err(&format!("bad blkq completion {}", "7".repeat(80)))
    );
    // An unknown disk or tag with data: read and dropped.
    let mut w = b"5 1 ok 3\nabc".to_vec();
    w.extend_from_slice(b"0 77 err 0\n");
    assert_eq!(c.write(q, 0, &w), R::Count(w.len() as u32));
    // Each disk's files need a disk.
    let v2 = c.vm();
    assert_eq!(
        c.open_path(&format!("vmx/{}/blkq", v2.n), om::RDWR)
            .map(|f| c.read(f, 0, 10)),
        Ok(err("no in-kernel disks"))
    );
}

#[test]
fn one_blkq_read_takes_every_pending_request_and_one_write_completes_them() {
    // 512 KiB of guest RAM: two 192 KiB reads and a flush, all pending at once.
    const BIG: usize = 0x80000;
    const LEN: usize = 0x30000;
    let (mut c, v, free0) = machine_with(&[], BIG, protocol::BULK_IO + protocol::IOHDRSZ as u32);
    assert_eq!(ctl(&mut c, &v, "pci blk queue 1048576"), R::Count(21));
    let q = c.open_path(&format!("vmx/{}/blkq", v.n), om::RDWR).unwrap();
    let mut ram = Ram::new(BIG);
    let mut d = Driver::new(128, PFN);
    for (i, (at, sector)) in [(0x10000, 0u64), (0x40000, 384)].into_iter().enumerate() {
        header(&mut ram, 0x8000 + i * 0x20, T_IN, sector);
        d.offer(
            &mut ram,
            &[
                (0x8000 + i as u64 * 0x20, 16, false),
                (at, LEN as u32, true),
                (0x8100 + i as u64, 1, true),
            ],
        );
    }
    header(&mut ram, 0x8040, virtio::blk::T_FLUSH, 0);
    d.offer(&mut ram, &[(0x8040, 16, false), (0x8102, 1, true)]);
    upload(&mut c, "ram", 0, &ram.b);
    let mut exits = setup_exits();
    exits.extend(notify_exits());
    run(&mut c, &v, exits);
    // One read: all three records.
    assert_eq!(
        c.read(q, 0, 4096),
        R::Data(b"0 1 r 0 196608\n0 2 r 196608 196608\n0 3 f 0 0\n".to_vec())
    );
    // One write (past the old 128 KiB msize): all three completions.
    let mut w = Vec::new();
    for (tag, fill) in [(1, 0x11u8), (2, 0x22)] {
        w.extend(format!("0 {tag} ok {LEN}\n").bytes());
        w.extend(vec![fill; LEN]);
    }
    w.extend(b"0 3 ok 0\n");
    assert_eq!(c.write(q, 0, &w), R::Count(w.len() as u32));
    let got = download(&mut c, "ram", 0, BIG);
    assert_eq!(got[0x8100..0x8103], [S_OK; 3]);
    assert!(got[0x10000..0x40000].iter().all(|&b| b == 0x11));
    assert!(got[0x40000..0x70000].iter().all(|&b| b == 0x22));
    ram.b = got;
    assert_eq!(d.used_idx(&ram), 3);
    c.clunk(q);
    end(c, &v, &["ram"], free0);
}
