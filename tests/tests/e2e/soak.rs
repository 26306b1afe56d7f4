//! A short soak in the test suite (the 10-minute run is `vault-soak`): mixed load with
//! every answer checked, 0 unexpected answers, every kind of operation done, log verifies,
//! and no citizen value or id in the data directory, log, audit export or denial bodies.

use std::time::Duration;

use vault_tests::soak::{SoakOptions, run};

#[test]
fn mixed_load_has_no_unexpected_answer_and_the_log_verifies() {
    let r = run(
        &SoakOptions {
            duration: Duration::from_secs(12),
            warmup: Duration::from_secs(4),
            tasks: 8,
            citizens: 200,
            reuse_grants: false,
        },
        |l| eprintln!("soak: {l}"),
    );
    eprintln!("soak: {r:?} ({:.0} requests/s)", r.rps());
    assert_eq!(r.errors, 0, "{:#?}", r.error_samples);
    assert!(r.log_verifies);
    assert!(
        r.plaintext_hits.is_empty(),
        "citizen values readable after the soak: {:?}",
        r.plaintext_hits
    );
    assert!(r.ops.iter().all(|&n| n > 0), "every kind ran: {:?}", r.ops);
    assert!(r.intended_denials > 0);
}

#[test]
fn the_reuse_grants_variant_releases_on_pre_issued_grants_only() {
    let r = run(
        &SoakOptions {
            duration: Duration::from_secs(6),
            warmup: Duration::from_secs(2),
            tasks: 4,
            // Not fewer: with 50 citizens a value of a closed list (an education level held
            // by at most 3 of them) counts as identifying, and the policy files list it.
            citizens: 200,
            reuse_grants: true,
        },
        |l| eprintln!("soak: {l}"),
    );
    eprintln!("soak (reused grants): {r:?}");
    assert_eq!(r.errors, 0, "{:#?}", r.error_samples);
    assert!(r.log_verifies);
    assert!(r.plaintext_hits.is_empty(), "{:?}", r.plaintext_hits);
    assert_eq!(r.ops[1], 0, "no consent flow: it would store grants");
    assert!(
        r.ops[0] > 0 && r.ops[2] > 0 && r.ops[3] > 0 && r.ops[4] > 0,
        "{:?}",
        r.ops
    );
}
