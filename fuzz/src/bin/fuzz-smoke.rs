//! Runs every fuzz target on seeded mutations of valid inputs, on stable Rust.
//! Usage: fuzz-smoke [ITERATIONS] [SEED]. Deterministic for a given seed, so a failure
//! printed here reproduces.

use std::time::Instant;

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 7, 100, 0x10];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = INTERESTING[rng.below(INTERESTING.len())],
            2 => input.insert(rng.below(len + 1), rng.next() as u8),
            3 if len > 0 => {
                input.remove(rng.below(len));
            }
            4 => {
                let s = &seeds[rng.below(seeds.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, s.iter().copied());
            }
            5 if len > 4 => {
                // Keep size[4] honest half the time, so bodies get exercised.
                let n = len as u32;
                input[..4].copy_from_slice(&n.to_le_bytes());
            }
            _ => input.truncate(rng.below(len + 1)),
        }
    }
    input.truncate(4096);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let seeds = fuzz::seeds();
    for &(name, target) in fuzz::TARGETS {
        let mut rng = Rng(seed | 1);
        let start = Instant::now();
        for i in 0..iterations {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, &mut input);
            let r = std::panic::catch_unwind(|| target(&input));
            if r.is_err() {
                eprintln!(
                    "fuzz-smoke: {name} failed at iteration {i} (seed {seed}) on {input:02x?}"
                );
                std::process::exit(1);
            }
        }
        println!(
            "fuzz-smoke: {name}: {iterations} inputs in {:.1?}, no failures",
            start.elapsed()
        );
    }
}
