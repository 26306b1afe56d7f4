//! Crash harness: drives releases and record writes against the real server at high
//! concurrency, `kill -9`s it at a random moment, restarts it, and checks that every
//! acknowledged operation survived: each release's audit entry at its index with its leaf
//! hash, each write's version and value, `vaultctl audit verify`, and service again; and
//! that no grant ever released more than its `max_uses`: a quarter of the releasing
//! connections spend 3-use grants to the end, and after every restart each of the round's
//! grants is tried again until refused, so a spent use the store lost in the crash would show as a
//! fourth `record.released` entry in the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{FEW_USES, FIELDS, bench_policies};
use crate::server::{Limits, TestServer};
use crate::text;

/// The agency with the benchmark purpose (releases) and the source-of-truth agency (writes).
const RELEASER: &str = "bench-agency";
const WRITER: &str = "cong-an-tphcm-cu-tru";

/// What to run.
#[derive(Debug, Clone)]
pub struct CrashOptions {
    /// Kill-and-restart rounds.
    pub rounds: usize,
    /// Demo citizens imported.
    pub citizens: u64,
    /// Concurrent connections (three quarters release, one quarter write).
    pub connections: usize,
    /// The kill comes between these many milliseconds after the load starts.
    pub kill_after_ms: (u64, u64),
    /// Seed of the kill moments and citizen choice.
    pub seed: u64,
}

/// What a run found.
#[derive(Debug, Default, Clone)]
pub struct CrashReport {
    /// Rounds completed.
    pub rounds: usize,
    /// Releases acknowledged (200 with an audit index and leaf hash).
    pub releases_acked: usize,
    /// Writes acknowledged (200 with a version).
    pub writes_acked: usize,
    /// Citizens whose last acknowledged write is checked after each restart.
    pub records_written: usize,
    /// Acknowledged operations checked after restarts, counting each check (an earlier
    /// round's releases are checked again after every later crash).
    pub checks: usize,
    /// Audit entries in the log at the end.
    pub log_entries: u64,
    /// Every acknowledged operation found missing or different, and every failed check.
    pub losses: Vec<String>,
    /// Milliseconds after the load started at which each round's kill came.
    pub kill_ms: Vec<u64>,
    /// Citizen values or ids found readable after the run (data directory, log, export).
    pub plaintext_hits: usize,
    /// 3-use grants issued and spent to the end (their releases are counted in the log).
    pub few_use_grants: usize,
    /// Releases the server granted when a 3-use grant was tried again after a restart.
    pub retried_releases: usize,
}

/// A release the server acknowledged.
#[derive(Debug, Clone)]
struct AckedRelease {
    index: u64,
    leaf_hash: String,
}

/// The last write acknowledged for a citizen, and the one in flight after it (if any).
#[derive(Debug, Clone, Default)]
struct WriteState {
    acked: Option<(u64, String)>,
    in_flight: Option<String>,
}

/// A 3-use grant: its token, tried again after each restart until refused.
#[derive(Debug, Clone)]
struct FewGrant {
    citizen: String,
    token: String,
}

#[derive(Default)]
struct Acks {
    releases: Vec<AckedRelease>,
    few: Vec<FewGrant>,
    writes: HashMap<String, WriteState>,
    /// Every acknowledged write (the map keeps each citizen's last).
    write_count: usize,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::load::mix(0, self.0)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
}

