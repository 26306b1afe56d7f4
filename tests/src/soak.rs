//! Soak: mixed load for a fixed time at full concurrency (grants and releases, consent
//! approvals and refusals, auditor queries, citizen history, requests the policy must
//! deny), counting every answer: an answer other than the one the operation expects is an
//! error. Reports throughput, RSS after warm-up and at the end, and whether the log
//! verifies after a graceful stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{FIELDS, bench_policies};
use crate::server::{Limits, TestServer};
use crate::text;

/// Lifetime the soak's agencies ask for (they read at once), and the server's grant
/// retention: grants end within minutes and are swept a minute later, so the store (and the
/// memory sled spends on it) reaches a steady state within the warm-up, as it would over
/// the 30-day default retention in production.
const GRANT_TTL: u64 = 120;
const GRANT_RETENTION: u64 = 60;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Total duration.
    pub duration: Duration,
    /// Warm-up (RSS is taken at its end) within the duration.
    pub warmup: Duration,
    /// Concurrent tasks (each with its own connections).
    pub tasks: usize,
    /// Demo citizens imported.
    pub citizens: u64,
    /// Diagnostic variant: no grant is stored during the load. Each citizen gets one
    /// long-lived grant before it starts; the grant-and-release and consent operations become
    /// two releases on it (auditor, history and denied-grant operations as usual), so the
    /// store sees only use counts change, never a grant inserted or swept.
    pub reuse_grants: bool,
}

/// What a soak saw.
#[derive(Debug, Default, Clone)]
pub struct SoakReport {
    /// Seconds of load.
    pub seconds: f64,
    /// HTTP requests answered as expected (including intended denials).
    pub requests: u64,
    /// Of which, those answered during the warm-up.
    pub warmup_requests: u64,
    /// Of which, denials the operation asked for (field outside the purpose, refused
    /// consent).
    pub intended_denials: u64,
    /// Operations by kind: releases (grant + 2 reads), consents, auditor, history, denials.
    pub ops: [u64; 5],
    /// Unexpected answers or failed requests.
    pub errors: u64,
    /// The first few unexpected answers.
    pub error_samples: Vec<String>,
    /// Server RSS (KiB) after the warm-up and at the end: each the median of the samples in
    /// a window (the first and the last minute of the measured time, or a quarter of it if
    /// shorter), since one sample swings by ±10% with the bursts of the mixed load.
    pub rss_kib: (u64, u64),
    /// Every RSS sample after the warm-up: (seconds since the start, KiB), every 5 s.
    pub rss_samples: Vec<(u64, u64)>,
    /// `vaultctl audit verify` passed after the stop.
    pub log_verifies: bool,
    /// Entries in the log at the end.
    pub log_entries: u64,
    /// Citizen values or ids found in the data directory, the log, the audit export or the
    /// denial bodies kept.
    pub plaintext_hits: Vec<String>,
}

impl SoakReport {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// End RSS over warm-up RSS.
    pub fn rss_growth(&self) -> f64 {
        self.rss_kib.1 as f64 / (self.rss_kib.0.max(1)) as f64
    }

    /// RSS growth after the warm-up in bytes per request answered after it (negative if RSS
    /// shrank).
    pub fn growth_bytes_per_request(&self) -> f64 {
        let grown = (self.rss_kib.1 as f64 - self.rss_kib.0 as f64) * 1024.0;
        grown / (self.requests.saturating_sub(self.warmup_requests).max(1)) as f64
    }

    /// Whether RSS stayed flat after the warm-up: within 10%, or within
    /// `MAX_GROWTH_BYTES_PER_REQUEST` per request.
    pub fn rss_flat(&self) -> bool {
        self.rss_growth() <= 1.10 || self.growth_bytes_per_request() <= MAX_GROWTH_BYTES_PER_REQUEST
    }
}

/// RSS growth per request a soak allows after its warm-up. The audit log keeps one hash per
/// 64 entries of its tree in memory, levels included, by design: one to three bytes an
/// entry with the vectors' spare capacity, about one entry a request. A leak of even one
/// small allocation per request is several times this. (The 10% bound alone was the same
/// ~8 bytes a request when the server's footprint was 334 MiB; at ~70 MiB it is a fifth of
/// it, below what the log's tree takes.)
pub const MAX_GROWTH_BYTES_PER_REQUEST: f64 = 8.0;

/// How often RSS is sampled after the warm-up.
const RSS_EVERY: Duration = Duration::from_secs(5);

/// The median of the samples within `window` seconds of the first one, and of those within
/// `window` seconds of the last one (each window holds at least one sample).
pub fn window_medians(samples: &[(u64, u64)], window: u64) -> (u64, u64) {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return (0, 0);
    };
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let head = samples
        .iter()
        .filter(|s| s.0 <= first.0 + window)
        .map(|s| s.1)
        .collect();
    let tail = samples
        .iter()
        .filter(|s| s.0 + window >= last.0)
        .map(|s| s.1)
        .collect();
    (median(head), median(tail))
}

