//! The knet target: the kernel's virtio-net card (devvmx's `pci net`) on the host's switch,
//! driven through the namespace over TestHw: the guest's two rings are the input's image,
//! uploaded into its RAM segment, then the input's operations notify either queue, poke
//! ring and buffer bytes, reset the card, write its MAC, and send and take frames through
//! a client port of the switch (`switch/clone`). Nothing may panic, a segment the VM does
//! not map is never touched, every frame comes back when the VM and segments go, and the
//! card's port leaves the switch with its VM.

use crate::world::{World, RAM};
use devvmx::testhw::Exit;
use devvmx::HostSwitch;
use ninep::{Read, Tree};
use virtio::legacy::{R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_QUEUE_SEL, R_STATUS};
use virtio::net::device::{HDR, RX, TX};
use virtio::testing::{Driver, Ram};

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

/// The driver's bring-up after a reset: both queues, DRIVER_OK.
fn queues() -> [Exit; 5] {
    [
        Exit::io(BAR + R_QUEUE_SEL, 2, false, 0),
        Exit::io(BAR + R_QUEUE_PFN, 4, false, u64::from(RX_PFN)),
        Exit::io(BAR + R_QUEUE_SEL, 2, false, 1),
        Exit::io(BAR + R_QUEUE_PFN, 4, false, u64::from(TX_PFN)),
        Exit::io(BAR + R_STATUS, 1, false, 7),
    ]
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
    let sw = HostSwitch::unbridged(|| 0);
    let mut w = World::new(|ns| ns.set_switch(sw.clone()));
    let (mut ctl, mut other) = w.vm(mode & 1 != 0);
    w.write(&mut ctl, 0, b"pci net 02:00:00:00:00:01")
        .expect("pci net");
    let mut ramdata = w.open(&["segment", "ram", "data"], 2);
    let (image, mut ops) = rest.split_at(IMAGE.min(rest.len()));
    if !image.is_empty() {
        let _ = w.write(&mut ramdata, u64::from(RX_PFN) * 4096, image);
    }
    let mut client = w.open(&["switch", "clone"], 2);
    let mut setup = vec![
        Exit::io(0xcf8, 4, false, 0x8000_0804),
        Exit::io(0xcfc, 2, false, 1),
    ];
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
                        Exit::io(BAR + R_QUEUE_NOTIFY, 2, false, q.into()),
                        Exit::io(BAR + R_ISR, 1, true, 0),
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
                let mut e = vec![Exit::io(BAR + R_STATUS, 1, false, 0)];
                e.extend(queues());
                w.run(&mut ctl, &e);
            }
            6 => w.run(
                &mut ctl,
                &[Exit::io(
                    BAR + 0x14 + u16::from(*a % 6),
                    1,
                    false,
                    (*c).into(),
                )],
            ),
            _ => {
                if let Ok(Read::Done(k)) = w.ns.read(&w.ctx, &mut client, 0, &mut buf) {
                    assert!(k <= buf.len());
                }
            }
        }
    }
    w.other_untouched(&mut other, &mut buf);
    w.ns.remove(&w.ctx, &ctl).expect("quit");
    let st = sw.switch.lock().status().to_string();
    assert!(
        !st.contains(" guest "),
        "the card's port outlived its VM: {st}"
    );
    w.release(&["ram", "other"]);
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
