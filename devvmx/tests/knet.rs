//! virtio-net in the kernel through 9P over TestHw: two VMs, each with a `pci net` card
//! on the host's switch, their drivers played by the test (rings laid out with the virtio
//! crate's test driver and uploaded into each guest's RAM segment, port I/O as TestHw
//! exits). A frame goes from one guest to the other with no exit to either client; a
//! guest halted for its PIC wakes with the card's interrupt when a frame arrives; a
//! frame from a foreign source MAC is dropped; the card's port leaves the switch with
//! its VM, and every frame comes back.

mod common;
use common::*;
use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use devvmx::HostSwitch;
use netswitch::{Kind, Mac, PortId, Switch};
use protocol::om;
use std::sync::Arc;
use virtio::legacy::{R_GUEST_FEATURES, R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_QUEUE_SEL, R_STATUS};
use virtio::net::device::{HDR, RX, TX};
use virtio::testing::{Driver, Ram};

const RAM: usize = 0x10000;
/// The receive queue at 0x4000, the transmit queue at 0x8000.
const RX_PFN: u32 = 4;
const TX_PFN: u32 = 8;
/// Where a transmitted frame lies, and the receive buffers.
const TX_BUF: usize = 0x2000;
const RX_BUF: usize = 0xa000;
/// Where the kernel put each VM's card (its first function) and its line.
const BAR: u16 = 0xc000;
const IRQ10_VECTOR: u64 = 0x2a;
const MA: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn out(off: u16, size: u8, val: u64) -> Exit {
    Exit::io(BAR + off, size, false, val)
}

fn upload(c: &mut Client, seg: &str, data: &[u8]) {
    let fid = c
        .open_path(&format!("segment/{seg}/data"), om::WRITE)
        .unwrap();
    for (i, chunk) in data.chunks(4096).enumerate() {
        let at = (i * 4096) as u64;
        assert_eq!(c.write(fid, at, chunk), R::Count(chunk.len() as u32));
    }
    c.clunk(fid);
}

fn download(c: &mut Client, seg: &str) -> Ram {
    let fid = c
        .open_path(&format!("segment/{seg}/data"), om::READ)
        .unwrap();
    let mut ram = Ram::new(RAM);
    for at in (0..RAM).step_by(4096) {
        match c.read(fid, at as u64, 4096) {
            R::Data(d) => ram.b[at..at + d.len()].copy_from_slice(&d),
            r => panic!("{r:?}"),
        }
    }
    c.clunk(fid);
    ram
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x42u8; 98];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// One guest: its VM, its RAM segment and the driver's view of its memory and queues.
struct Guest {
    v: Vm,
    seg: String,
    ram: Ram,
    drv: [Driver; 2],
}

impl Guest {
    /// A VM with 64 KiB of RAM at 0, the in-kernel pic and pci and a card with `mac`.
    fn new(c: &mut Client, seg: &str, mac: [u8; 6]) -> Guest {
        let v = c.vm();
        c.segment(seg, RAM as u64);
        let line = format!("rwx wb 0 0x10000 {seg} 0\n");
        assert_eq!(
            c.write_path(&format!("vmx/{}/map", v.n), line.as_bytes()),
            R::Count(line.len() as u32)
        );
        assert_eq!(c.write(v.ctl, 0, b"devices pic pci"), R::Count(15));
        let msg = format!("pci net {}", Mac(mac));
        assert_eq!(
            c.write(v.ctl, 0, msg.as_bytes()),
            R::Count(msg.len() as u32)
        );
        c.write_path(&format!("vmx/{}/regs", v.n), b"flags 0x202\n");
        Guest {
            v,
            seg: seg.into(),
            ram: Ram::new(RAM),
            drv: [Driver::new(128, RX_PFN), Driver::new(128, TX_PFN)],
        }
    }

    /// Runs the guest through `exits` after uploading its memory, and reads its memory
    /// back after.
    fn run(&mut self, c: &mut Client, exits: Vec<Exit>) {
        upload(c, &self.seg, &self.ram.b);
        c.ns.hw_mut().exits.extend(exits);
        assert_eq!(c.write(self.v.ctl, 0, b"go"), R::Count(2));
        c.run();
        self.ram = download(c, &self.seg);
    }