/// A process's resident set size in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    denials: AtomicU64,
    ops: [AtomicU64; 5],
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
    /// The first denial bodies, for the plaintext scan.
    denial_bodies: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock()
            && s.len() < 10
        {
            s.push(what);
        }
    }
}

/// Everything a task needs to act as agency, citizen and auditor.
struct Actors {
    bench: reqwest::Client,
    bhxh: reqwest::Client,
    public: reqwest::Client,
    base: String,
    ids: Arc<Vec<String>>,
    /// With `reuse_grants`: each citizen's pre-issued token, by the index in `ids`.
    tokens: Option<Arc<Vec<String>>>,
    server: Arc<TestServer>,
}

/// One expected answer: the status, or the status and problem code.
async fn expect(
    c: &Counters,
    what: &str,
    req: reqwest::RequestBuilder,
    status: u16,
    code: Option<&str>,
) -> Option<Value> {
    let r = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            c.error(format!("{what}: {e}"));
            return None;
        }
    };
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if got != status || code.is_some_and(|k| body["code"] != k) {
        c.error(format!("{what}: {got} {}", body["code"]));
        return None;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    if code.is_some() {
        c.denials.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = c.denial_bodies.lock()
            && d.len() < 1000
        {
            d.push((format!("{what} body"), body.to_string().into_bytes()));
        }
    }
    Some(body)
}

/// A grant request for the benchmark purpose and all its fields.
fn release_grant_body(id: &str, dossier: &str, ttl: u64) -> Value {
    json!({"citizen_id": id, "purpose": "bench_release", "dossier_id": dossier,
           "fields": FIELDS, "official": {"id": "soak"}, "ttl_seconds": ttl})
}

/// Two releases of two fields with `token`; `false` after an unexpected answer.
async fn two_releases(a: &Actors, c: &Counters, id: &str, token: &str) -> bool {
    for _ in 0..2 {
        let req = a
            .bench
            .get(format!(
                "{}/v1/citizens/{id}/fields?fields=full_name,phone",
                a.base
            ))
            .bearer_auth(token);
        if expect(c, "release", req, 200, None).await.is_none() {
            return false;
        }
    }
    true
}

