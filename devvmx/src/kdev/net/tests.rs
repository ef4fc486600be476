//! Two VMs' in-kernel cards on one switch, each driven as Linux's legacy virtio-net
//! driver would through its BAR, in host memory standing for the guest's.

use super::super::{parse as parse_devices, KDev};
use super::*;
use alloc::string::ToString;
use alloc::vec;
use virtio::legacy::{R_GUEST_FEATURES, R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_QUEUE_SEL, R_STATUS};
use virtio::net::device::{HDR, TX};
use virtio::testing::{Driver, Ram};

const LIMIT: u64 = 1 << 20;
const MA: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
/// Where the first function the kernel places goes.
const BAR: u32 = 0xc000;
const IRQ: u8 = 10;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(|w| w.to_string()).collect()
}

fn host_switch() -> HostSwitch {
    HostSwitch::unbridged(|| 0)
}

/// One VM: its devices, its memory and its driver's queues (receive at page 16,
/// transmit at page 32).
struct Guest {
    k: KDev,
    ram: Ram,
    drv: [Driver; 2],
}

impl Guest {
    fn new(sw: &HostSwitch, mac: [u8; 6]) -> Guest {
        let mut k = KDev::new(parse_devices(&words("pic pci")).unwrap());
        k.pci_net(Some(sw), &words(&Mac(mac).to_string())).unwrap();
        let mut g = Guest {
            k,
            ram: Ram::new(LIMIT as usize),
            drv: [Driver::new(128, 16), Driver::new(128, 32)],
        };
        // The driver's bring-up: features, both queues, DRIVER_OK.
        g.out(R_GUEST_FEATURES, 4, 1 << 5);
        for (q, pfn) in [(0, 16), (1, 32)] {
            g.out(R_QUEUE_SEL, 2, q);
            g.out(R_QUEUE_PFN, 4, pfn);
        }
        g.out(R_STATUS, 1, 0xf);
        g
    }

    fn out(&mut self, off: u16, size: u8, v: u32) {
        self.k
            .net_io_in(0, off, size, Some(v), &mut self.ram, LIMIT);
    }

    fn inb(&mut self, off: u16) -> u32 {
        self.k.net_io_in(0, off, 1, None, &mut self.ram, LIMIT)
    }

    fn port(&self) -> PortId {
        self.k.nets[0].dev.kind.port.id
    }

    fn line(&self) -> bool {
        self.k.board.pic.lines() & 1 << IRQ != 0
    }

    /// Offers one receive buffer at `at`.
    fn give_rx(&mut self, at: u64) {
        self.drv[0].offer(&mut self.ram, &[(at, 2048, true)]);
        self.out(R_QUEUE_NOTIFY, 2, u32::from(RX));
    }

    fn send(&mut self, f: &[u8]) {
        self.ram.b[0x1000 + HDR..0x1000 + HDR + f.len()].copy_from_slice(f);
        let n = (HDR + f.len()) as u32;
        self.drv[1].offer(&mut self.ram, &[(0x1000, n, false)]);
        self.out(R_QUEUE_NOTIFY, 2, u32::from(TX));
    }

    fn poll(&mut self) {
        self.k.net_poll_in(&mut self.ram, LIMIT);
    }
}

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x5au8; 64];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

#[test]
fn net_lines() {
    let p = |s: &str| parse(&words(s)).map_err(|e| String::from(e.as_str()));
    assert_eq!(p("02:00:00:00:00:0a"), Ok(Mac(MA)));
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:0a 11",
        "02-00-00-00-00-0a",
    ] {
        assert_eq!(p(bad), Err(EBADARG.into()), "{bad}");
    }
}

#[test]
fn a_card_needs_the_bus_the_pic_and_a_switch() {
    let sw = host_switch();
    let line = words("02:00:00:00:00:0a");
    let e = |k: &mut KDev, sw| String::from(k.pci_net(sw, &line).unwrap_err().as_str());
    let mut k = KDev::new(parse_devices(&words("pic")).unwrap());
    assert_eq!(e(&mut k, Some(&sw)), ENEEDS);
    let mut k = KDev::new(parse_devices(&words("pci")).unwrap());
    assert_eq!(e(&mut k, Some(&sw)), ENEEDS);
    let mut k = KDev::new(parse_devices(&words("pic pci")).unwrap());
    assert_eq!(e(&mut k, None), ENOSWITCH);
    let group = words("01:00:5e:00:00:01");
    assert!(k.pci_net(Some(&sw), &group).is_err(), "a group address");
    assert!(k.pci_net(Some(&sw), &line).is_ok());
    assert_eq!(e(&mut k, Some(&sw)), "mac address in use on the switch");
    assert!(k.pci_net(Some(&sw), &words("02:00:00:00:00:0b")).is_ok());
    // The functions on the bus: 1af4:1000, class 020000, each placed after the last.
    let f: Vec<_> = k
        .pci
        .functions()
        .map(|(f, bar)| (f.id, f.class_rev >> 8, f.irq, bar))
        .collect();
    assert_eq!(
        f,
        [
            (0x1000_1af4, 0x02_0000, IRQ, BAR),
            (0x1000_1af4, 0x02_0000, 11, BAR + 0x40)
        ]
    );
    assert_eq!(
        (k.net_at(0), k.net_at(1), k.net_at(2)),
        (Some(0), Some(1), None)
    );
}

