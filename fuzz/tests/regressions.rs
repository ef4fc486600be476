//! Every input in `fuzz/regressions/TARGET/` once found a bug in TARGET: each must now
//! pass its target. A new failure found by a long run (`tests/long_run.rs`) is saved there.

use fuzz::runner::{regressions, regressions_dir};

#[test]
fn every_input_that_once_found_a_bug_passes() {
    let mut failed = Vec::new();
    let mut count = 0;
    for &(name, target) in fuzz::TARGETS {
        for (path, input) in regressions(name) {
            count += 1;
            if std::panic::catch_unwind(|| target(&input)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(count > 0, "no regression inputs found");
    assert!(
        failed.is_empty(),
        "inputs that fail again:\n{}",
        failed.join("\n")
    );
}

#[test]
fn the_corpus_holds_only_targets_inputs() {
    let top = regressions_dir("x");
    let top = top.parent().expect("regressions/");
    for e in std::fs::read_dir(top).expect("fuzz/regressions").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        assert!(
            fuzz::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/regressions/{name} names no target"
        );
        for f in std::fs::read_dir(e.path())
            .expect("a target's directory")
            .flatten()
        {
            assert!(
                f.path().extension().is_some_and(|x| x == "bin"),
                "{} is not a .bin input",
                f.path().display()
            );
        }
    }
}

/// The issue-8 cases must fail on an engine that stops answering, or they guard nothing:
/// cut into frames, each is one well-framed request.
#[test]
fn the_issue_8_cases_are_well_framed_requests() {
    let cases = regressions("session");
    assert!(cases.len() >= 10, "{} session inputs", cases.len());
    for (path, input) in &cases {
        let frames = fuzz::frames(input, 8192);
        let total: usize = frames.iter().map(|f| f.len()).sum();
        assert_eq!(total, input.len(), "{} is not whole frames", path.display());
    }
}

/// fuzz-smoke's seed 11400714819323198485 found the oracle out of step with the engine: a
/// Tattach whose uname runs past the frame and whose fid ends in 0x64 before afid NOFID
/// holds a Tversion header (size 512 at byte 6), so the engine skips to it as a new
/// client's, unanswered (ninep/tests/engine.rs, partial_frame_then_new_clients_tversion).
/// The oracle leaves out exactly such frames; the same frame with another fid stays, and
/// must be answered.
#[test]
fn a_bad_frame_holding_a_tversion_header_is_a_new_clients() {
    let holds = [
        0x16, 0, 0, 0, 0x68, 0x10, 0, 0x02, 0, 0, 0x64, 0xff, 0xff, 0xff, 0xff, 0xc8, 0, b'e',
        b'v', b'e', 0, 0,
    ];
    assert!(fuzz::frames(&holds, 8192).is_empty());
    fuzz::session(&holds);
    let mut plain = holds;
    plain[10] = 0;
    assert_eq!(fuzz::frames(&plain, 8192), vec![&plain[..]]);
    fuzz::session(&plain);
}
