//! One test per rule of the crate's documentation, through [`Switch`]'s interface.

use super::*;
use alloc::string::ToString;
use alloc::vec;

const G1: Mac = Mac([2, 0, 0, 0, 0, 1]);
const G2: Mac = Mac([2, 0, 0, 0, 0, 2]);
const HOST: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
/// A host on the LAN, behind the uplink.
const LAN: Mac = Mac([0x52, 0x55, 10, 0, 2, 2]);
/// An address nobody has used.
const STRANGER: Mac = Mac([2, 9, 9, 9, 9, 9]);

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// Two guests, the host interface, the uplink and a client queue file.
struct Net {
    sw: Switch,
    g1: PortId,
    g2: PortId,
    host: PortId,
    up: PortId,
    cl: PortId,
}

fn net(c: Config) -> Net {
    let mut sw = Switch::new(c);
    let g1 = sw.add(Kind::Guest, Some(G1)).unwrap();
    let g2 = sw.add(Kind::Guest, Some(G2)).unwrap();
    let host = sw.add(Kind::Host, Some(HOST)).unwrap();
    let up = sw.add(Kind::Uplink, None).unwrap();
    let cl = sw.add(Kind::Client, None).unwrap();
    Net {
        sw,
        g1,
        g2,
        host,
        up,
        cl,
    }
}

impl Net {
    fn all(&self) -> [PortId; 5] {
        [self.g1, self.g2, self.host, self.up, self.cl]
    }

    /// Sends a frame and returns the ports it reached (each port's queue drained).
    fn send(&mut self, from: PortId, f: &[u8]) -> Vec<PortId> {
        let v = self.sw.input(from, f, 0).unwrap();
        let mut got = Vec::new();
        for p in self.all() {
            while let Some(x) = self.sw.pop(p) {
                assert_eq!(x, f, "frames pass unchanged");
                got.push(p);
            }
        }
        if let Verdict::Forwarded(n) = v {
            assert_eq!(n, got.len());
        } else {
            assert!(got.is_empty());
        }
        got
    }
}

#[test]
fn runts_giants_and_group_sources_are_dropped_and_counted() {
    let mut n = net(Config::default());
    for f in [
        frame(G2, G1, 60)[..13].to_vec(),
        frame(G2, G1, MAX_FRAME + 1),
        frame(G2, Mac::BROADCAST, 60),
    ] {
        assert_eq!(n.sw.input(n.g1, &f, 0), Ok(Verdict::Bad));
    }
    // A group source from a learning port is bad too, and is not learned.
    assert_eq!(
        n.sw.input(n.up, &frame(G1, Mac([1, 0, 0x5e, 0, 0, 1]), 60), 0),
        Ok(Verdict::Bad)
    );
    assert!(n.sw.table().is_empty());
    assert_eq!(n.sw.counters(n.g1).unwrap().bad, 3);
    assert_eq!(n.sw.counters(n.g1).unwrap().input, 0);
    assert_eq!(n.send(n.g1, &frame(G2, G1, MAX_FRAME)), [n.g2]);
    assert_eq!(n.send(n.g1, &frame(G2, G1, HEADER_LEN)), [n.g2]);
}

#[test]
fn a_port_with_an_address_sends_only_from_it_and_nobody_takes_it() {
    let mut n = net(Config::default());
    // A guest posing as the other guest, the host, a LAN host.
    for src in [G2, HOST, LAN] {
        let f = frame(Mac::BROADCAST, src, 60);
        assert_eq!(n.sw.input(n.g1, &f, 0), Ok(Verdict::Spoofed));
    }
    assert_eq!(n.sw.counters(n.g1).unwrap().spoof, 3);
    // The host interface's frames carry its address.
    let f = frame(Mac::BROADCAST, G1, 60);
    assert_eq!(n.sw.input(n.host, &f, 0), Ok(Verdict::Spoofed));
    // A LAN host or a client link posing as a guest or as the hypervisor.
    for (p, src) in [(n.up, G1), (n.up, HOST), (n.cl, G2)] {
        let f = frame(Mac::BROADCAST, src, 60);
        assert_eq!(n.sw.input(p, &f, 0), Ok(Verdict::Spoofed));
    }
    assert!(n.sw.table().is_empty(), "a spoofed source is not learned");
    for p in n.all() {
        assert_eq!(n.sw.queued(p), 0);
    }
}

