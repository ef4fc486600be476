//! The long fuzz run: 10^7 inputs per target (FUZZ_ITERATIONS overrides), seeded from the
//! clock unless FUZZ_SEED is set (the seed is printed, so a failure reproduces). A failing
//! input is saved under fuzz/regressions/TARGET/ to be committed, and replayed by
//! tests/regressions.rs from then on. Not part of CI:
//!
//! cargo test -p fuzz --release --test long_run -- --ignored --nocapture

#[test]
#[ignore = "about 15 minutes: 10^7 inputs per target"]
fn ten_million_inputs_per_target() {
    let iterations = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let seed = fuzz::runner::seed_from("FUZZ_SEED");
    println!("fuzz: seed {seed}, {iterations} inputs per target");
    assert!(
        fuzz::runner::run_all(iterations, seed, true),
        "a target failed (seed {seed}); its input is saved under fuzz/regressions/"
    );
}