#[test]
fn two_vms_exchange_frames_through_the_switch() {
    let sw = host_switch();
    let mut a = Guest::new(&sw, MA);
    let mut b = Guest::new(&sw, MB);
    // The driver reads the MAC from the configuration.
    assert_eq!(a.inb(0x14), 2);
    assert_eq!(a.inb(0x19), 0xa);
    b.give_rx(0x4000);
    // A broadcast from A (B learns nothing yet; the switch learns A).
    a.send(&frame([0xff; 6], MA));
    assert_eq!(a.drv[1].used_idx(&a.ram), 1, "A's buffer came back");
    assert!(a.line(), "A is interrupted for its used buffer");
    assert_eq!(a.inb(R_ISR), 1);
    assert!(!a.line(), "reading the ISR lowers the line");
    assert!(!b.line(), "nothing for B until its poll");
    b.poll();
    assert!(b.line(), "B's frame arrived: its line is up");
    assert_eq!(b.drv[0].used_idx(&b.ram), 1);
    assert_eq!(b.drv[0].used_entry(&b.ram, 0).1, (HDR + 64) as u32);
    assert_eq!(
        b.ram.b[0x4000 + HDR..0x4000 + HDR + 64],
        frame([0xff; 6], MA)[..]
    );
    // B answers A by unicast: the switch knows where A is.
    a.give_rx(0x4000);
    b.send(&frame(MA, MB));
    a.poll();
    assert_eq!(a.drv[0].used_idx(&a.ram), 1);
    assert_eq!(a.ram.b[0x4000 + HDR..0x4000 + HDR + 64], frame(MA, MB)[..]);
    // A frame waits at the port while B has no receive buffer, and goes in with the next.
    a.send(&frame(MB, MA));
    b.poll();
    assert_eq!(sw.switch.lock().queued(b.port()), 1);
    b.give_rx(0x4800);
    assert_eq!(b.drv[0].used_idx(&b.ram), 2);
    assert_eq!(sw.switch.lock().queued(b.port()), 0);
}

#[test]
fn a_guest_posing_as_another_is_dropped() {
    let sw = host_switch();
    let mut a = Guest::new(&sw, MA);
    let mut b = Guest::new(&sw, MB);
    b.give_rx(0x4000);
    a.send(&frame([0xff; 6], MB));
    b.poll();
    assert_eq!(b.drv[0].used_idx(&b.ram), 0, "nothing reached B");
    assert_eq!(sw.switch.lock().counters(a.port()).unwrap().spoof, 1);
    // The driver gives its card B's MAC: the switch keeps A's port on its own address
    // (B owns that one), so the card's frames from B's still drop.
    let set = |a: &mut Guest, mac: [u8; 6]| {
        for (i, v) in mac.iter().enumerate() {
            a.out(0x14 + i as u16, 1, u32::from(*v));
        }
    };
    set(&mut a, MB);
    assert_eq!(
        sw.switch.lock().kind(a.port()),
        Some((Kind::Guest, Some(Mac(MA))))
    );
    a.send(&frame([0xff; 6], MB));
    assert_eq!(sw.switch.lock().counters(a.port()).unwrap().spoof, 2);
    // A free address: the port follows it, and the card's frames from it pass.
    let mc = [2, 0, 0, 0, 0, 0xc];
    set(&mut a, mc);
    assert_eq!(
        sw.switch.lock().kind(a.port()),
        Some((Kind::Guest, Some(Mac(mc))))
    );
    a.send(&frame([0xff; 6], mc));
    b.poll();
    assert_eq!(b.drv[0].used_idx(&b.ram), 1);
}

#[test]
fn a_reset_flushes_the_port_and_removal_frees_it() {
    let sw = host_switch();
    let mut a = Guest::new(&sw, MA);
    let b = Guest::new(&sw, MB);
    a.send(&frame(MB, MA));
    assert_eq!(sw.switch.lock().queued(b.port()), 1);
    let pb = b.port();
    let mut b = b;
    b.out(R_STATUS, 1, 0);
    assert_eq!(sw.switch.lock().queued(pb), 0, "the reset flushed B's port");
    drop(b);
    assert_eq!(sw.switch.lock().kind(pb), None, "B's port left with its VM");
    assert!(sw.switch.lock().kind(a.port()).is_some());
}

#[test]
fn a_transmit_notify_sends_a_budget_and_each_poll_the_next() {
    let sw = host_switch();
    let mut a = Guest::new(&sw, MA);
    let b = Guest::new(&sw, MB);
    // 40 frames made available, then one notify.
    let f = frame(MB, MA);
    for i in 0..40u64 {
        let at = 0x1000 + i as usize * 0x100;
        a.ram.b[at + HDR..at + HDR + f.len()].copy_from_slice(&f);
        let n = (HDR + f.len()) as u32;
        a.drv[1].offer(&mut a.ram, &[(at as u64, n, false)]);
    }
    a.out(R_QUEUE_NOTIFY, 2, u32::from(TX));
    let budget = usize::from(super::super::VIRTIO_BUDGET.chains);
    assert_eq!(sw.switch.lock().queued(b.port()), budget);
    assert_eq!(usize::from(a.drv[1].used_idx(&a.ram)), budget);
    assert!(a.line() && a.k.net_pending());
    // The rest before the next entry, with no notify.
    assert_eq!(a.inb(R_ISR), 1);
    a.poll();
    assert_eq!(sw.switch.lock().queued(b.port()), 40);
    assert_eq!(a.drv[1].used_idx(&a.ram), 40);
    assert!(a.line() && !a.k.net_pending());
}
