//! The netswitch target: a switch driven by a script of port changes, frames and reads.
//! After every step the rules of `netswitch` hold: queues and table within their bounds;
//! a frame is queued only for ports other than its sender, for a port that owns an
//! address only when addressed to it or to a group; a frame from a port that owns an
//! address with another source, or with a source another port owns, goes nowhere.

use netswitch::{Config, Mac, PortId, Switch, Verdict, KINDS};

/// Small bounds, so that the fuzzer reaches them.
const CONFIG: Config = Config {
    ports: 6,
    queue: 4,
    table: 8,
    age: 40,
};

/// The addresses a script picks from: a few unicast ones, broadcast and a multicast.
fn mac(b: u8) -> Mac {
    match b % 10 {
        8 => Mac::BROADCAST,
        9 => Mac([1, 0, 0x5e, 0, 0, 1]),
        n => Mac([2, 0, 0, 0, 0, n]),
    }
}

/// Input: steps of 3 bytes `[op, a, b]`. op % 5: 0 adds a port of kind a % 4 (address
/// mac(b) if the kind owns one), 1 removes port a, 2 sets port a's address to mac(b), 3
/// sends from port a a frame to mac(b) from mac(b >> 4) whose length is op's top bits
/// scaled, 4 reads port a's next frame. Time advances by a's top bits on each send.
pub fn netswitch(data: &[u8]) {
    let mut sw = Switch::new(CONFIG);
    let mut now = 0u64;
    for step in data.chunks_exact(3) {
        let [op, a, b] = [step[0], step[1], step[2]];
        let port = PortId(u16::from(a % 8));
        match op % 5 {
            0 => {
                let kind = KINDS[usize::from(a) % KINDS.len()].kind;
                let m = kind.info().owns_address.then(|| mac(b));
                let _ = sw.add(kind, m);
            }
            1 => {
                let _ = sw.remove(port);
                assert_eq!(sw.queued(port), 0);
            }
            2 => {
                let _ = sw.set_mac(port, mac(b));
            }
            3 => {
                now += u64::from(a >> 3);
                let len = [13, 14, 60, 1518, 1519, 42, 100, 1000][usize::from(op >> 5)];
                send(&mut sw, port, mac(b), mac(b >> 4), len, now);
            }
            _ => {
                let before = sw.queued(port);
                let f = sw.pop(port);
                assert_eq!(f.is_some(), before > 0);
            }
        }
        for p in 0..CONFIG.ports + 2 {
            assert!(sw.queued(PortId(p)) <= CONFIG.queue);
        }
        assert!(sw.table().len() <= CONFIG.table);
    }
}

fn send(sw: &mut Switch, from: PortId, dst: Mac, src: Mac, len: usize, now: u64) {
    let mut f = vec![0u8; len];
    for (i, m) in [dst, src].iter().enumerate() {
        if let Some(d) = f.get_mut(i * 6..i * 6 + 6) {
            d.copy_from_slice(&m.0);
        }
    }
    let ports = || (0..CONFIG.ports).map(PortId);
    let out: Vec<u64> = ports()
        .map(|p| sw.counters(p).map_or(0, |c| c.output))
        .collect();
    let sender = sw.kind(from);
    let owned_elsewhere =
        ports().any(|p| p != from && sw.kind(p).is_some_and(|(_, m)| m == Some(src)));
    let v = sw.input(from, &f, now);
    let Some((_, own)) = sender else {
        assert!(v.is_err(), "a frame from no port");
        return;
    };
    let v = v.expect("a live port takes frames");
    let bad = !(14..=netswitch::MAX_FRAME).contains(&len) || src.is_group();
    let spoof = own.is_some_and(|m| m != src) || (own.is_none() && owned_elsewhere);
    match v {
        Verdict::Bad => assert!(bad),
        Verdict::Spoofed => assert!(!bad && spoof),
        Verdict::Forwarded(n) => {
            assert!(!bad && !spoof, "{f:02x?} from {from:?} forwarded");
            let mut got = 0;
            for (p, before) in ports().zip(out) {
                let after = sw.counters(p).map_or(0, |c| c.output);
                if after == before {
                    continue;
                }
                assert_eq!(after, before + 1);
                got += 1;
                assert_ne!(p, from, "a frame came back to its sender");
                if let Some((kind, Some(m))) = sw.kind(p) {
                    assert!(
                        dst == m || dst.is_group(),
                        "{kind:?} port {p:?} ({m}) got unicast for {dst}"
                    );
                }
            }
            assert_eq!(got, n);
        }
    }
}

/// A network of every kind of port and traffic among them.
pub fn seeds() -> Vec<Vec<u8>> {
    let add = |k: u8, m: u8| [0u8, k, m];
    let send = |p: u8, dst: u8, src: u8| [3u8 | 2 << 5, p, dst | src << 4];
    let mut s = Vec::new();
    for step in [
        add(0, 1),
        add(0, 2),
        add(1, 3),
        add(2, 0),
        add(3, 0),
        send(0, 2, 1),
        send(3, 8, 5),
        send(0, 5, 1),
        send(4, 3, 6),
        send(1, 9, 2),
        [4, 1, 0],
        [2, 0, 7],
        [1, 3, 0],
    ] {
        s.extend_from_slice(&step);
    }
    vec![s]
}

#[cfg(test)]
mod tests {
    use super::*;
    use netswitch::Kind;

    #[test]
    fn the_seed_forwards_frames() {
        for s in seeds() {
            netswitch(&s);
        }
        // The seed's five ports, then its first frame: guest 1 to guest 2.
        let mut sw = Switch::new(CONFIG);
        for step in seeds()[0].chunks_exact(3).take(5) {
            let kind = KINDS[usize::from(step[1])].kind;
            sw.add(kind, kind.info().owns_address.then(|| mac(step[2])))
                .unwrap();
        }
        assert_eq!(sw.kind(PortId(2)).map(|k| k.0), Some(Kind::Host));
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&mac(2).0);
        f[6..12].copy_from_slice(&mac(1).0);
        assert_eq!(sw.input(PortId(0), &f, 0), Ok(Verdict::Forwarded(1)));
    }
}
