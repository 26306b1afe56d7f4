//! Crash under load: 10 rounds of releases and record writes against the real server, each
//! ended by `kill -9` at a random moment; after every restart each acknowledged release is
//! in the log at its index with its leaf hash, each acknowledged write reads back, the log
//! verifies, the server serves, and no 3-use grant released a fourth time however the
//! crashes fell (50 rounds with the release build: `vault-crash`).

use vault_tests::crash::{CrashOptions, run};

#[test]
fn kill_9_under_load_loses_no_acknowledged_operation() {
    let seed = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(1, |d| d.as_nanos() as u64);
    let opts = CrashOptions {
        rounds: 10,
        citizens: 300,
        connections: 16,
        kill_after_ms: (150, 1500),
        seed,
    };
    let report = run(&opts, |line| eprintln!("crash (seed {seed}): {line}"));
    assert_eq!(report.rounds, 10);
    assert!(
        report.losses.is_empty(),
        "seed {seed}: {} losses: {:#?}",
        report.losses.len(),
        report.losses.iter().take(10).collect::<Vec<_>>()
    );
    assert!(report.releases_acked > 50, "{report:?}");
    assert!(report.writes_acked > 5, "{report:?}");
    assert!(report.few_use_grants > 5, "{report:?}");
    eprintln!(
        "crash: {} rounds, {} releases and {} writes ({} records) acknowledged, {} checks, \
         {} 3-use grants ({} releases granted on retry), 0 losses",
        report.rounds,
        report.releases_acked,
        report.writes_acked,
        report.records_written,
        report.checks,
        report.few_use_grants,
        report.retried_releases
    );
}