    /// The wait line of an exit the guest made for its client.
    fn wait(&self, c: &mut Client) -> String {
        match c.read(self.v.wait, 0, 512) {
            R::Data(d) => String::from_utf8(d).unwrap(),
            r => panic!("{r:?}"),
        }
    }
}

/// The guest's bring-up: the PIC as Linux sets it, I/O decoding on for device 1, the
/// card's features, queues and DRIVER_OK.
fn bring_up() -> Vec<Exit> {
    let mut e: Vec<Exit> = pcdev::pic::INIT_SEQUENCE
        .iter()
        .map(|&(p, b)| Exit::io(p, 1, false, b.into()))
        .collect();
    e.extend([
        Exit::io(0xcf8, 4, false, 0x8000_0804),
        Exit::io(0xcfc, 2, false, 1),
        out(R_GUEST_FEATURES, 4, 1 << 5),
        out(R_QUEUE_SEL, 2, 0),
        out(R_QUEUE_PFN, 4, RX_PFN.into()),
        out(R_QUEUE_SEL, 2, 1),
        out(R_QUEUE_PFN, 4, TX_PFN.into()),
        out(R_STATUS, 1, 0xf),
    ]);
    e
}

/// `sti; hlt`, as guests idle: the hlt exits in the STI shadow.
fn hlt() -> Exit {
    Exit {
        ilen: 1,
        set: vec![(devvmx::vmcs::GUEST_CANINTR, devvmx::vmcs::CANINTR_STI)],
        ..Exit::new(12)
    }
}

/// A client whose namespace has a switch; the switch.
fn client() -> (Client, Arc<spin::Mutex<Switch>>) {
    let mut hw = TestHw::new(4096);
    hw.tsc_step = 0;
    let mut c = Client::with_hw(hw);
    let sw = HostSwitch::unbridged(|| 0);
    c.ns.set_switch(sw.clone());
    (c, sw.switch)
}

fn guest_ports(sw: &Switch) -> Vec<(u16, Mac)> {
    (0..64)
        .filter_map(|p| match sw.kind(PortId(p)) {
            Some((Kind::Guest, Some(m))) => Some((p, m)),
            _ => None,
        })
        .collect()
}

#[test]
fn pci_net_lines_and_their_errors() {
    let (mut c, sw) = client();
    let v = c.vm();
    let e = |c: &mut Client, m: &str| c.write(v.ctl, 0, m.as_bytes());
    assert_eq!(
        e(&mut c, "pci net 02:00:00:00:00:0a"),
        err("no in-kernel pci")
    );
    assert_eq!(e(&mut c, "devices pic pci"), R::Count(15));
    assert_eq!(e(&mut c, "pci net"), err(ninep::error::EBADARG));
    assert_eq!(
        e(&mut c, "pci net 02:00:00:00:0a"),
        err(ninep::error::EBADARG)
    );
    assert_eq!(
        e(&mut c, "pci net ff:ff:ff:ff:ff:ff"),
        err("bad mac address for the port")
    );
    assert_eq!(e(&mut c, "pci net 02:00:00:00:00:0a"), R::Count(25));
    assert_eq!(
        e(&mut c, "pci net 02:00:00:00:00:0a"),
        err("mac address in use on the switch")
    );
    assert_eq!(guest_ports(&sw.lock()), [(0, Mac(MA))]);
    // Without a switch handed over, there is no card.
    let mut hw = TestHw::new(4096);
    hw.tsc_step = 0;
    let mut c = Client::with_hw(hw);
    let v = c.vm();
    assert_eq!(c.write(v.ctl, 0, b"devices pic pci"), R::Count(15));
    assert_eq!(
        c.write(v.ctl, 0, b"pci net 02:00:00:00:00:0a"),
        err("no switch")
    );
}

