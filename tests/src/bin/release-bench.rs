//! In-process release benchmark (issue #4): 64 concurrent callers each verify a token, spend
//! a use, append `record.released` durably, unwrap the DEK and open 8 fields; against the
//! audit-append ceiling (the same log, `append_one` at the same concurrency) in the same run,
//! alternating A B A B.
//!
//! `cargo run --release -p vault-tests --bin release-bench -- [--seconds S] [--citizens N]`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark aborts on any setup failure"
)]

use std::path::Path;

/// The same allocator as the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vault_core::audit::{
    Access, Actor, AuditEntry, EntryContext, LogSigner, Pseudonym, SafeId, SegmentLog, SegmentLogAt,
};
use vault_core::keyring::{DEFAULT_LOG_ORIGIN, InMemoryRootKey};
use vault_core::policy::PolicySet;
use vault_core::store::SledStore;
use vault_core::token::cert_thumbprint;
use vault_core::vault::{AgencyCaller, GrantOutcome, GrantRequest};
use vault_core::{CitizenId, FieldName, Timestamp, Vault};

const FIELDS: [&str; 8] = [
    "full_name",
    "date_of_birth",
    "sex",
    "nationality",
    "permanent_address",
    "phone",
    "social_insurance_number",
    "health_insurance_number",
];
const NOW: Timestamp = Timestamp::from_millis(1_795_395_723_000);

use vault_tests::arg_u64 as arg;

/// The repository's policies plus a benchmark purpose with these 8 fields and many uses.
fn bench_policies(dir: &Path) -> Arc<PolicySet> {
    let pol = vault_tests::bench::bench_policies(dir, &FIELDS).unwrap();
    Arc::new(PolicySet::load_dir(&pol).unwrap())
}

fn run(threads: usize, secs: f64, op: Arc<dyn Fn(usize) + Send + Sync>) -> (f64, Vec<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, lat, op) = (Arc::clone(&stop), Arc::clone(&lat), Arc::clone(&op));
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    op(i);
                    mine.push(s.elapsed().as_secs_f64() * 1e3);
                    i += threads;
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut l = Arc::try_unwrap(lat).unwrap().into_inner().unwrap();
    l.sort_by(f64::total_cmp);
    (l.len() as f64 / elapsed, l)
}

fn pct(l: &[f64], q: f64) -> f64 {
    l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn main() {
    let secs = arg("--seconds", 5) as f64;
    let n = arg("--citizens", 2000) as usize;
    let rounds = arg("--rounds", 2);
    let threads = 64;
    let work = tempfile::tempdir().unwrap();
    let policy = bench_policies(work.path());
    let vault = Vault::init(
        SledStore::open(&work.path().join("store")).unwrap(),
        &InMemoryRootKey::new([7; 32]),
        Arc::clone(&policy),
        DEFAULT_LOG_ORIGIN,
        &SegmentLogAt(work.path().join("audit")),
    )
    .unwrap();
    let op = Actor::operator(SafeId::parse("bench").unwrap());
    let ids: Vec<String> = (0..n).map(|i| format!("0792{i:08}")).collect();
    let writes: Vec<_> = ids
        .iter()
        .map(|id| {
            let f = json!({"full_name": "Nguyễn Văn Thử", "date_of_birth": "1990-01-02", "sex": "Nam", "nationality": "Việt Nam",
                "permanent_address": "1 Lê Lợi, Phường Sài Gòn", "phone": "0903123456",
                "social_insurance_number": "7901234567", "health_insurance_number": "DN4797901234567"});
            vault.validate_write(CitizenId::parse(id).unwrap(), f.as_object().unwrap().clone()).unwrap()
        })
        .collect();
    vault.write_records(&writes, &op, NOW).unwrap();
    let caller = AgencyCaller {
        agency: "bench-agency".into(),
        cert_thumbprint: cert_thumbprint(b"bench cert"),
    };
    let tokens: Vec<String> = ids
        .iter()
        .map(|id| {
            let req = GrantRequest {
                citizen_id: id.clone(),
                purpose: "bench_release".into(),
                dossier_id: "HS-BENCH-1".into(),
                fields: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
                official_id: "can-bo-bench".into(),
                official_unit: None,
                ttl_seconds: Some(86_400),
            };
            match vault.request_grant(&caller, &req, None, NOW).unwrap() {
                GrantOutcome::Active { token, .. } => token,
                GrantOutcome::Pending { .. } | GrantOutcome::Replayed { .. } => {
                    panic!("bench grants need no consent and no key")
                }
            }
        })
        .collect();
    let vault = Arc::new(vault);
    let fields: Arc<Vec<String>> = Arc::new(FIELDS.iter().map(|f| (*f).to_owned()).collect());
    let (ids, tokens) = (Arc::new(ids), Arc::new(tokens));
    let thumb = cert_thumbprint(b"bench cert");

    // The ceiling: the same kind of log, append_one at the same concurrency.
    let ceiling_log = Arc::new(
        SegmentLog::open(
            &work.path().join("ceiling"),
            LogSigner::from_seed("bench/audit", &[3; 32]).unwrap(),
        )
        .unwrap(),
    );
    let entry = {
        let id = |s: &str| SafeId::parse(s).unwrap();
        let names: Vec<FieldName> = FIELDS
            .iter()
            .map(|f| FieldName::parse(f).unwrap())
            .collect();
        let (p, d, g) = (id("bench_release"), id("HS-BENCH-1"), id("g-abcdefgh"));
        let access = Access {
            purpose: Some(&p),
            dossier: &d,
            fields: &names,
            grant: Some(&g),
            break_glass: false,
            consent: None,
        };
        let ctx = EntryContext {
            time: NOW,
            policy: policy.sha256(),
        };
        AuditEntry::record_released(
            &ctx,
            &Actor::official(id("can-bo-bench"), id("bench-agency"), None),
            &Pseudonym::from_bytes([1; 32]),
            &access,
        )
        .unwrap()
    };
    println!(
        "# Release benchmark: {threads} callers, {secs} s per run, {rounds} alternating rounds, {n} citizens\n"
    );
    println!(
        "| round | audit append ceiling /s | releases /s | ratio | release p50 ms | release p99 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let (mut c_sum, mut r_sum) = (0.0, 0.0);
    for round in 1..=rounds {
        let (l, e) = (Arc::clone(&ceiling_log), entry.clone());
        let (ceiling, _) = run(
            threads,
            secs,
            Arc::new(move |_| {
                l.append_one(e.clone()).unwrap();
            }),
        );
        let (v, ids2, tokens2, fields2, thumb2) = (
            Arc::clone(&vault),
            Arc::clone(&ids),
            Arc::clone(&tokens),
            Arc::clone(&fields),
            thumb.clone(),
        );
        let (rate, lat) = run(
            threads,
            secs,
            Arc::new(move |i| {
                let k = (i.wrapping_mul(2_654_435_761)) % ids2.len();
                let r = v
                    .release_with_token(&tokens2[k], &thumb2, &ids2[k], &fields2, NOW)
                    .unwrap();
                assert_eq!(r.fields.len(), 8);
            }),
        );
        println!(
            "| {round} | {ceiling:.0} | {rate:.0} | {:.2} | {:.2} | {:.2} |",
            rate / ceiling,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        c_sum += ceiling;
        r_sum += rate;
    }
    println!(
        "\nmean: ceiling {:.0}/s, releases {:.0}/s, ratio {:.2}",
        c_sum / rounds as f64,
        r_sum / rounds as f64,
        r_sum / c_sum
    );
}
