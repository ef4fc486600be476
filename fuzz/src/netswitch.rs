//! The netswitch target: a switch driven by a script of port changes, frames and reads.
//! After every step the rules of `netswitch` hold: queues and table within their bounds;
//! a frame is queued only for ports other than its sender, for a port that owns an
//! address only when addressed to it or to a group; a frame from a port that owns an
//! address with another source, or with a source another port owns, goes nowhere.

use netswitch::{qfile, Config, Mac, PortId, Switch, Verdict, KINDS};

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

/// Input: steps of 3 bytes `[op, a, b]`. op % 7: 0 adds a port of kind a % 4 (address
/// mac(b) if the kind owns one), 1 removes port a, 2 sets port a's address to mac(b), 3
/// sends from port a a frame to mac(b) from mac(b >> 4) whose length is op's top bits
/// scaled, 4 reads port a's next frame, 5 writes the next b bytes of input to port a's
/// queue file, 6 reads port a's queue file with a count of 8 b. Time advances by a's
/// top bits on each send.
pub fn netswitch(data: &[u8]) {
    let mut sw = Switch::new(CONFIG);
    let mut now = 0u64;
    let mut rest = data;
    while let [op, a, b, tail @ ..] = rest {
        let (op, a, b) = (*op, *a, *b);
        rest = tail;
        let port = PortId(u16::from(a % 8));
        match op % 7 {
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
            4 => {
                let before = sw.queued(port);
                let f = sw.pop(port);
                assert_eq!(f.is_some(), before > 0);
            }
            5 => {
                let (w, tail) = rest.split_at(usize::from(b).min(rest.len()));
                rest = tail;
                qfile_write(&mut sw, port, w, now);
            }
            _ => qfile_read(&mut sw, port, usize::from(b) * 8),
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

/// A write of a queue file delivers all its frames or, when it is bad, none.
fn qfile_write(sw: &mut Switch, p: PortId, w: &[u8], now: u64) {
    let total = |sw: &Switch| -> u64 {
        (0..CONFIG.ports)
            .filter_map(|i| sw.counters(PortId(i)))
            .map(|c| c.input + c.spoof + c.bad)
            .sum()
    };
    let before = total(sw);
    match qfile::write(sw, p, w, now) {
        Ok(n) => {
            assert_eq!(qfile::decode(w).map(|f| f.len()), Ok(n));
            assert_eq!(total(sw), before + n as u64, "every frame counted once");
        }
        Err(_) => assert_eq!(total(sw), before, "a bad write delivered a frame"),
    }
}

/// A read of a queue file returns whole frames within its count, or takes nothing.
fn qfile_read(sw: &mut Switch, p: PortId, count: usize) {
    let before = sw.queued(p);
    match qfile::read(sw, p, count) {
        Ok(b) => {
            assert!(b.len() <= count);
            let frames = qfile::decode(&b).expect("a read decodes");
            assert_eq!(sw.queued(p), before - frames.len());
        }
        Err(qfile::Error::Short(n)) => {
            assert!(n > count);
            assert_eq!(sw.queued(p), before, "a short read took a frame");
        }
        Err(e) => assert_eq!((e, sw.kind(p)), (qfile::Error::NoPort, None)),
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
        [6, 4, 200],
        [2, 0, 7],
        [1, 3, 0],
    ] {
        s.extend_from_slice(&step);
    }
    // The client's queue file takes a frame for guest 1.
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&mac(1).0);
    f[6..12].copy_from_slice(&mac(6).0);
    let mut w = Vec::new();
    qfile::encode(&f, &mut w);
    s.extend_from_slice(&[5, 4, w.len() as u8]);
    s.extend_from_slice(&w);
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
