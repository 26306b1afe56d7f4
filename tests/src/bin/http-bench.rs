//! A first look at releases over HTTPS: the real `vault-server` (same profile as this tool),
//! mTLS keep-alive clients, 8-field releases with pre-issued grants, against `/healthz` over
//! the same connections in the same run (the server's own ceiling).
//!
//! `cargo run --release -p vault-tests --bin http-bench -- [--citizens 2000] [--grants 500]
//!  [--connections 64] [--seconds 5]`

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "benchmark tool: a failure aborts the run; the report goes to stdout"
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vault_tests::arg_u64 as arg;
use vault_tests::bench::{FIELDS, bench_policies};
use vault_tests::server::{Limits, TestServer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Outcome {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

fn load(
    connections: usize,
    secs: f64,
    op: Arc<dyn Fn(usize, usize) -> bool + Send + Sync>,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|t| {
            let (stop, lat, op, errors) = (
                Arc::clone(&stop),
                Arc::clone(&lat),
                Arc::clone(&op),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    if op(t, i) {
                        mine.push(s.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += connections;
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
    let pct = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Outcome {
        rps: l.len() as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn main() {
    let citizens = arg("--citizens", 2000);
    let grants = arg("--grants", 500) as usize;
    let connections = arg("--connections", 64) as usize;
    let secs = arg("--seconds", 5) as f64;
    let work = tempfile::tempdir().unwrap();
    let pol = bench_policies(work.path(), &FIELDS).unwrap();
    let t0 = Instant::now();
    let (server, people) = TestServer::start(
        citizens,
        &Limits {
            policies: Some(pol),
            ..Limits::default()
        },
    );
    println!(
        "setup: {} citizens imported and server up in {:.1} s",
        people.len(),
        t0.elapsed().as_secs_f64()
    );
    let ident = server.agency_identity("bench-agency");
    let issuing = server.client(Some(&ident));
    let mut tokens = Vec::new();
    for (id, _) in people.iter().take(grants) {
        let r: serde_json::Value = issuing
            .post(server.url("/v1/grants"))
            .json(
                &json!({"citizen_id": id, "purpose": "bench_release", "dossier_id": "B-1",
                          "fields": FIELDS, "official": {"id": "bench"}}),
            )
            .send()
            .unwrap()
            .json()
            .unwrap();
        tokens.push((id.clone(), r["access_token"].as_str().unwrap().to_owned()));
    }
    let clients: Arc<Vec<reqwest::blocking::Client>> = Arc::new(
        (0..connections)
            .map(|_| server.client(Some(&ident)))
            .collect(),
    );
    let tokens = Arc::new(tokens);
    let base = server.url("");
    let q = FIELDS.join(",");
    let (c1, b1) = (Arc::clone(&clients), base.clone());
    let health: Arc<dyn Fn(usize, usize) -> bool + Send + Sync> = Arc::new(move |t, _| {
        c1[t]
            .get(format!("{b1}/healthz"))
            .send()
            .is_ok_and(|r| r.status().is_success() && r.bytes().is_ok())
    });
    let (c2, b2, tk) = (Arc::clone(&clients), base.clone(), Arc::clone(&tokens));
    let release: Arc<dyn Fn(usize, usize) -> bool + Send + Sync> = Arc::new(move |t, i| {
        let (id, token) = &tk[i % tk.len()];
        c2[t]
            .get(format!("{b2}/v1/citizens/{id}/fields?fields={q}"))
            .bearer_auth(token)
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200 && r.bytes().is_ok())
    });
    // Warm-up, then alternate A B A B A B.
    let _ = load(connections, 1.0, Arc::clone(&release));
    println!(
        "connections {connections}, {secs} s per round, 8-field releases, {} grants",
        tokens.len()
    );
    println!("round  healthz_rps  release_rps  ratio  release_p50_ms  release_p99_ms  errors");
    for round in 1..=3 {
        let h = load(connections, secs, Arc::clone(&health));
        let r = load(connections, secs, Arc::clone(&release));
        println!(
            "{round:>5}  {:>11.0}  {:>11.0}  {:>5.2}  {:>14.2}  {:>14.2}  {}",
            h.rps,
            r.rps,
            r.rps / h.rps,
            r.p50,
            r.p99,
            h.errors + r.errors
        );
    }
}