#[test]
fn two_vms_exchange_frames_in_the_kernel_and_their_ports_go_with_them() {
    let (mut c, sw) = client();
    let free0 = c.ns.hw().frames_free();
    let mut a = Guest::new(&mut c, "rama", MA);
    let mut b = Guest::new(&mut c, "ramb", MB);
    assert_eq!(guest_ports(&sw.lock()), [(0, Mac(MA)), (1, Mac(MB))]);

    // B brings its card up, offers a receive buffer and halts with interrupts on.
    b.drv[0].offer(&mut b.ram, &[(RX_BUF as u64, 2048, true)]);
    let mut e = bring_up();
    e.extend([out(R_QUEUE_NOTIFY, 2, RX.into()), hlt()]);
    let entries = e.len();
    b.run(&mut c, e);
    assert_eq!(c.ns.hw().entries.len(), entries, "B waits inside, halted");
    assert!(!c.run(), "not entered again");
    assert_eq!(c.ns.hw().entries.len(), entries);

    // A sends B a frame: its buffer comes back, its client sees only its cpuid. B, on
    // the same CPU, wakes in the same round for its card's interrupt (IRQ 10), reads its
    // ISR and makes an exit for its client: its frame is in its buffer.
    let f = frame(MB, MA);
    a.ram.b[TX_BUF + HDR..TX_BUF + HDR + f.len()].copy_from_slice(&f);
    a.drv[1].offer(
        &mut a.ram,
        &[(TX_BUF as u64, (HDR + f.len()) as u32, false)],
    );
    let mut e = bring_up();
    e.extend([
        out(R_QUEUE_NOTIFY, 2, TX.into()),
        Exit::io(BAR + R_ISR, 1, true, 0),
        Exit::new(10),
    ]);
    let n = e.len();
    e.extend([Exit::io(BAR + R_ISR, 1, true, 0), Exit::new(10)]);
    a.run(&mut c, e);
    let line = a.wait(&mut c);
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(a.drv[1].used_idx(&a.ram), 1);
    let line = b.wait(&mut c);
    assert!(line.starts_with(".cpuid "), "{line}");
    let e = &c.ns.hw().entries;
    assert_eq!(e.len(), entries + n + 2);
    assert_eq!(e[entries + n - 1].ax & 0xff, 1, "A's ISR: a used buffer");
    assert_eq!(
        e[entries + n].intr_info,
        0x8000_0000 | IRQ10_VECTOR,
        "B woke with its card's vector, the STI shadow over with its hlt"
    );
    assert_eq!(e[entries + n + 1].ax & 0xff, 1, "B's ISR");
    b.ram = download(&mut c, "ramb");
    assert_eq!(b.drv[0].used_idx(&b.ram), 1);
    assert_eq!(b.drv[0].used_entry(&b.ram, 0), (0, (HDR + f.len()) as u32));
    assert_eq!(b.ram.b[RX_BUF + HDR..RX_BUF + HDR + f.len()], f[..]);

    // A poses as B: the switch drops the frame, A's buffer still comes back.
    let f = frame(MB, MB);
    a.ram.b[TX_BUF + HDR..TX_BUF + HDR + f.len()].copy_from_slice(&f);
    a.drv[1].offer(
        &mut a.ram,
        &[(TX_BUF as u64, (HDR + f.len()) as u32, false)],
    );
    a.run(
        &mut c,
        vec![out(R_QUEUE_NOTIFY, 2, TX.into()), Exit::new(10)],
    );
    let line = a.wait(&mut c);
    assert!(line.starts_with(".cpuid "), "{line}");
    assert_eq!(a.drv[1].used_idx(&a.ram), 2);
    assert_eq!(sw.lock().queued(PortId(1)), 0);
    assert_eq!(sw.lock().counters(PortId(0)).unwrap().spoof, 1);

    // A frame waiting for B when B's VM goes leaves with its port; A's goes with A.
    let f = frame(MB, MA);
    a.ram.b[TX_BUF + HDR..TX_BUF + HDR + f.len()].copy_from_slice(&f);
    a.drv[1].offer(
        &mut a.ram,
        &[(TX_BUF as u64, (HDR + f.len()) as u32, false)],
    );
    a.run(
        &mut c,
        vec![out(R_QUEUE_NOTIFY, 2, TX.into()), Exit::new(10)],
    );
    a.wait(&mut c);
    assert_eq!(sw.lock().queued(PortId(1)), 1);
    assert_eq!(c.write(b.v.ctl, 0, b"quit"), R::Count(4));
    assert_eq!(guest_ports(&sw.lock()), [(0, Mac(MA))]);
    assert_eq!(c.write(a.v.ctl, 0, b"quit"), R::Count(4));
    assert_eq!(guest_ports(&sw.lock()), []);
    for s in ["rama", "ramb"] {
        let d = c.fid();
        c.walk(0, d, &["segment", s]);
        assert_eq!(c.remove(d), R::Ok, "{s}");
    }
    assert_eq!(c.ns.hw().frames_free(), free0);
}

