//! The knet target: the kernel's virtio-net card (devvmx's `pci net`) on the host's switch,
//! driven through the namespace over TestHw: the guest's two rings are the input's image,
//! uploaded into its RAM segment, then the input's operations notify either queue, poke
//! ring and buffer bytes, reset the card, write its MAC, and send and take frames through
//! a client port of the switch (`switch/clone`). Nothing may panic, a segment the VM does
//! not map is never touched, every frame comes back when the VM and segments go, and the
//! card's port leaves the switch with its VM.

use devvmx::hw::Hw;
use devvmx::testhw::{Exit, TestHw};
use devvmx::{Config, HostSwitch, Namespace, Node};
use ninep::{Ctx, Read, Tree};
use virtio::legacy::{R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_QUEUE_SEL, R_STATUS};
use virtio::net::device::{HDR, RX, TX};
use virtio::testing::{Driver, Ram};

/// The guest's RAM: 32 KiB at 0.
const RAM: usize = 0x8000;
/// The receive queue at 0x2000, the transmit queue at 0x4000 (128 entries each, the
/// kernel's); buffers from 0x6000.
const RX_PFN: u32 = 2;
const TX_PFN: u32 = 4;
const QSIZE: u16 = 128;
const BUFS: u64 = 0x6000;
/// The input's image: both rings (0x2000-0x6000).
const IMAGE: usize = 0x4000;
/// Where the kernel puts the card's BAR.
const BAR: u16 = 0xc000;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// At most this many operations per input.
const OPS: usize = 48;

fn io(port: u16, size: u8, input: bool, val: u64) -> Exit {
    Exit {
        qual: u64::from(port) << 16 | u64::from(input) << 3 | u64::from(size - 1),
        ilen: 1,
        ax: Some(val),
        ..Exit::new(30)
    }
}

/// The driver's bring-up after a reset: both queues, DRIVER_OK.
fn queues() -> [Exit; 5] {
    [
        io(BAR + R_QUEUE_SEL, 2, false, 0),
        io(BAR + R_QUEUE_PFN, 4, false, u64::from(RX_PFN)),
        io(BAR + R_QUEUE_SEL, 2, false, 1),
        io(BAR + R_QUEUE_PFN, 4, false, u64::from(TX_PFN)),
        io(BAR + R_STATUS, 1, false, 7),
    ]
}

struct World {
    ns: Namespace<TestHw>,
    ctx: Ctx<'static>,
    root: Node,
}

impl World {
    fn walk(&mut self, path: &[&str]) -> Option<Node> {
        let mut n = self.root.clone();
        for p in path {
            n = self.ns.walk(&self.ctx, &n, p).ok()?;
        }
        Some(n)
    }

    fn open(&mut self, path: &[&str], mode: u8) -> Node {
        let mut n = self.walk(path).expect("walk");
        self.ns.open(&self.ctx, &mut n, mode).expect("open");
        n
    }

    fn write(&mut self, n: &mut Node, off: u64, data: &[u8]) -> Result<usize, ninep::Error> {
        self.ns.write(&self.ctx, n, off, data)
    }

    fn segment(&mut self, name: &str, len: u64) {
        let mut dir = self.walk(&["segment"]).expect("segment");
        self.ns
            .create(&self.ctx, &mut dir, name, protocol::dm::DIR | 0o777, 0)
            .expect("create");
        let mut ctl = self.open(&["segment", name, "ctl"], 2);
        let va = format!("va 0x10000000 {len:#x}");
        self.write(&mut ctl, 0, va.as_bytes()).expect("size");
    }

    /// The guest makes `exits`, then one for its client; frames waiting for its card go
    /// in before each entry.
    fn run(&mut self, ctl: &mut Node, exits: &[Exit]) {
        self.ns.hw_mut().exits.extend(exits.iter().cloned());
        self.ns.hw_mut().exits.push_back(Exit::new(10));
        if self.write(ctl, 0, b"go").is_ok() {
            for _ in 0..4 {
                self.ns.run_guests();
            }
        }
        self.ns.hw_mut().exits.clear();
    }
}