#[test]
fn broadcast_and_multicast_reach_every_other_port() {
    let mut n = net(Config::default());
    for dst in [
        Mac::BROADCAST,
        Mac([1, 0, 0x5e, 0, 0, 0xfb]),
        Mac([0x33, 0x33, 0, 0, 0, 1]),
    ] {
        assert_eq!(
            n.send(n.g1, &frame(dst, G1, 60)),
            [n.g2, n.host, n.up, n.cl]
        );
        assert_eq!(
            n.send(n.up, &frame(dst, LAN, 60)),
            [n.g1, n.g2, n.host, n.cl]
        );
        assert_eq!(
            n.send(n.host, &frame(dst, HOST, 60)),
            [n.g1, n.g2, n.up, n.cl]
        );
    }
}

#[test]
fn unicast_for_an_owned_address_reaches_only_its_owner() {
    let mut n = net(Config::default());
    // The hypervisor's interface: from the LAN, a guest, a client; never a guest.
    assert_eq!(n.send(n.up, &frame(HOST, LAN, 60)), [n.host]);
    assert_eq!(n.send(n.g1, &frame(HOST, G1, 60)), [n.host]);
    assert_eq!(n.send(n.cl, &frame(HOST, STRANGER, 60)), [n.host]);
    // Guest to guest, and the LAN to a guest.
    assert_eq!(n.send(n.g1, &frame(G2, G1, 60)), [n.g2]);
    assert_eq!(n.send(n.up, &frame(G1, LAN, 60)), [n.g1]);
    assert_eq!(n.send(n.host, &frame(G2, HOST, 60)), [n.g2]);
    // To itself: nowhere.
    assert_eq!(n.send(n.g1, &frame(G1, G1, 60)), []);
}

#[test]
fn unknown_unicast_reaches_only_learning_ports() {
    let mut n = net(Config::default());
    // The LAN's traffic for other LAN hosts (a promiscuous NIC sees it): no guest, no host.
    assert_eq!(n.send(n.up, &frame(STRANGER, LAN, 60)), [n.cl]);
    assert_eq!(n.send(n.g1, &frame(STRANGER, G1, 60)), [n.up, n.cl]);
    assert_eq!(
        n.send(n.cl, &frame(Mac([2, 7, 7, 7, 7, 7]), STRANGER, 60)),
        [n.up]
    );
}

#[test]
fn learned_addresses_are_used_then_age() {
    let mut n = net(Config {
        age: 1000,
        ..Config::default()
    });
    n.sw.input(n.up, &frame(Mac::BROADCAST, LAN, 60), 0)
        .unwrap();
    n.sw.input(n.cl, &frame(Mac::BROADCAST, STRANGER, 60), 0)
        .unwrap();
    for p in n.all() {
        while n.sw.pop(p).is_some() {}
    }
    assert_eq!(n.sw.table().lookup(LAN, 0), Some(n.up));
    assert_eq!(n.send(n.g1, &frame(LAN, G1, 60)), [n.up]);
    assert_eq!(n.send(n.g1, &frame(STRANGER, G1, 60)), [n.cl]);
    // A learned destination on the sender's own port goes nowhere.
    assert_eq!(n.send(n.up, &frame(LAN, Mac([2, 3, 3, 3, 3, 3]), 60)), []);
    // Past the ageing time the address is unknown again: flooded to the learning ports.
    let f = frame(LAN, G1, 60);
    assert_eq!(n.sw.input(n.g1, &f, 1001), Ok(Verdict::Forwarded(2)));
    assert_eq!((n.sw.queued(n.up), n.sw.queued(n.cl)), (1, 1));
    n.sw.expire(5000);
    assert!(n.sw.table().is_empty());
}

