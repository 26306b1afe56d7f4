//! `vault-soak [--seconds 900] [--warmup 300] [--tasks 32] [--citizens 10000]
//! [--reuse-grants]`: mixed load
//! against the binaries built beside it (`vault_tests::soak`); exits non-zero on any
//! unexpected answer, a citizen value found afterwards, a log that does not verify, or RSS at
//! the end both more than 10% above RSS after the warm-up and more than
//! `MAX_GROWTH_BYTES_PER_REQUEST` above it per request served since (each RSS the median of
//! a minute's samples, taken every 5 s). The default warm-up (5 minutes) lets the
//! bounded caches fill (sled's 64 MiB, the verified-token cache), then 10 minutes are
//! measured. The documented run: `cargo run --release -p vault-tests --bin vault-soak`.
//! `--reuse-grants` is a diagnostic variant that stores no grant during the load (each
//! citizen's grant is issued before it; see `SoakOptions::reuse_grants`).

#![expect(clippy::print_stdout, reason = "a command-line tool reports on stdout")]

use std::time::Duration;

use vault_tests::args::{Args, Opt};
use vault_tests::soak::{SoakOptions, run};

const USAGE: &str = "usage: vault-soak [--seconds 900] [--warmup 300] [--tasks 32] \
                     [--citizens 10000] [--reuse-grants]";

fn main() {
    let args = Args::from_env(
        &[
            Opt::Number("--seconds"),
            Opt::Number("--warmup"),
            Opt::Number("--tasks"),
            Opt::Number("--citizens"),
            Opt::Flag("--reuse-grants"),
        ],
        USAGE,
    );
    vault_tests::stop::install_or_exit("vault-soak");
    let opts = SoakOptions {
        duration: Duration::from_secs(args.number("--seconds", 900)),
        warmup: Duration::from_secs(args.number("--warmup", 300)),
        tasks: args.number("--tasks", 32) as usize,
        citizens: args.number("--citizens", 10_000),
        reuse_grants: args.flag("--reuse-grants"),
    };
    println!("vault-soak: {opts:?}");
    let r = run(&opts, |line| println!("{line}"));
    println!(
        "vault-soak: {:.0} s, {} requests ({:.0}/s), ops [releases, consents, auditor, history, \
         denials] = {:?}, intended denials {}, errors {}, RSS {} MiB after warm-up, {} MiB at \
         the end ({:+.1}%), log verifies: {}, plaintext hits: {}",
        r.seconds,
        r.requests,
        r.rps(),
        r.ops,
        r.intended_denials,
        r.errors,
        r.rss_kib.0 / 1024,
        r.rss_kib.1 / 1024,
        (r.rss_growth() - 1.0) * 100.0,
        r.log_verifies,
        r.plaintext_hits.len()
    );
    let max = r.rss_samples.iter().map(|s| s.1).max().unwrap_or(0);
    let min = r.rss_samples.iter().map(|s| s.1).min().unwrap_or(0);
    println!(
        "vault-soak: RSS after the warm-up and at the end are medians of the first and last \
         minute's samples (every 5 s); all {} samples after the warm-up within {}-{} MiB",
        r.rss_samples.len(),
        min / 1024,
        max / 1024
    );
    for e in &r.error_samples {
        println!("ERROR: {e}");
    }
    println!(
        "vault-soak: RSS grew {:.1} bytes per request after the warm-up (allowed: 10%, or {} bytes \
         a request)",
        r.growth_bytes_per_request(),
        vault_tests::soak::MAX_GROWTH_BYTES_PER_REQUEST
    );
    let flat = r.rss_flat();
    if !flat {
        println!(
            "FAIL: RSS grew more than 10% and more than {} bytes a request after the warm-up",
            vault_tests::soak::MAX_GROWTH_BYTES_PER_REQUEST
        );
    }
    for h in &r.plaintext_hits {
        println!("FAIL: a citizen value or id is readable in {h}");
    }
    if r.errors > 0 || !r.log_verifies || !flat || !r.plaintext_hits.is_empty() {
        std::process::exit(1);
    }
}
