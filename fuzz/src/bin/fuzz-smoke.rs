//! Runs every fuzz target on seeded mutations of valid inputs and of the regression
//! corpus, on stable Rust. Usage: fuzz-smoke [ITERATIONS] [SEED]. Deterministic for a
//! given seed, so a failure printed here reproduces.

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
    if !fuzz::runner::run_all(iterations, seed, false) {
        std::process::exit(1);
    }
}