#[test]
fn the_table_stays_within_its_bound() {
    let mut n = net(Config {
        table: 8,
        ..Config::default()
    });
    for i in 0..100u8 {
        let src = Mac([2, 1, 1, 1, 1, i]);
        n.sw.input(n.up, &frame(Mac::BROADCAST, src, 60), u64::from(i))
            .unwrap();
    }
    assert_eq!(n.sw.table().len(), 8);
    assert_eq!(n.sw.table().evicted, 92);
    assert_eq!(
        n.sw.table().lookup(Mac([2, 1, 1, 1, 1, 99]), 99),
        Some(n.up)
    );
}

#[test]
fn full_queues_drop_and_count_and_stay_bounded() {
    let mut n = net(Config {
        queue: 8,
        ..Config::default()
    });
    // One port flooding another takes half of its queue (more than its share, 2 of the 8
    // among the 4 other ports); the rest of its frames drop, counted at the queue.
    for i in 0..10u8 {
        let mut f = frame(G2, G1, 60);
        f[14] = i;
        let v = n.sw.input(n.g1, &f, 0).unwrap();
        assert_eq!(v, Verdict::Forwarded(usize::from(i < 4)));
    }
    assert_eq!(n.sw.queued(n.g2), 4);
    let c = n.sw.counters(n.g2).unwrap();
    assert_eq!((c.output, c.full), (4, 6));
    assert_eq!(n.sw.counters(n.g1).unwrap().input, 10);
    // The other ports still get in, each up to its share, until the queue is full.
    assert!(!n.sw.room(n.g2, n.g1) && n.sw.room(n.g2, n.host));
    for (from, src) in [(n.host, HOST), (n.up, LAN), (n.cl, STRANGER)] {
        for _ in 0..3 {
            n.sw.input(from, &frame(G2, src, 60), 0).unwrap();
        }
    }
    assert_eq!(n.sw.queued(n.g2), 8);
    assert!(!n.sw.room(n.g2, n.cl), "full, though under its share");
    let c = n.sw.counters(n.g2).unwrap();
    assert_eq!((c.output, c.full), (8, 6 + 1 + 1 + 3));
    // First in, first out; room again once read.
    for i in 0..4 {
        assert_eq!(n.sw.pop(n.g2).unwrap()[14], i);
    }
    assert!(
        n.sw.room(n.g2, n.cl) && !n.sw.room(n.g2, n.host),
        "the host has its share"
    );
    while n.sw.pop(n.g2).is_some() {}
    assert!(n.sw.room(n.g2, n.g1));
    // A broadcast still reaches every port whose queue has room for its sender.
    for (from, src, count) in [(n.host, HOST, 4), (n.up, LAN, 2), (n.cl, STRANGER, 2)] {
        for _ in 0..count {
            n.sw.input(from, &frame(G2, src, 60), 0).unwrap();
        }
    }
    assert_eq!(n.sw.queued(n.g2), 8);
    let v = n.sw.input(n.g1, &frame(Mac::BROADCAST, G1, 60), 0).unwrap();
    assert_eq!(v, Verdict::Forwarded(3));
    n.sw.flush(n.g2);
    assert_eq!(n.sw.queued(n.g2), 0);
    // Flushed, every port has its room back.
    for i in 0..5 {
        let v = n.sw.input(n.g1, &frame(G2, G1, 60), 0).unwrap();
        assert_eq!(v, Verdict::Forwarded(usize::from(i < 4)));
    }
}

#[test]
fn a_lone_port_may_fill_a_queue_and_shares_follow_the_ports() {
    let mut sw = Switch::new(Config {
        queue: 8,
        ..Config::default()
    });
    let g1 = sw.add(Kind::Guest, Some(G1)).unwrap();
    let g2 = sw.add(Kind::Guest, Some(G2)).unwrap();
    // Two ports: the other's share is the whole queue.
    for i in 0..10 {
        let v = sw.input(g1, &frame(G2, G1, 60), 0).unwrap();
        assert_eq!(v, Verdict::Forwarded(usize::from(i < 8)));
    }
    while sw.pop(g2).is_some() {}
    // Three: half the queue for a port flooding it (its share, 4, is no more).
    let host = sw.add(Kind::Host, Some(HOST)).unwrap();
    for i in 0..10 {
        let v = sw.input(g1, &frame(G2, G1, 60), 0).unwrap();
        assert_eq!(v, Verdict::Forwarded(usize::from(i < 4)));
    }
    for i in 0..10 {
        let v = sw.input(host, &frame(G2, HOST, 60), 0).unwrap();
        assert_eq!(v, Verdict::Forwarded(usize::from(i < 4)));
    }
    assert_eq!(sw.queued(g2), 8);
}

