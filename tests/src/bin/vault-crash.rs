//! `vault-crash [--rounds N] [--citizens N] [--connections N] [--seed S]`: the crash
//! harness (`vault_tests::crash`) against the binaries built beside it; run it from the
//! release build for the documented long run:
//! `cargo run --release -p vault-tests --bin vault-crash -- --rounds 50`.

#![expect(clippy::print_stdout, reason = "a command-line tool reports on stdout")]

use vault_tests::args::{Args, Opt};
use vault_tests::crash::{CrashOptions, timed};

const USAGE: &str = "usage: vault-crash [--rounds 50] [--citizens 2000] [--connections 64] \
                     [--seed S] [--min-ms 200] [--max-ms 3000]";

fn main() {
    let args = Args::from_env(
        &[
            Opt::Number("--rounds"),
            Opt::Number("--citizens"),
            Opt::Number("--connections"),
            Opt::Number("--seed"),
            Opt::Number("--min-ms"),
            Opt::Number("--max-ms"),
        ],
        USAGE,
    );
    vault_tests::stop::install_or_exit("vault-crash");
    let seed = args.number(
        "--seed",
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map_or(1, |d| d.as_nanos() as u64),
    );
    let opts = CrashOptions {
        rounds: args.number("--rounds", 50) as usize,
        citizens: args.number("--citizens", 2000),
        connections: args.number("--connections", 64) as usize,
        kill_after_ms: (args.number("--min-ms", 200), args.number("--max-ms", 3000)),
        seed,
    };
    println!("vault-crash: {opts:?}");
    let (r, took) = timed(&opts, |line| println!("{line}"));
    println!(
        "vault-crash: {} rounds in {:.0} s; acknowledged: {} releases, {} writes to {} records; \
         {} checks after restarts; {} 3-use grants spent, {} releases granted when tried \
         again after restarts; {} audit entries; plaintext hits after the run: {}; losses: {}",
        r.rounds,
        took.as_secs_f64(),
        r.releases_acked,
        r.writes_acked,
        r.records_written,
        r.checks,
        r.few_use_grants,
        r.retried_releases,
        r.log_entries,
        r.plaintext_hits,
        r.losses.len()
    );
    for l in r.losses.iter().take(20) {
        println!("LOSS: {l}");
    }
    if !r.losses.is_empty() {
        std::process::exit(1);
    }
}
