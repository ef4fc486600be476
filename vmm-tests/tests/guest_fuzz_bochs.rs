//! Random guests on the #X device under Bochs (VT-x): 64 random bytes at guest-physical
//! 0x1000, run in real, 32-bit protected or long mode with random general registers and
//! arithmetic flags. Each VM runs to its first exit, or is stopped after a timeout (`stop`
//! gives no wait line: its status must become `ready`), then removed. The host must keep
//! serving, no VM may be left and `memfree` must come back to its first value; the exit
//! kinds seen are printed. 200 programs here; the ignored long run does 10,000
//! (GUEST_FUZZ_PROGRAMS and GUEST_FUZZ_SEED override; the seed is printed, so a run
//! reproduces):
//!
//! cargo test -p vmm-tests --test guest_fuzz_bochs -- --ignored --nocapture

mod fuzz_guests;

use fuzz::runner::Rng;
use fuzz_guests::{nothing_left, run_one, segment, start, Guest, Start, MODES};
use std::collections::BTreeMap;
use std::time::Instant;

const SEG: &str = "fz";
const SEGSIZE: u64 = 0x10_0000;
const PROGRAM: usize = 64;

fn fuzz(programs: usize) {
    let Start {
        seed,
        programs,
        m,
        c,
        memfree,
    } = start("guest fuzz", programs);
    let data = segment(&c, SEG, SEGSIZE);
    let mut rng = Rng(seed | 1);
    let map = format!("rwx wb 0x0 {SEGSIZE:#x} {SEG} 0x0\n");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for i in 0..programs {
        let mode = MODES[i % 3];
        let program: Vec<u8> = (0..PROGRAM).map(|_| rng.next_u64() as u8).collect();
        let guest = Guest {
            program: &program,
            map: &map,
            ctl: &[],
        };
        let (kind, ()) = run_one(&c, &data, mode, &mut rng, &guest, |_| ());
        *kinds.entry(format!("{mode:?} {kind}")).or_default() += 1;
        if (i + 1) % 1000 == 0 {
            println!("guest fuzz: {} programs in {:.0?}", i + 1, start.elapsed());
        }
    }
    println!(
        "guest fuzz: {programs} programs in {:.1?}; exits by mode and kind:",
        start.elapsed()
    );
    for (k, n) in &kinds {
        println!("  {n:6} {k}");
    }
    drop(data);
    nothing_left(&c, &[SEG], &memfree, programs);
    assert!(
        kinds.keys().any(|k| !k.ends_with(" timeout")),
        "no program exited: {kinds:?}"
    );
    let log = m.log();
    assert!(!log.contains("kernel panic"), "{}", m.diagnostics());
}

#[test]
fn two_hundred_random_guests() {
    fuzz(200);
}

#[test]
#[ignore = "10,000 programs under Bochs, about 6 minutes"]
fn ten_thousand_random_guests() {
    fuzz(10_000);
}
