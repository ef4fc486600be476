//! Guessing the owner's secret over TCP under QEMU (TCG: no VT-x needed): wrong secrets
//! are answered after the delays devvmx::throttle documents (README, "The owner over the
//! network"), while other connections keep their speed, and the right secret still works,
//! also from the guesser's address and connection. Written as net_qemu.rs's TCP tests.

use devvmx::throttle::delay;
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Nic, Opts};

const SECRET: &str = "k1G8mJ0pX2vQ9sT4wZ7yB3nD";
const OWNER: &str = "eve";
const STRANGER: &str = "glenda";
/// Wrong guesses in the burst: their delays add up to 4080 ms, the last one 2048 ms.
const GUESSES: u32 = 8;
/// The kernel's clock ticks at 100 Hz: a delay can end up to one tick early in real time.
const TICK: Duration = Duration::from_millis(10);

fn boot() -> Machine {
    Machine::qemu(Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=uart,net"),
        virtio_ports: 0,
        nic: Some(Nic::VirtioNet),
        ..Opts::default()
    })
}

#[test]
fn guessing_the_secret_is_slowed_and_slows_nobody_else() {
    let m = boot();
    // Every connection comes from QEMU's 10.0.2.2: the owner, attached before the burst,
    // shares the guesser's address.
    let owner = m.tcp_client(OWNER, &format!("!{SECRET}"));
    let stranger = m.tcp_client(STRANGER, "");
    let guesser = m.tcp_client(STRANGER, "");
    let watched = [
        owner.walk("status").unwrap(),
        stranger.walk("status").unwrap(),
    ];

    // Wrong guesses on one connection, one after another.
    let burst = std::thread::spawn(move || {
        let mut each = Vec::new();
        for n in 1..=GUESSES {
            let t = Instant::now();
            let e = guesser
                .attach(OWNER, &format!("!wrong-guess-{n}"))
                .err()
                .expect("a wrong secret attached");
            assert!(
                e.to_string().contains("owner must present the secret"),
                "{e}"
            );
            each.push(t.elapsed());
        }
        (guesser, each)
    });
    // Meanwhile the other two connections' Tstat round trips.
    let mut worst = Duration::ZERO;
    let mut trips = 0;
    while !burst.is_finished() {
        for f in &watched {
            let t = Instant::now();
            f.stat().expect("Tstat during the burst");
            worst = worst.max(t.elapsed());
            trips += 1;
        }
    }
    let (guesser, each) = burst.join().unwrap();
    eprintln!(
        "wrong guesses answered in {each:?}; other clients' worst round trip {worst:?} of {trips}"
    );
    let total: Duration = each.iter().sum();
    let want: u64 = (1..=GUESSES).map(delay).sum();
    for (n, (took, d)) in (1..).zip(each.iter().zip((1..=GUESSES).map(delay))) {
        assert!(
            *took + TICK >= Duration::from_millis(d),
            "wrong guess {n} answered in {took:?}, before its {d} ms: {each:?}"
        );
    }
    assert!(
        total + TICK * GUESSES >= Duration::from_millis(want),
        "{GUESSES} wrong guesses took {total:?}, less than the {want} ms documented"
    );
    // A stalled main loop would have held a round trip up for the longest delay.
    let longest = Duration::from_millis(delay(GUESSES));
    assert!(
        worst < longest / 2,
        "another client's round trip took {worst:?} during the burst ({trips} trips)"
    );
    assert!(trips >= 10, "only {trips} round trips in {total:?}");

    // The right secret: on the guesser's own connection, once its last wrong guess was
    // answered, and on a new connection from the same address, without delay.
    for c in [&guesser, &m.tcp_client(STRANGER, "")] {
        let t = Instant::now();
        let f = c
            .attach(OWNER, &format!("vmx!{SECRET}"))
            .expect("the right secret");
        assert!(f.qid().is_dir());
        assert!(
            t.elapsed() < longest / 2,
            "the right secret took {:?}",
            t.elapsed()
        );
    }
    let log = m.log();
    assert!(
        log.contains(&format!(
            "wrong secret for the owner, failure {GUESSES} from 10.0.2.2"
        )),
        "{log}"
    );
    assert!(
        !log.contains("wrong-guess"),
        "a guess reached the log:\n{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}
