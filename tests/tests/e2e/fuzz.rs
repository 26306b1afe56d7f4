//! Fuzz corpus replay: every committed input of every cargo-fuzz target (`fuzz/corpus/<t>/`)
//! runs through the same harness the fuzzer runs (`fuzz/src/lib.rs`, included here), on
//! stable, so a regression fails the README's test command without a nightly build.

#[path = "../../../fuzz/src/lib.rs"]
#[expect(
    clippy::panic,
    clippy::type_complexity,
    reason = "a fuzz harness panics to report a finding; its target table is a plain list"
)]
mod harness;

use std::path::PathBuf;

#[test]
fn fuzz_corpus_replays_without_a_failure() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0usize;
    for (name, run) in harness::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 5,
            "{name}: the committed corpus has {} inputs",
            inputs.len()
        );
        for p in &inputs {
            // A fuzzer running on the same corpus may have just replaced this input.
            let Ok(bytes) = std::fs::read(p) else {
                continue;
            };
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails", p.display());
        }
        total += inputs.len();
    }
    eprintln!("fuzz corpus: {total} inputs replayed");
}

/// The no-echo property tells a quoted input value from fixed message text.
#[test]
fn the_quote_check_tells_echoes_from_fixed_text() {
    let data = br#"{"name": "Nguyen Van Secret"}"#;
    let echo = |d: &[u8]| format!("bad row: {}", String::from_utf8_lossy(d));
    let fixed = |_: &[u8]| "unknown field `<invalid name>` Nguyen Van Secret".to_owned();
    let silent = |_: &[u8]| "malformed JSON at column 3".to_owned();
    assert!(harness::quotes(data, "Nguyen Van Secret", &echo));
    assert!(!harness::quotes(data, "Nguyen Van Secret", &fixed));
    assert!(!harness::quotes(data, "Nguyen Van Secret", &silent));
}
