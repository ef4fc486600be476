//! The stable-Rust driver of the targets: seeded mutations of valid inputs (deterministic
//! for a seed, so a failure reproduces), and the regression corpus, `regressions/TARGET/`,
//! of every input that once found a bug. The corpus is replayed by a test and seeds the
//! mutator; a run that finds a new failure can save it there to be committed.

use crate::Target;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: small, seedable, good enough to pick mutations (and the guest fuzzer's
/// programs, vmm-tests/tests/guest_fuzz_bochs.rs).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 7, 100, 0x10];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = INTERESTING[rng.below(INTERESTING.len())],
            2 => input.insert(rng.below(len + 1), rng.next_u64() as u8),
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

/// A run's seed: environment variable `var` if set, else the clock (print it, so the run
/// can be repeated).
pub fn seed_from(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Where target `name`'s regression inputs live.
pub fn regressions_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name)
}

/// Target `name`'s regression inputs (`*.bin`), by path, in name order.
pub fn regressions(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(regressions_dir(name)) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, Vec<u8>)> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, data)
        })
        .collect();
    v.sort();
    v
}

/// Saves a failing input of target `name` as `regressions/NAME/HASH.bin` (FNV-1a of the
/// bytes, so a second save of the same input is the same file).
pub fn save(name: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = regressions_dir(name);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{h:016x}.bin"));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// A failing input.
#[derive(Debug)]
pub struct Failure {
    pub iteration: u64,
    pub input: Vec<u8>,
}

/// Runs `target` on `iterations` mutations of `seeds`, stopping at the first failure.
pub fn run(
    target: Target,
    seeds: &[Vec<u8>],
    iterations: u64,
    seed: u64,
) -> Result<Duration, Failure> {
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    for iteration in 0..iterations {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, seeds, &mut input);
        if std::panic::catch_unwind(|| target(&input)).is_err() {
            return Err(Failure { iteration, input });
        }
    }
    Ok(start.elapsed())
}

/// Runs every target for `iterations` from the valid seeds and its regression inputs,
/// printing a line each; false at the first failure, which is printed (and saved to the
/// corpus with `save_failures`).
pub fn run_all(iterations: u64, seed: u64, save_failures: bool) -> bool {
    for &(name, target) in crate::TARGETS {
        let mut seeds = crate::seeds();
        seeds.extend(regressions(name).into_iter().map(|(_, d)| d));
        match run(target, &seeds, iterations, seed) {
            Ok(t) => println!("fuzz: {name}: {iterations} inputs in {t:.1?}, no failures"),
            Err(f) => {
                eprintln!(
                    "fuzz: {name} failed at iteration {} (seed {seed}) on {:02x?}",
                    f.iteration, f.input
                );
                if save_failures {
                    match save(name, &f.input) {
                        Ok(p) => eprintln!("fuzz: saved to {} (commit it)", p.display()),
                        Err(e) => eprintln!("fuzz: could not save the input: {e}"),
                    }
                }
                return false;
            }
        }
    }
    true
}
