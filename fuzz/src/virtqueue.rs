//! The virtqueue target: the device side of a split ring (`virtio::queue`, the code the
//! tool's virtio devices and the kernel's share) over a guest memory whose ring bytes are
//! the input's, rewritten a byte at a time between notifications as a racing driver
//! would. Every take is chains inside the table and guest memory, or a reason that sticks
//! until reset; nothing panics. Each chain is also served as a virtio-blk request
//! (`virtio::blk`, the device model both sides run) from a small disk.

use virtio::blk::Blk;
use virtio::queue::{gather, gather_into, scatter, Queue};
use virtio::ring::Layout;
use virtio::testing::{Driver, Ram};

/// Guest memory: 64 KiB, room for the largest queue fuzzed (128 entries) at any PFN used.
const RAM: usize = 0x10000;
/// Bytes of input before the ring image: size, limit and PFN choices.
const HEADER: usize = 2;
/// At most this many notifications per input.
const ROUNDS: usize = 64;

/// Input: `[size and limit, pfn] ring image [offset lo, offset hi, byte]...`. The size is
/// 1 << (b0 & 7); b0 >> 3 & 3 picks the end of memory the device is told (all of it,
/// half, a little, or past the array, where reads fail); b0 >> 5, if not 0, is the most
/// chains a take may return (a budget: the rest stay in the ring for the next); the PFN
/// is b1 % 5 (0: not set up).
/// The image is copied to the ring's place; each later triple writes one byte of the
/// ring, then the device is notified again.
pub fn virtqueue(data: &[u8]) {
    let [b0, b1, ..] = *data else { return };
    let size = 1u16 << (b0 & 7);
    let limit =
        [RAM as u64, RAM as u64 / 2, 0x1800, RAM as u64 + 0x10000][usize::from(b0 >> 3 & 3)];
    let most = match b0 >> 5 {
        0 => u16::MAX,
        n => u16::from(n),
    };
    let pfn = u32::from(b1 % 5);
    let base = pfn as usize * 4096;
    let span = Layout::legacy(size).end();
    let mut ram = Ram::new(RAM);
    let (image, mut ops) = data[HEADER..].split_at(span.min(data.len() - HEADER));
    ram.b[base..base + image.len()].copy_from_slice(image);

    let mut q = Queue::new(size);
    q.pfn = pfn;
    let mut blk = Blk::new(Box::new(vec![0x5a; 8 * 512]), b1 & 8 != 0, "fuzz");
    let mut given = 0u16;
    for _ in 0..ROUNDS {
        match q.take_some(&mut ram, limit, most) {
            Ok(chains) => {
                assert!(q.ready() || pfn == 0);
                assert!(chains.len() <= usize::from(most));
                assert!(!q.behind() || chains.len() == usize::from(most));
                let mut done = Vec::new();
                for c in &chains {
                    assert!(c.head < size, "head {} in a queue of {size}", c.head);
                    assert!(!c.bufs.is_empty() && c.bufs.len() <= usize::from(size));
                    for b in &c.bufs {
                        let end = b.addr.checked_add(u64::from(b.len));
                        assert!(end.is_some_and(|e| e <= limit), "{b:?} past {limit:#x}");
                    }
                    // The device's use of the buffers: errors (memory that fails) are
                    // allowed, panics are not.
                    // Requests read the header and move data within the chain's
                    // buffers; a chain that carries none is an error, never a panic.
                    let _ = blk.serve(c, &mut ram);
                    let rd = c.readable();
                    if rd.iter().map(|b| u64::from(b.len)).sum::<u64>() <= 0x4000 {
                        let _ = gather(&mut ram, &rd);
                    }
                    let mut head = [0u8; 64];
                    if let Ok(n) = gather_into(&mut ram, &rd, &mut head) {
                        assert!(n <= head.len());
                    }
                    let n = scatter(&mut ram, &c.writable(), &[0xa5; 64]).unwrap_or(0);
                    done.push((c.head, n));
                }
                if q.put(&mut ram, &done).is_ok() && pfn != 0 && !done.is_empty() {
                    given = given.wrapping_add(done.len() as u16);
                    let d = Driver::new(size, pfn);
                    assert_eq!(d.used_idx(&ram), given, "the used index went astray");
                }
            }
            Err(why) => {
                assert!(!why.is_empty());
                assert_eq!(q.broken.as_deref(), Some(why.as_str()));
                let reads = ram.reads;
                assert_eq!(q.take(&mut ram, limit).unwrap_err(), why);
                assert_eq!(ram.reads, reads, "a broken queue read memory");
                q.reset();
                q.pfn = pfn;
                given = 0;
                ram.b[base..base + span].fill(0);
            }
        }
        let [lo, hi, v, rest @ ..] = ops else { break };
        ram.b[base + usize::from(u16::from_le_bytes([*lo, *hi])) % span] = *v;
        ops = rest;
    }
}

/// Good rings to start from: chains of one and several buffers, a full ring, and one
/// with a byte of its index left to change.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (b0, chains) in [(3u8, 1usize), (4, 3), (2, 4), (7, 2)] {
        let size = 1u16 << (b0 & 7);
        let mut ram = Ram::new(RAM);
        let mut d = Driver::new(size, 1);
        for i in 0..chains as u64 {
            let bufs = [
                (0x4000 + i * 0x100, 16, false),
                (0x5000 + i * 0x100, 64, true),
            ];
            d.offer(&mut ram, &bufs[..1 + (i as usize % 2)]);
        }
        let span = Layout::legacy(size).end();
        let mut s = vec![b0, 1];
        s.extend_from_slice(&ram.b[4096..4096 + span]);
        // A later notification with one more entry made available.
        let idx = Layout::legacy(size).avail_idx() as u16;
        s.extend_from_slice(&idx.to_le_bytes());
        s.push(chains as u8 + 1);
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are good rings, so that mutations start from chains, not errors.
    #[test]
    fn seeds_hold_chains() {
        for s in seeds() {
            let size = 1u16 << (s[0] & 7);
            let mut ram = Ram::new(RAM);
            let span = Layout::legacy(size).end();
            ram.b[4096..4096 + span].copy_from_slice(&s[HEADER..HEADER + span]);
            let mut q = Queue::new(size);
            q.pfn = 1;
            assert!(!q.take(&mut ram, RAM as u64).unwrap().is_empty());
            virtqueue(&s);
        }
    }
}
