//! What sled holds in memory per entry: inserts N grants' worth of entries into the store's
//! grant trees as grants were kept before the slot file (`grant_info` ~600-byte values, then
//! `grant_state`, `verification_codes`, `citizen_grants`, as many of them as `--trees` says;
//! new grants live in `grants.slots` now) with sled's cache at `--cache-mib`,
//! then reads and swaps states at random as releases do, and prints the process's RSS at each
//! step (BENCHMARKS.md, "What limits the vault now").
//!
//! `cargo run --release -p vault-tests --bin sled-mem -- [--entries 1000000] [--trees 4]
//!  [--value-bytes 600] [--cache-mib 64]`

#![expect(clippy::print_stdout, reason = "a probe reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a probe aborts on any failure")]

use std::time::Instant;

use vault_tests::arg_u64 as arg;

/// The same allocator as the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Runs `op` on 0..count, flushing every `flush_every`, and prints the time and the RSS after.
fn timed(what: &str, db: &sled::Db, count: u64, flush_every: u64, mut op: impl FnMut(u64)) {
    let start = Instant::now();
    for i in 0..count {
        op(i);
        if i % flush_every == 0 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    println!(
        "{count} {what} in {:.1} s: RSS {:.1} MiB",
        start.elapsed().as_secs_f64(),
        rss_mib()
    );
}

/// A spread-out grant id for entry `i`.
fn id(i: u64) -> String {
    format!(
        "g-{:032x}",
        u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    )
}

fn main() {
    let n = arg("--entries", 1_000_000);
    let trees = usize::try_from(arg("--trees", 4).clamp(1, 4)).unwrap();
    let value = usize::try_from(arg("--value-bytes", 600)).unwrap();
    let cache = arg("--cache-mib", 64);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache << 20)
        .mode(sled::Mode::HighThroughput)
        .open()
        .unwrap();
    let names = [
        "grant_info",
        "grant_state",
        "verification_codes",
        "citizen_grants",
    ];
    let t: Vec<sled::Tree> = names[..trees]
        .iter()
        .map(|name| db.open_tree(name).unwrap())
        .collect();
    println!(
        "sled-mem: {n} entries in {trees} tree(s), {value}-byte grant values, cache {cache} MiB"
    );
    println!("open: RSS {:.1} MiB", rss_mib());
    timed("inserted", &db, n, 100_000, |i| {
        let g = id(i);
        t[0].insert(g.as_bytes(), vec![b'x'; value]).unwrap();
        if let Some(states) = t.get(1) {
            states.insert(g.as_bytes(), vec![2u8; 90]).unwrap();
        }
        if let Some(codes) = t.get(2) {
            codes
                .insert(
                    format!("{:08}", i.wrapping_mul(7919) % 100_000_000),
                    g.as_bytes(),
                )
                .unwrap();
        }
        if let Some(links) = t.get(3) {
            let citizen = format!("{:064x}", u128::from(i.rotate_left(17)));
            links
                .insert(format!("{citizen}\0{g}"), g.as_bytes())
                .unwrap();
        }
    });
    let hot = t.get(1).unwrap_or(&t[0]);
    timed("random reads and swaps", &db, 300_000, 10_000, |j| {
        let g = id(j.wrapping_mul(2_654_435_761) % n.max(1));
        let old = hot.get(g.as_bytes()).unwrap();
        let _ = hot
            .compare_and_swap(g.as_bytes(), old, Some(vec![3u8; 90]))
            .unwrap();
    });
}
