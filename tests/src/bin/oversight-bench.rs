//! The auditors' queries over a large log, in process: a vault whose audit log holds N
//! synthetic releases (1,000 officials of the policy's agencies, a million citizens, one
//! release every 100 ms of log time), then the breach report over the last 72 hours and
//! for one agency, the anomaly detector's first feed and an incremental query after more
//! entries, and the export's bulk reading against reading entries one at a time (the
//! baseline, in the same run). See BENCHMARKS.md.
//!
//! `cargo run --release -p vault-tests --bin oversight-bench -- [--entries N]`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark aborts on any setup failure"
)]

use std::sync::Arc;
use std::time::Instant;

use vault_core::audit::export::export_line;
use vault_core::audit::{Access, Actor, AuditEntry, EntryContext, Pseudonym, SafeId, SegmentLogAt};
use vault_core::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
use vault_core::policy::PolicySet;
use vault_core::store::SledStore;
use vault_core::{FieldName, Timestamp, Vault};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEP_MS: i64 = 100;

fn main() {
    let n = vault_tests::arg_u64("--entries", 10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(PolicySet::load_dir(&vault_tests::policies_dir()).unwrap());
    let agencies: Vec<String> = policy.agencies().map(|a| a.id.clone()).collect();
    let vault = Vault::init(
        SledStore::open(&dir.path().join("store")).unwrap(),
        &InMemoryRootKey::new([3; 32]),
        Arc::clone(&policy),
        DEFAULT_LOG_ORIGIN,
        &SegmentLogAt(dir.path().join("audit")),
    )
    .unwrap();
    let id = |s: &str| SafeId::parse(s).unwrap();
    let purpose = id("driver_licence_renewal");
    let dossier = id("HS-BENCH");
    let fields = [
        FieldName::parse("full_name").unwrap(),
        FieldName::parse("date_of_birth").unwrap(),
    ];
    let base = Timestamp::from_millis(1_790_000_000_000);
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
}