/// Runs the rounds; `progress` hears one line per round.
pub fn run(opts: &CrashOptions, mut progress: impl FnMut(&str)) -> CrashReport {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let _work_removed_on_stop = crate::stop::remove_on_stop(work.path().to_path_buf());
    let pol = bench_policies(work.path(), &FIELDS).unwrap_or_else(|e| panic!("policies: {e}"));
    let (mut server, people) = TestServer::start(
        opts.citizens,
        &Limits {
            policies: Some(pol),
            ..Limits::default()
        },
    );
    let ids: Arc<Vec<String>> = Arc::new(people.iter().map(|(id, _)| id.clone()).collect());
    let releaser = server.agency_identity(RELEASER);
    let writer = server.agency_identity(WRITER);
    let rt = crate::load::runtime().unwrap_or_else(|e| panic!("runtime: {e}"));
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut rng = Rng(opts.seed);
    let mut report = CrashReport::default();
    let writers = (opts.connections / 4).max(1);
    let releasers = opts.connections.saturating_sub(writers).max(1);

    for round in 0..opts.rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let few_before = acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .few
            .len();
        let base = server.url("");
        let mut tasks = Vec::new();
        for c in 0..releasers {
            let client = server.async_client(Some(&releaser));
            let (stop, acks, ids, base) = (
                Arc::clone(&stop),
                Arc::clone(&acks),
                Arc::clone(&ids),
                base.clone(),
            );
            let seed = rng.next();
            let few = c % 4 == 3;
            tasks.push(rt.spawn(async move {
                release_loop(client, &base, &ids, (seed ^ c as u64, few), &stop, &acks).await;
            }));
        }
        for w in 0..writers {
            let client = server.async_client(Some(&writer));
            let (stop, acks, ids, base) = (
                Arc::clone(&stop),
                Arc::clone(&acks),
                Arc::clone(&ids),
                base.clone(),
            );
            let round_tag = round;
            tasks.push(rt.spawn(async move {
                write_loop(client, &base, &ids, (w, writers), round_tag, &stop, &acks).await;
            }));
        }
        let kill_at = rng.between(opts.kill_after_ms.0, opts.kill_after_ms.1);
        std::thread::sleep(Duration::from_millis(kill_at));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = rt.block_on(t);
        }
        report.kill_ms.push(kill_at);

        // The process is gone: the files alone must hold every acknowledged release.
        let out = server.vault.ctl(&["audit", "verify"]);
        if !out.status.success() {
            report.losses.push(format!(
                "round {round}: audit verify failed: {}",
                text(&out.stderr)
            ));
        }
        let (exported, few_counts) = export(&server);
        report.log_entries = exported.len() as u64;
        check_few_uses(&few_counts, &format!("round {round}"), &mut report.losses);
        let (releases, writes, write_count) = {
            let a = acks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (a.releases.clone(), a.writes.clone(), a.write_count)
        };
        for r in &releases {
            report.checks += 1;
            match exported.get(&r.index) {
                Some(h) if *h == r.leaf_hash => {}
                Some(h) => report.losses.push(format!(
                    "round {round}: entry {} has leaf hash {h}, the client was told {}",
                    r.index, r.leaf_hash
                )),
                None => report.losses.push(format!(
                    "round {round}: acknowledged release at index {} is not in the log",
                    r.index
                )),
            }
        }

        server.launch();
        let health = server
            .client(None)
            .get(server.url("/readyz"))
            .send()
            .map(|r| r.status().as_u16());
        if health.as_ref().ok() != Some(&200) {
            report.losses.push(format!(
                "round {round}: not ready after restart: {health:?}"
            ));
        }
        // This round's 3-use grants (the ones in use when it crashed), again until refused: a
        // use the crash took from the store would be granted here a second time.
        let few: Vec<FewGrant> = acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .few
            .get(few_before..)
            .unwrap_or_default()
            .to_vec();
        report.few_use_grants += few.len();
        report.retried_releases += retry_few(&server, &releaser, &few);
        let reader = server.client(None);
        for (id, w) in &writes {
            let Some((version, phone)) = &w.acked else {
                continue;
            };
            report.checks += 1;
            let got = reader
                .get(server.url("/v1/me/record"))
                .bearer_auth(server.citizen_token(id))
                .send()
                .and_then(|r| r.json::<Value>());
            let Ok(got) = got else {
                report
                    .losses
                    .push(format!("round {round}: a written record cannot be read"));
                continue;
            };
            let v = got["version"].as_u64().unwrap_or(0);
            let p = got["fields"]["phone"].as_str().unwrap_or_default();
            let expected = p == phone.as_str() || w.in_flight.as_deref() == Some(p);
            if v < *version || !expected {
                report.losses.push(format!(
                    "round {round}: a citizen's acknowledged write (version {version}) reads back \
                     as version {v} with another value"
                ));
            }
            // What survived the crash is durable: later rounds compare against it.
            if let Ok(mut a) = acks.lock() {
                a.writes.insert(
                    id.clone(),
                    WriteState {
                        acked: Some((v, p.to_owned())),
                        in_flight: None,
                    },
                );
            }
        }
        report.rounds = round + 1;
        report.releases_acked = releases.len();
        report.writes_acked = write_count;
        report.records_written = writes.values().filter(|w| w.acked.is_some()).count();
        progress(&format!(
            "round {}/{}: killed after {kill_at} ms; {} releases and {} writes (to {} \
             records) acknowledged so far, {} entries in the log, {} losses",
            round + 1,
            opts.rounds,
            releases.len(),
            write_count,
            report.records_written,
            exported.len(),
            report.losses.len()
        ));
    }
    server.stop();
    let out = server.vault.ctl(&["audit", "verify"]);
    if !out.status.success() {
        report
            .losses
            .push(format!("final audit verify failed: {}", text(&out.stderr)));
    }
    let (_, few_counts) = export(&server);
    check_few_uses(&few_counts, "at the end", &mut report.losses);
    // After all the crashes: no citizen value or id readable in the data directory, the
    // server's log or the audit export.
    let hits = crate::scan::served_vault(&server, &people, &[]);
    report.plaintext_hits = hits.len();
    if let Some(h) = hits.first() {
        report.losses.push(format!(
            "{} plaintext hits, the first: {}",
            hits.len(),
            h.describe()
        ));
    }
    report
}

/// Index → leaf hash of every entry, and the `record.released` entries of each 3-use grant,
/// from `vaultctl audit export`.
fn export(server: &TestServer) -> (HashMap<u64, String>, HashMap<String, u32>) {
    let out = server.vault.ctl(&["audit", "export"]);
    assert!(out.status.success(), "export: {}", text(&out.stderr));
    let mut leaves = HashMap::new();
    let mut few = HashMap::new();
    for v in text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if let (Some(i), Some(h)) = (v["index"].as_u64(), v["leaf_hash"].as_str()) {
            leaves.insert(i, h.to_owned());
        }
        let e = &v["entry"];
        if e["event"] == "record.released"
            && e["purpose"] == "bench_few"
            && let Some(g) = e["grant_id"].as_str()
        {
            *few.entry(g.to_owned()).or_insert(0) += 1;
        }
    }
    (leaves, few)
}