async fn one_op(a: &Actors, c: &Counters, task: usize, i: u64) {
    let who = (crate::load::mix(task, i) % a.ids.len() as u64) as usize;
    let id = &a.ids[who];
    let b = &a.base;
    let kind = (i % 8) as usize;
    if let Some(tokens) = &a.tokens
        && kind <= 4
    {
        if two_releases(a, c, id, &tokens[who]).await {
            c.ops[0].fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    match kind {
        0..=3 => {
            let body = release_grant_body(id, "SOAK", GRANT_TTL);
            let Some(g) = expect(
                c,
                "grant",
                a.bench.post(format!("{b}/v1/grants")).json(&body),
                201,
                None,
            )
            .await
            else {
                return;
            };
            let token = g["access_token"].as_str().unwrap_or_default().to_owned();
            if two_releases(a, c, id, &token).await {
                c.ops[0].fetch_add(1, Ordering::Relaxed);
            }
        }
        4 => {
            let body = json!({"citizen_id": id, "purpose": "social_insurance_lookup",
                              "dossier_id": "SOAK-C", "fields": ["full_name", "annual_income"],
                              "official": {"id": "soak"}, "ttl_seconds": GRANT_TTL});
            // Consent is specific: a standing consent the citizen kept for these fields gives
            // a token at once (201); otherwise the citizen is asked (202).
            let r = match a
                .bhxh
                .post(format!("{b}/v1/grants"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    c.error(format!("consent grant: {e}"));
                    return;
                }
            };
            let status = r.status().as_u16();
            let g: Value = r.json().await.unwrap_or(Value::Null);
            match (status, g["code"].as_str()) {
                (202, _) => {}
                (201, _) => {
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    let token = g["access_token"].as_str().unwrap_or_default();
                    let req = a
                        .bhxh
                        .get(format!("{b}/v1/citizens/{id}/fields?fields=annual_income"))
                        .bearer_auth(token);
                    if expect(c, "release on consent", req, 200, None)
                        .await
                        .is_some()
                    {
                        c.ops[1].fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                (st, code) => {
                    c.error(format!("consent grant: {st} {code:?}"));
                    return;
                }
            }
            c.requests.fetch_add(1, Ordering::Relaxed);
            let gid = g["grant_id"].as_str().unwrap_or_default().to_owned();
            let ctok = a.server.citizen_token(id);
            let approve = (i / 8).is_multiple_of(2);
            let verb = if approve { "approve" } else { "refuse" };
            let mut req = a
                .public
                .post(format!("{b}/v1/me/grants/{gid}/{verb}"))
                .bearer_auth(&ctok);
            if approve && (i / 16).is_multiple_of(2) {
                // Half the approvals also keep a standing consent: later requests for these
                // fields go through at once (the 201 branch above).
                req = req.json(&json!({"remember_days": 30}));
            }
            if expect(c, verb, req, 200, None).await.is_none() {
                return;
            }
            let Some(st) = expect(
                c,
                "grant status",
                a.bhxh.get(format!("{b}/v1/grants/{gid}")),
                200,
                None,
            )
            .await
            else {
                return;
            };
            if approve {
                let Some(token) = st["access_token"].as_str() else {
                    c.error("approved grant without its token".into());
                    return;
                };
                let req = a
                    .bhxh
                    .get(format!("{b}/v1/citizens/{id}/fields?fields=annual_income"))
                    .bearer_auth(token);
                if expect(c, "consented release", req, 200, None)
                    .await
                    .is_none()
                {
                    return;
                }
            } else if st["status"] != "refused" {
                c.error(format!("refused grant is {}", st["status"]));
                return;
            } else {
                c.denials.fetch_add(1, Ordering::Relaxed);
            }
            c.ops[1].fetch_add(1, Ordering::Relaxed);
        }
        5 => {
            let atok = a.server.auditor_token("kt-soak");
            let Some(list) = expect(
                c,
                "audit entries",
                a.public
                    .get(format!("{b}/v1/audit/entries?limit=5"))
                    .bearer_auth(&atok),
                200,
                None,
            )
            .await
            else {
                return;
            };
            let index = list["items"][0]["index"].as_u64().unwrap_or(0);
            let r = a
                .public
                .get(format!("{b}/v1/audit/checkpoint"))
                .bearer_auth(&atok)
                .send()
                .await;
            let size = match r {
                Ok(r) if r.status().as_u16() == 200 => r
                    .text()
                    .await
                    .ok()
                    .and_then(|t| t.lines().nth(1).and_then(|l| l.parse::<u64>().ok())),
                Ok(r) => {
                    c.error(format!("checkpoint: {}", r.status()));
                    return;
                }
                Err(e) => {
                    c.error(format!("checkpoint: {e}"));
                    return;
                }
            };
            let Some(size) = size else {
                c.error("checkpoint without a size".into());
                return;
            };
            c.requests.fetch_add(1, Ordering::Relaxed);
            let req = a
                .public
                .get(format!(
                    "{b}/v1/audit/proof/inclusion?index={index}&tree_size={size}"
                ))
                .bearer_auth(&atok);
            if expect(c, "inclusion proof", req, 200, None).await.is_some() {
                c.ops[2].fetch_add(1, Ordering::Relaxed);
            }
        }
        6 => {
            let ctok = a.server.citizen_token(id);
            let req = a
                .public
                .get(format!("{b}/v1/me/accesses?limit=10"))
                .bearer_auth(&ctok);
            if expect(c, "history", req, 200, None).await.is_some() {
                c.ops[3].fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {
            let body = json!({"citizen_id": id, "purpose": "bench_release", "dossier_id": "SOAK-D",
                              "fields": ["annual_income"], "official": {"id": "soak"}});
            let req = a.bench.post(format!("{b}/v1/grants")).json(&body);
            if expect(c, "denied grant", req, 403, Some("field_not_in_purpose"))
                .await
                .is_some()
            {
                c.ops[4].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One long-lived grant per citizen (the benchmark purpose, 10,000 uses), its token by the
/// index in `ids`.
async fn pre_issue(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    ttl: u64,
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let body = release_grant_body(id, "SOAK-R", ttl);
        let r = client
            .post(format!("{base}/v1/grants"))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let g: Value = r.json().await.map_err(|e| e.to_string())?;
        match g["access_token"].as_str() {
            Some(t) if status == 201 => out.push(t.to_owned()),
            _ => return Err(format!("grant answered {status}: {}", g["code"])),
        }
    }
    Ok(out)
}

/// Runs the soak against a fresh server and stops it gracefully at the end.
pub fn run(opts: &SoakOptions, mut progress: impl FnMut(&str)) -> SoakReport {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let _work_removed_on_stop = crate::stop::remove_on_stop(work.path().to_path_buf());
    let pol = bench_policies(work.path(), &FIELDS).unwrap_or_else(|e| panic!("policies: {e}"));
    let (server, people) = TestServer::start(
        opts.citizens,
        &Limits {
            policies: Some(pol),
            grant_retention: Some(GRANT_RETENTION),
            ..Limits::default()
        },
    );
    let pid = server.pid().unwrap_or(0);
    let server = Arc::new(server);
    let ids: Arc<Vec<String>> = Arc::new(people.iter().map(|(id, _)| id.clone()).collect());
    let rt = crate::load::runtime().unwrap_or_else(|e| panic!("runtime: {e}"));
    let counters = Arc::new(Counters::default());
    let bench_id = server.agency_identity("bench-agency");
    let bhxh_id = server.agency_identity("bhxh-tphcm");
    // Issued before the clock starts, so the warm-up and the measured time are all load.
    let tokens = opts.reuse_grants.then(|| {
        let client = server.async_client(Some(&bench_id));
        let ttl = opts.duration.as_secs() + 600;
        let issued = rt.block_on(pre_issue(&client, &server.url(""), &ids, ttl));
        Arc::new(issued.unwrap_or_else(|e| panic!("pre-issuing grants: {e}")))
    });
    let start = Instant::now();
    let deadline = start + opts.duration;
    let tasks: Vec<_> = (0..opts.tasks)
        .map(|t| {
            let actors = Actors {
                bench: server.async_client(Some(&bench_id)),
                bhxh: server.async_client(Some(&bhxh_id)),
                public: server.async_client(None),
                base: server.url(""),
                ids: Arc::clone(&ids),
                tokens: tokens.clone(),
                server: Arc::clone(&server),
            };
            let c = Arc::clone(&counters);
            rt.spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    one_op(&actors, &c, t, i).await;
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(opts.warmup);
    let warmup_requests = counters.requests.load(Ordering::Relaxed);
    progress(&format!(
        "warm-up done after {} s: RSS {} MiB, {} requests",
        opts.warmup.as_secs(),
        rss_kib(pid) / 1024,
        warmup_requests
    ));
    let mut rss_samples = vec![(start.elapsed().as_secs(), rss_kib(pid))];
    let mut next = Instant::now() + Duration::from_secs(60);
    let mut next_sample = Instant::now() + RSS_EVERY;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if Instant::now() >= next_sample {
            next_sample += RSS_EVERY;
            rss_samples.push((start.elapsed().as_secs(), rss_kib(pid)));
        }
        if Instant::now() >= next {
            next += Duration::from_secs(60);
            progress(&format!(
                "{:.0} s: {} requests, {} errors, RSS {} MiB",
                start.elapsed().as_secs_f64(),
                counters.requests.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
                rss_kib(pid) / 1024
            ));
        }
    }
    rss_samples.push((start.elapsed().as_secs(), rss_kib(pid)));
    let window = (opts.duration.saturating_sub(opts.warmup) / 4)
        .min(Duration::from_secs(60))
        .as_secs();
    let rss = window_medians(&rss_samples, window);
    for t in tasks {
        if rt.block_on(t).is_err() {
            counters.error("a load task panicked".into());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(rt);
    let mut server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    server.stop();
    let out = server.vault.ctl(&["audit", "verify"]);
    let log_verifies = out.status.success();
    if !log_verifies {
        counters.error(format!("audit verify: {}", text(&out.stderr)));
    }
    let log_entries = text(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .unwrap_or(0);
    let c = &counters;
    let bodies = c
        .denial_bodies
        .lock()
        .map(|d| d.clone())
        .unwrap_or_default();
    let plaintext_hits: Vec<String> = crate::scan::served_vault(&server, &people, &bodies)
        .iter()
        .map(crate::scan::Hit::describe)
        .collect();
    SoakReport {
        seconds,
        requests: c.requests.load(Ordering::Relaxed),
        warmup_requests,
        intended_denials: c.denials.load(Ordering::Relaxed),
        ops: [0, 1, 2, 3, 4].map(|k| c.ops[k].load(Ordering::Relaxed)),
        errors: c.errors.load(Ordering::Relaxed),
        error_samples: c.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        rss_kib: rss,
        rss_samples,
        log_verifies,
        log_entries,
        plaintext_hits,
    }
}

#[cfg(test)]
mod tests {
    use super::window_medians;

    #[test]
    fn rss_windows_take_the_median_of_the_first_and_last_samples() {
        // A burst at the start of each window does not move its median.
        let samples: Vec<(u64, u64)> = (0..=120u64)
            .step_by(5)
            .map(|t| (300 + t, if t % 60 == 0 { 900 } else { 400 + t }))
            .collect();
        let (head, tail) = window_medians(&samples, 30);
        // Head: t = 0..=30 → 900, 405..430: median 420. Tail: t = 90..=120 → 490..515, 900.
        assert_eq!((head, tail), (420, 505));
        assert_eq!(window_medians(&samples[..1], 30), (900, 900));
        assert_eq!(window_medians(&[], 30), (0, 0));
        // A window wider than the run: both medians over every sample.
        let (a, b) = window_medians(&samples, 1_000);
        assert_eq!(a, b);
    }
}
