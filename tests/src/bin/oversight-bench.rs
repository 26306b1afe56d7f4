//! The auditors' queries over a large log, in process: a vault whose audit log holds N
//! synthetic releases (1,000 officials of the policy's agencies, a million citizens, one
//! release every 100 ms of log time), then the breach report over the last 72 hours and
//! for one agency, the anomaly detector's first feed and an incremental query after more
//! entries, and the export's bulk reading against reading entries one at a time (the
//! baseline, in the same run); then `vault-server` is started on that vault and the whole
//! log is streamed from `GET /v1/audit/export` over HTTPS, sampling the server's resident
//! memory while it streams. See BENCHMARKS.md.
//!
//! `cargo build --release --workspace --bins && target/release/oversight-bench [--entries N]`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark aborts on any setup failure"
)]

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vault_core::audit::export::export_line;
use vault_core::audit::{Access, Actor, AuditEntry, EntryContext, Pseudonym, SafeId};
use vault_core::{FieldName, Timestamp};
use vault_tests::server::{Limits, TestServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEP_MS: i64 = 100;

fn main() {
    let n = vault_tests::arg_u64("--entries", 10_000_000);
    vault_tests::stop::install().unwrap();
    // A served vault (its configuration, keys and certificates), stopped while the
    // synthetic log is written into it in process.
    let (mut server, _) = TestServer::start(10, &Limits::default());
    server.stop();
    let data = server.vault.data();
    let vault = vault_server::ctl::open_vault(
        &data,
        None,
        None,
        &vault_server::backend::StoreSettings::sled(256 << 20),
    )
    .unwrap();
    let policy = vault.policy().clone();
    let agencies: Vec<String> = policy.agencies().map(|a| a.id.clone()).collect();
    let id = |s: &str| SafeId::parse(s).unwrap();
    let purpose = id("driver_licence_renewal");
    let dossier = id("HS-BENCH");
    let fields = [
        FieldName::parse("full_name").unwrap(),
        FieldName::parse("date_of_birth").unwrap(),
    ];
    // After the entries the served vault already holds: a log's times only grow.
    let base = vault_core::Clock::now(&vault_core::SystemClock).plus_secs(60);
    let make = |i: u64| {
        let official = i % 1_000;
        let actor = Actor::official(
            id(&format!("can-bo-{official}")),
            id(&agencies[(official as usize) % agencies.len()]),
            None,
        );
        let subject = Pseudonym::from_bytes(vault_core::crypto::sha256(
            &(i.wrapping_mul(2_654_435_761) % 1_000_000).to_be_bytes(),
        ));
        let access = Access {
            purpose: Some(&purpose),
            dossier: &dossier,
            fields: &fields,
            grant: None,
            break_glass: false,
            consent: None,
        };
        let ctx = EntryContext {
            time: Timestamp::from_millis(base.as_millis() + i as i64 * STEP_MS),
            policy: policy.sha256(),
        };
        AuditEntry::record_released(&ctx, &actor, &subject, &access).unwrap()
    };
    let t = Instant::now();
    let mut at = 0u64;
    while at < n {
        let end = (at + 20_000).min(n);
        vault.audit().append((at..end).map(make).collect()).unwrap();
        at = end;
    }
    let size = vault.audit().size();
    println!(
        "log: {size} entries appended in {:.1} s ({:.0} entries/s)",
        t.elapsed().as_secs_f64(),
        size as f64 / t.elapsed().as_secs_f64()
    );
    let end = Timestamp::from_millis(base.as_millis() + (n as i64 - 1) * STEP_MS);
    let auditor = id("kt-bench");

    // The breach report: the last 72 hours, then one agency over the same window.
    let from = end.plus_secs(-72 * 3_600);
    let t = Instant::now();
    let all = vault
        .breach_report(&auditor, from, end, None, None, end)
        .unwrap();
    let breach_all = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let one = vault
        .breach_report(&auditor, from, end, Some(&agencies[0]), None, end)
        .unwrap();
    let breach_one = t.elapsed().as_secs_f64();
    println!(
        "breach report, last 72 h: {} entries, {} citizens in {breach_all:.2} s; one agency: {} entries in {breach_one:.2} s",
        all.entries.len(),
        all.affected_citizens,
        one.entries.len()
    );

    // Anomalies: the first feed reads the longest window before the end; a later query
    // reads only what was appended since.
    let t = Instant::now();
    vault.feed_anomalies().unwrap();
    let first_feed = t.elapsed().as_secs_f64();
    let more: Vec<AuditEntry> = (n..n + 10_000).map(make).collect();
    vault.audit().append(more).unwrap();
    let later = Timestamp::from_millis(base.as_millis() + (n as i64 + 10_000) * STEP_MS);
    let t = Instant::now();
    let found = vault
        .anomalies(&auditor, later.plus_secs(-86_400), later, 72, later)
        .unwrap();
    let query = t.elapsed().as_secs_f64();
    println!(
        "anomalies: first feed {first_feed:.2} s; a query after 10,000 more entries {query:.3} s ({} anomalies)",
        found.len()
    );

    // Export: bulk reads against entries read one at a time (the baseline), 1M entries.
    let m = size.min(1_000_000);
    let log = vault.audit();
    let t = Instant::now();
    let mut bytes = 0usize;
    let mut i = 0;
    while i < m {
        let e = (i + 4_096).min(m);
        for (k, (entry, leaf)) in log.entries(i, e).unwrap().iter().enumerate() {
            bytes += export_line(i + k as u64, entry, leaf).len();
        }
        i = e;
    }
    let bulk = m as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..m {
        let entry = log.entry(i).unwrap();
        let leaf = log.leaf_hash(i).unwrap();
        bytes += export_line(i, &entry, &leaf).len();
    }
    let single = m as f64 / t.elapsed().as_secs_f64();
    println!(
        "export lines (in process): bulk {bulk:.0} entries/s, one at a time {single:.0} entries/s (ratio {:.2}); {} MB",
        bulk / single,
        bytes / 2 / 1_000_000
    );
    let first: Vec<String> = log
        .entries(0, 1_000.min(size))
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, (entry, leaf))| String::from_utf8(export_line(k as u64, entry, leaf)).unwrap())
        .collect();
    drop(vault);
    https_export(&mut server, size, &first);
}