#[test]
fn ports_come_and_go() {
    let mut sw = Switch::new(Config {
        ports: 3,
        ..Config::default()
    });
    assert_eq!(sw.add(Kind::Guest, None), Err(Error::BadAddress));
    assert_eq!(sw.add(Kind::Uplink, Some(G1)), Err(Error::BadAddress));
    assert_eq!(
        sw.add(Kind::Guest, Some(Mac::BROADCAST)),
        Err(Error::BadAddress)
    );
    let g = sw.add(Kind::Guest, Some(G1)).unwrap();
    assert_eq!(sw.add(Kind::Host, Some(G1)), Err(Error::AddressInUse));
    let up = sw.add(Kind::Uplink, None).unwrap();
    let cl = sw.add(Kind::Client, None).unwrap();
    assert_eq!(sw.add(Kind::Client, None), Err(Error::NoRoom));
    sw.input(up, &frame(Mac::BROADCAST, LAN, 60), 0).unwrap();
    assert_eq!(sw.table().len(), 1);
    // A guest changes its card's address: the new one is its own, the old one free.
    sw.set_mac(g, G2).unwrap();
    assert_eq!(sw.set_mac(g, Mac::BROADCAST), Err(Error::BadAddress));
    assert_eq!(sw.set_mac(up, G1), Err(Error::BadAddress));
    assert_eq!(
        sw.input(g, &frame(Mac::BROADCAST, G1, 60), 0),
        Ok(Verdict::Spoofed)
    );
    assert_eq!(
        sw.input(g, &frame(Mac::BROADCAST, G2, 60), 0),
        Ok(Verdict::Forwarded(2))
    );
    // Taking a learned address as a card's own forgets where it was learned.
    sw.set_mac(g, LAN).unwrap();
    assert!(sw.table().is_empty());
    sw.input(cl, &frame(Mac::BROADCAST, STRANGER, 60), 0)
        .unwrap();
    sw.remove(cl).unwrap();
    assert!(
        sw.table().is_empty(),
        "what was learned on a port goes with it"
    );
    assert_eq!(sw.remove(cl), Err(Error::NoPort));
    assert_eq!(
        sw.input(cl, &frame(G1, STRANGER, 60), 0),
        Err(Error::NoPort)
    );
    assert_eq!(sw.counters(cl), None);
    assert_eq!(
        sw.add(Kind::Client, None),
        Ok(cl),
        "its number is free again"
    );
    assert_eq!(
        Error::AddressInUse.to_string(),
        "mac address in use on the switch"
    );
}

#[test]
fn status_lists_ports_and_counters() {
    let mut n = net(Config {
        table: 8,
        ..Config::default()
    });
    n.sw.input(n.up, &frame(Mac::BROADCAST, LAN, 60), 0)
        .unwrap();
    n.sw.input(n.g1, &frame(Mac::BROADCAST, G2, 60), 0).unwrap();
    assert_eq!(
        n.sw.status().to_string(),
        "port 0 guest 02:00:00:00:00:01 in 0 out 1 full 0 spoof 1 bad 0 queued 1\n\
         port 1 guest 02:00:00:00:00:02 in 0 out 1 full 0 spoof 0 bad 0 queued 1\n\
         port 2 host 52:54:00:12:34:56 in 0 out 1 full 0 spoof 0 bad 0 queued 1\n\
         port 3 uplink - in 1 out 0 full 0 spoof 0 bad 0 queued 0\n\
         port 4 client - in 0 out 1 full 0 spoof 0 bad 0 queued 1\n\
         table 1/8 evicted 0\n"
    );
    for k in KINDS {
        assert_eq!(k.kind.info().name, k.name);
    }
}