/// Input: `[mode] image (op a b c)...`. Mode bit 0: RAM mapped with holes and a
/// read-only range (else whole, rwx). The image fills 0x2000-0x6000 (both rings); each
/// op: 0 the guest notifies the receive queue and reads the ISR, 1 the transmit queue,
/// 2 writes byte c at ring offset a|b<<8, 3 writes c at buffer offset a|b<<8, 4 a client
/// sends a frame of 14 + a bytes (to the card when b is even, else broadcast) and the
/// guest runs, 5 resets the card and gives it its queues again, 6 the driver writes c
/// into MAC byte a, 7 the client reads what the switch queued for it.
pub fn knet(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let hw = TestHw::new(256);
    let start = hw.frames_free();
    let mut ns = Namespace::new(
        hw,
        Config {
            owner: "eve".into(),
            version: "fuzz",
        },
    );
    let sw = HostSwitch::unbridged(|| 0);
    ns.set_switch(sw.clone());
    let ctx = Ctx {
        uname: "eve",
        session: 1,
    };
    let root = ns.attach(&ctx, "").expect("attach");
    let mut w = World { ns, ctx, root };
    w.segment("ram", RAM as u64);
    w.segment("other", 0x1000);
    let mut other = w.open(&["segment", "other", "data"], 2);
    w.write(&mut other, 0, &[0x77; 0x1000]).expect("fill");
    let mut ctl = w.open(&["vmx", "clone"], 2);
    let mut map = w.open(&["vmx", "0", "map"], 2);
    let lines: &[u8] = if mode & 1 == 0 {
        b"rwx wb 0 0x8000 ram 0\n"
    } else {
        b"rw- wb 0 0x5000 ram 0\nr-- wb 0x6000 0x7000 ram 0x6000\n"
    };
    w.write(&mut map, 0, lines).expect("map");
    w.write(&mut ctl, 0, b"devices pic pci").expect("devices");
    w.write(&mut ctl, 0, b"pci net 02:00:00:00:00:01")
        .expect("pci net");
    let mut ramdata = w.open(&["segment", "ram", "data"], 2);
    let (image, mut ops) = rest.split_at(IMAGE.min(rest.len()));
    if !image.is_empty() {
        let _ = w.write(&mut ramdata, u64::from(RX_PFN) * 4096, image);
    }
    let mut client = w.open(&["switch", "clone"], 2);
    let mut setup = vec![io(0xcf8, 4, false, 0x8000_0804), io(0xcfc, 2, false, 1)];
    setup.extend(queues());
    w.run(&mut ctl, &setup);
    let mut buf = vec![0u8; 8192];
    for _ in 0..OPS {
        let [op, a, b, c, tail @ ..] = ops else {
            break;
        };
        ops = tail;
        let at = u64::from(u16::from_le_bytes([*a, *b]));
        match op % 8 {
            0 | 1 => {
                let q = if op % 8 == 0 { RX } else { TX };
                w.run(
                    &mut ctl,
                    &[
                        io(BAR + R_QUEUE_NOTIFY, 2, false, q.into()),
                        io(BAR + R_ISR, 1, true, 0),
                    ],
                )
            }
            2 => {
                let _ = w.write(&mut ramdata, 0x2000 + at % IMAGE as u64, &[*c]);
            }
            3 => {
                let _ = w.write(&mut ramdata, BUFS + at % 0x2000, &[*c]);
            }
            4 => {
                let len = 14 + usize::from(*a);
                let mut f = vec![*c; len];
                let dst = if b % 2 == 0 { MAC } else { [0xff; 6] };
                f[..6].copy_from_slice(&dst);
                f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
                let mut msg = format!("frame {len}\n").into_bytes();
                msg.extend_from_slice(&f);
                let _ = w.write(&mut client, 0, &msg);
                w.run(&mut ctl, &[]);
            }
            5 => {
                let mut e = vec![io(BAR + R_STATUS, 1, false, 0)];
                e.extend(queues());
                w.run(&mut ctl, &e);
            }
            6 => w.run(
                &mut ctl,
                &[io(BAR + 0x14 + u16::from(*a % 6), 1, false, (*c).into())],
            ),
            _ => {
                if let Ok(Read::Done(k)) = w.ns.read(&w.ctx, &mut client, 0, &mut buf) {
                    assert!(k <= buf.len());
                }
            }
        }
    }
    match w.ns.read(&w.ctx, &mut other, 0, &mut buf[..0x1000]) {
        Ok(Read::Done(n)) => assert!(
            buf[..n].iter().all(|&b| b == 0x77),
            "a segment the VM does not map changed"
        ),
        r => panic!("reading the other segment: {r:?}"),
    }
    w.ns.remove(&w.ctx, &ctl).expect("quit");
    let st = sw.switch.lock().status().to_string();
    assert!(
        !st.contains(" guest "),
        "the card's port outlived its VM: {st}"
    );
    for s in ["ram", "other"] {
        if let Some(d) = w.walk(&["segment", s]) {
            w.ns.remove(&w.ctx, &d).expect("remove segment");
        }
    }
    assert_eq!(w.ns.hw().frames_free(), start, "frames leaked");
}

/// Good rings: two receive buffers offered and a frame to transmit, both queues
/// notified, a client's frame for the card and one broadcast, the client's read.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut ram = Ram::new(RAM);
    let mut rx = Driver::new(QSIZE, RX_PFN);
    let mut tx = Driver::new(QSIZE, TX_PFN);
    rx.offer(&mut ram, &[(BUFS, 1526, true)]);
    rx.offer(&mut ram, &[(BUFS + 0x800, 1526, true)]);
    let f = BUFS as usize + 0x1000;
    ram.b[f + HDR..f + HDR + 6].copy_from_slice(&[0xff; 6]);
    ram.b[f + HDR + 6..f + HDR + 12].copy_from_slice(&MAC);
    tx.offer(&mut ram, &[(f as u64, (HDR + 60) as u32, false)]);
    let base = RX_PFN as usize * 4096;
    let image = &ram.b[base..base + IMAGE];
    let mut out = Vec::new();
    for mode in [0u8, 1] {
        let mut s = vec![mode];
        s.extend_from_slice(image);
        s.extend_from_slice(&[0, 0, 0, 0]); // the receive queue
        s.extend_from_slice(&[1, 0, 0, 0]); // the transmit queue
        s.extend_from_slice(&[4, 46, 0, 0x5a]); // a frame for the card
        s.extend_from_slice(&[4, 46, 1, 0x5b]); // a broadcast
        s.extend_from_slice(&[7, 0, 0, 0]);
        s.extend_from_slice(&[5, 0, 0, 0]);
        out.push(s);
    }
    out
}