/// A loss for every grant the log shows releasing more often than its `max_uses`.
fn check_few_uses(counts: &HashMap<String, u32>, when: &str, losses: &mut Vec<String>) {
    for (grant, n) in counts {
        if *n > FEW_USES {
            losses.push(format!(
                "{when}: grant {grant} released {n} times, its purpose allows {FEW_USES}"
            ));
        }
    }
}

/// Tries every 3-use grant until it is refused; returns how many releases were granted.
fn retry_few(server: &TestServer, releaser: &crate::server::Identity, few: &[FewGrant]) -> usize {
    let client = server.client(Some(releaser));
    let q = FIELDS.join(",");
    let mut granted = 0;
    for g in few {
        for _ in 0..=FEW_USES {
            let ok = client
                .get(server.url(&format!("/v1/citizens/{}/fields?fields={q}", g.citizen)))
                .bearer_auth(&g.token)
                .send()
                .is_ok_and(|r| r.status().as_u16() == 200);
            if !ok {
                break;
            }
            granted += 1;
        }
    }
    granted
}

/// Grants and releases: 4 releases a grant, or with `few` 3-use grants spent until refused.
async fn release_loop(
    client: reqwest::Client,
    base: &str,
    ids: &[String],
    (seed, few): (u64, bool),
    stop: &AtomicBool,
    acks: &Mutex<Acks>,
) {
    let q = FIELDS.join(",");
    let purpose = if few { "bench_few" } else { "bench_release" };
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let id = &ids[(crate::load::mix(seed as usize, i) % ids.len() as u64) as usize];
        let body = json!({"citizen_id": id, "purpose": purpose, "dossier_id": "CRASH-1",
                          "fields": FIELDS, "official": {"id": "crash"}});
        let Ok(r) = client
            .post(format!("{base}/v1/grants"))
            .json(&body)
            .send()
            .await
        else {
            pause(stop).await;
            continue;
        };
        let Ok(v) = r.json::<Value>().await else {
            continue;
        };
        let Some(token) = v["access_token"].as_str() else {
            continue;
        };
        if few && let Ok(mut a) = acks.lock() {
            a.few.push(FewGrant {
                citizen: id.clone(),
                token: token.to_owned(),
            });
        }
        for _ in 0..=FEW_USES {
            let Ok(r) = client
                .get(format!("{base}/v1/citizens/{id}/fields?fields={q}"))
                .bearer_auth(token)
                .send()
                .await
            else {
                break;
            };
            if r.status().as_u16() != 200 {
                break;
            }
            let Ok(v) = r.json::<Value>().await else {
                break;
            };
            if let (Some(index), Some(leaf)) = (
                v["audit"]["index"].as_u64(),
                v["audit"]["leaf_hash"].as_str(),
            ) && let Ok(mut a) = acks.lock()
            {
                a.releases.push(AckedRelease {
                    index,
                    leaf_hash: leaf.to_owned(),
                });
            }
        }
    }
}

async fn write_loop(
    client: reqwest::Client,
    base: &str,
    ids: &[String],
    (me, of): (usize, usize),
    round: usize,
    stop: &AtomicBool,
    acks: &Mutex<Acks>,
) {
    let mine: Vec<&String> = ids.iter().skip(me).step_by(of).collect();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && !mine.is_empty() {
        n += 1;
        let id = mine[(n as usize) % mine.len()];
        // Unique per round, writer and sequence: 09 + 8 digits.
        let phone = format!("09{:02}{:02}{:04}", round % 100, me % 100, n % 10_000);
        if let Ok(mut a) = acks.lock() {
            a.writes.entry(id.clone()).or_default().in_flight = Some(phone.clone());
        }
        let body = json!({"fields": {"phone": phone}, "source": "crash-test"});
        let Ok(r) = client
            .put(format!("{base}/v1/citizens/{id}"))
            .json(&body)
            .send()
            .await
        else {
            pause(stop).await;
            continue;
        };
        if r.status().as_u16() != 200 {
            continue;
        }
        let Ok(v) = r.json::<Value>().await else {
            continue;
        };
        if let Some(version) = v["version"].as_u64()
            && let Ok(mut a) = acks.lock()
        {
            a.write_count += 1;
            let w = a.writes.entry(id.clone()).or_default();
            w.acked = Some((version, phone));
            w.in_flight = None;
        }
    }
}

/// After a refused connection (the server is down), wait a little before trying again.
async fn pause(stop: &AtomicBool) {
    if !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `run` and reports how long it took.
pub fn timed(opts: &CrashOptions, progress: impl FnMut(&str)) -> (CrashReport, Duration) {
    let t = Instant::now();
    let r = run(opts, progress);
    (r, t.elapsed())
}