/// Streams the whole log from `GET /v1/audit/export`, sampling the server's resident
/// memory every 100 ms; checks the first lines against the in-process ones.
fn https_export(server: &mut TestServer, size: u64, first: &[String]) {
    server.launch();
    let pid = server.pid().unwrap();
    // Let start-up work (the anomaly detector's first feed) settle before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let started_rss = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let client = server.client(None);
    let token = server.auditor_token("kt-bench");
    let t = Instant::now();
    let mut res = client
        .get(server.url("/v1/audit/export"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut head = Vec::new();
    loop {
        let k = res.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        bytes += k as u64;
        lines += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
        if head.len() < 1 << 20 {
            head.extend_from_slice(&buf[..k]);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    // The export answers the log as it was when the request came (the entry recording the
    // export is appended first, so the log has one more entry than was written above).
    assert!(lines > size, "{lines} lines for {size} entries");
    let head = String::from_utf8(head).unwrap();
    for (k, (got, want)) in head.lines().zip(first).enumerate() {
        assert_eq!(got, want.trim_end(), "line {k} differs from vaultctl's");
    }
    let at = |f: usize| samples.get(samples.len() * f / 10).copied().unwrap_or(0) / 1024;
    let max = samples.iter().copied().max().unwrap_or(0);
    println!(
        "export over HTTPS: {lines} entries, {} MB in {secs:.1} s ({:.0} entries/s, {:.0} MB/s)",
        bytes / 1_000_000,
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs,
    );
    println!(
        "server heap (RssAnon) before {} MiB; at 10% {} MiB, 50% {} MiB, 90% {} MiB of the stream; peak {} MiB ({} samples)",
        started_rss / 1024,
        at(1),
        at(5),
        at(9),
        max / 1024,
        samples.len()
    );
    server.stop();
}

/// The anonymous resident memory of process `pid` (`RssAnon`: the heap and stacks, not
/// the pages of files it reads), in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