#[test]
fn a_hostile_ring_breaks_only_its_card_with_a_reason_in_net() {
    let (mut c, sw) = client();
    let plain = c.vm();
    assert!(!c
        .ls(&format!("vmx/{}", plain.n))
        .contains(&"net".to_string()));
    let fid = c
        .open_path(&format!("vmx/{}/net", plain.n), om::READ)
        .unwrap();
    assert_eq!(c.read(fid, 0, 100), err("no in-kernel cards"));
    c.clunk(fid);
    let mut a = Guest::new(&mut c, "rama", MA);
    let mut b = Guest::new(&mut c, "ramb", MB);
    assert!(c.ls(&format!("vmx/{}", a.v.n)).contains(&"net".to_string()));
    let net = |c: &mut Client, g: &Guest| c.read_text(&format!("vmx/{}/net", g.v.n));
    let mut e = bring_up();
    e.push(Exit::new(10));
    a.run(&mut c, e);
    a.wait(&mut c);
    assert_eq!(
        net(&mut c, &a),
        "0 02:00:00:00:00:0a 0xc000 10 0 sent 0 received 0 dropped 0 ok\n"
    );
    // A's driver claims 200 new transmit buffers in a ring of 128: its card breaks, with
    // the reason, and B's goes on.
    a.drv[1].set_avail_idx(&mut a.ram, 200);
    a.run(
        &mut c,
        vec![
            out(R_QUEUE_NOTIFY, 2, TX.into()),
            Exit::io(BAR + R_STATUS, 1, true, 0),
            Exit::new(10),
        ],
    );
    a.wait(&mut c);
    let t = net(&mut c, &a);
    assert!(
        t.starts_with("0 02:00:00:00:00:0a 0xc000 10 0 sent 0 received 0 dropped 0 broken '"),
        "{t}"
    );
    assert!(t.contains("200"), "{t}");
    assert_eq!(
        c.ns.hw().entries.last().unwrap().ax & 0x40,
        0x40,
        "DEVICE_NEEDS_RESET in the status"
    );
    let mut e = bring_up();
    e.push(Exit::new(10));
    b.run(&mut c, e);
    b.wait(&mut c);
    assert!(net(&mut c, &b).ends_with(" ok\n"));
    // The driver resets A's card: it works again.
    a.drv[1] = virtio::testing::Driver::new(128, TX_PFN);
    a.ram.b[0x8000..0x9000].fill(0);
    let f = frame(MB, MA);
    a.ram.b[TX_BUF + HDR..TX_BUF + HDR + f.len()].copy_from_slice(&f);
    a.drv[1].offer(
        &mut a.ram,
        &[(TX_BUF as u64, (HDR + f.len()) as u32, false)],
    );
    let mut e = vec![out(R_STATUS, 1, 0)];
    e.extend(bring_up());
    e.extend([out(R_QUEUE_NOTIFY, 2, TX.into()), Exit::new(10)]);
    a.run(&mut c, e);
    a.wait(&mut c);
    let t = net(&mut c, &a);
    assert!(t.ends_with(" sent 1 received 0 dropped 0 ok\n"), "{t}");
    assert_eq!(sw.lock().queued(PortId(1)), 1, "B's port has A's frame");
}
