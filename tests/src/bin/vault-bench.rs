//! The benchmark: the vault against the framework ceiling, OpenBao and PostgreSQL, on this
//! machine, in one run, rounds alternating between systems. See BENCHMARKS.md.
//!
//! `cargo run --release -p vault-tests --bin vault-bench -- --out DIR [--quick | --smoke]
//!  [--systems ceiling,vault,vault_mixed,openbao,postgres] [--seconds N] [--rounds N]`

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark driver: a failed setup aborts the run with its cause; progress on stdout"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vault_tests::args::{self, Args, Opt};
use vault_tests::bench::{FIELDS, bench_policies};
use vault_tests::load::{self, Op, Outcome, http_op, mix};
use vault_tests::peers;
use vault_tests::report::{Report, Round, cpu_seconds, cpu_us_per_request};
use vault_tests::server::{Limits, TestServer};
use vault_tests::stop;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Plan {
    out: PathBuf,
    citizens: u64,
    concurrency: Vec<usize>,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    systems: Vec<String>,
    mode: &'static str,
    import_count: u64,
    audit_entries: u64,
}

const USAGE: &str = "usage: vault-bench [--out DIR] [--quick | --smoke] \
                     [--systems ceiling,vault,vault_mixed,vault_pg,vault_pg2,openbao,postgres] \
                     [--seconds N] [--rounds N] [--citizens N]\n(see BENCHMARKS.md)";
const SYSTEMS: [&str; 7] = [
    "ceiling",
    "vault",
    "vault_mixed",
    "vault_pg",
    "vault_pg2",
    "openbao",
    "postgres",
];

fn plan() -> Plan {
    let args = Args::from_env(
        &[
            Opt::Text("--out"),
            Opt::Flag("--quick"),
            Opt::Flag("--smoke"),
            Opt::Text("--systems"),
            Opt::Text("--seconds"),
            Opt::Number("--rounds"),
            Opt::Number("--citizens"),
        ],
        USAGE,
    );
    let refuse = |why: String| args::refuse(&why, USAGE);
    if args.flag("--quick") && args.flag("--smoke") {
        refuse("`--quick` and `--smoke` exclude each other".into());
    }
    if let Some(bad) = args
        .text("--systems")
        .and_then(|s| s.split(',').find(|x| !SYSTEMS.contains(x)))
    {
        refuse(format!("unknown system `{bad}` in `--systems`"));
    }
    if let Some(v) = args.text("--seconds")
        && !v.parse::<f64>().is_ok_and(|s| s > 0.0 && s.is_finite())
    {
        refuse(format!("`--seconds` needs a positive number, not `{v}`"));
    }
    if args.number("--rounds", 3) == 0 {
        refuse("`--rounds` needs at least 1".into());
    }
    let flag = |name: &str| args.flag(name);
    let value = |name: &str| args.text(name).map(str::to_owned);
    let out = PathBuf::from(value("--out").unwrap_or_else(|| "bench-out".into()));
    let (mode, citizens, concurrency, seconds, warmup, import_count, audit_entries) =
        if flag("--smoke") {
            ("smoke", 300, vec![8], 1.0, 0.5, 0, 0)
        } else if flag("--quick") {
            ("quick", 2_000, vec![16, 64], 3.0, 1.0, 50_000, 200_000)
        } else {
            (
                "full",
                100_000,
                vec![16, 64, 256],
                20.0,
                5.0,
                1_000_000,
                10_000_000,
            )
        };
    let default_systems = if mode == "smoke" {
        "ceiling,vault,vault_mixed,vault_pg,vault_pg2"
    } else {
        "ceiling,vault,vault_mixed,vault_pg,vault_pg2,openbao,postgres"
    };
    Plan {
        out,
        citizens: value("--citizens")
            .and_then(|v| v.parse().ok())
            .unwrap_or(citizens),
        concurrency,
        seconds: value("--seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(seconds),
        warmup,
        rounds: value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3),
        systems: value("--systems")
            .unwrap_or_else(|| default_systems.into())
            .split(',')
            .map(str::to_owned)
            .collect(),
        mode,
        import_count,
        audit_entries,
    }
}

fn has(plan: &Plan, s: &str) -> bool {
    plan.systems.iter().any(|x| x == s)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{cores} cores ({cpu}), {:.1} GiB RAM, {}",
        mem as f64 / 1_048_576.0,
        std::fs::read_to_string("/etc/debian_version")
            .map(|v| format!("Debian {}", v.trim()))
            .unwrap_or_default()
    )
}

fn grant_body(citizen: &str) -> Value {
    json!({"citizen_id": citizen, "purpose": "bench_release", "dossier_id": "B-1",
           "fields": FIELDS, "official": {"id": "bench"}})
}

fn round_of(o: &Outcome) -> Round {
    Round {
        rps: o.rps(),
        p50_ms: o.quantile_ms(0.5),
        p99_ms: o.quantile_ms(0.99),
        errors: o.errors,
        cpu_us: None,
    }
}

/// A system under test: how to measure one round at a concurrency.
type Measure = Box<dyn Fn(usize, f64) -> Round>;

fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn mib_text(rss: Option<f64>) -> String {
    rss.map_or_else(|| "not read".to_owned(), |r| format!("{r:.1} MiB"))
}

struct Ceiling(Child, Option<stop::OnStop>);

impl Drop for Ceiling {
    fn drop(&mut self) {
        self.1 = None;
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ceiling(pki: &Path, body_bytes: usize) -> (Ceiling, String) {
    let mut child = Command::new(vault_tests::binary("bench-ceiling"))
        .arg("--cert")
        .arg(pki.join("server.pem"))
        .arg("--key")
        .arg(pki.join("server.key"))
        .arg("--client-ca")
        .arg(pki.join("ca.pem"))
        .arg("--body-bytes")
        .arg(body_bytes.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bench-ceiling (build it: cargo build --release -p vault-tests --bins)");
    let killed = stop::kill_on_stop(child.id());
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (Ceiling(child, Some(killed)), url)
}

/// One grant per citizen, issued over `clients`; the tokens in the citizens' order.
fn issue(
    rt: &tokio::runtime::Runtime,
    clients: &Arc<Vec<reqwest::Client>>,
    base: &str,
    ids: &Arc<Vec<String>>,
) -> Arc<Vec<String>> {
    let (c, b, ids2) = (Arc::clone(clients), base.to_owned(), Arc::clone(ids));
    let tokens = rt.block_on(async move {
        let chunk = ids2.len().div_ceil(c.len());
        let tasks: Vec<_> = (0..c.len())
            .map(|k| {
                let (c, b, ids) = (Arc::clone(&c), b.clone(), Arc::clone(&ids2));
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for id in ids.iter().skip(k * chunk).take(chunk) {
                        let v: Value = c[k]
                            .post(format!("{b}/v1/grants"))
                            .json(&grant_body(id))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        let token = v["access_token"]
                            .as_str()
                            .ok_or_else(|| format!("a setup grant was refused: {v}"))
                            .unwrap();
                        out.push(token.to_owned());
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    Arc::new(tokens)
}

/// Releases of every benchmark field with the pre-issued grants; connection `c` goes to
/// `bases[c % bases.len()]` (several nodes of one vault).
fn release_op(
    clients: &Arc<Vec<reqwest::Client>>,
    bases: Vec<String>,
    ids: &Arc<Vec<String>>,
    tokens: &Arc<Vec<String>>,
) -> Op {
    let (ids, tokens, q) = (Arc::clone(ids), Arc::clone(tokens), FIELDS.join(","));
    http_op(Arc::clone(clients), move |cl, c, i| {
        let k = (mix(c, i) % ids.len() as u64) as usize;
        let b = &bases[c % bases.len()];
        cl.get(format!("{b}/v1/citizens/{}/fields?fields={q}", ids[k]))
            .bearer_auth(&tokens[k])
    })
}

/// The vault on PostgreSQL: a cluster, a first node with the citizens imported and one grant
/// each, and a second node when asked.
struct OnPostgres {
    first: TestServer,
    second: Option<TestServer>,
    clients: Arc<Vec<reqwest::Client>>,
    ids: Arc<Vec<String>>,
    tokens: Arc<Vec<String>>,
    _cluster: vault_tests::pg::PgCluster,
}

fn on_postgres(plan: &Plan, work: &Path, rt: &tokio::runtime::Runtime, max_c: usize) -> OnPostgres {
    let cluster = vault_tests::pg::PgCluster::start();
    let t = Instant::now();
    let dir = work.join("pg-policies");
    std::fs::create_dir_all(&dir).unwrap();
    let (first, people) = TestServer::start(
        plan.citizens,
        &Limits {
            policies: Some(bench_policies(&dir, &FIELDS).unwrap()),
            store_url: Some(cluster.url()),
            ..Limits::default()
        },
    );
    println!(
        "vault on PostgreSQL: {} citizens imported, first node up in {:.1} s",
        people.len(),
        t.elapsed().as_secs_f64()
    );
    let ident = first.agency_identity("bench-agency");
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..max_c)
            .map(|_| first.async_client(Some(&ident)))
            .collect(),
    );
    let ids: Arc<Vec<String>> = Arc::new(people.iter().map(|(id, _)| id.clone()).collect());
    let t = Instant::now();
    let tokens = issue(rt, &clients, &first.url(""), &ids);
    println!(
        "vault on PostgreSQL: {} grants issued in {:.1} s",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );
    let second = has(plan, "vault_pg2").then(|| first.another_node());
    OnPostgres {
        first,
        second,
        clients,
        ids,
        tokens,
        _cluster: cluster,
    }
}

fn main() {
    let plan = plan();
    stop::install_or_exit("vault-bench");
    std::fs::create_dir_all(&plan.out).unwrap();
    let work = tempfile::tempdir().unwrap();
    let _work_removed_on_stop = stop::remove_on_stop(work.path().to_path_buf());
    let rt = load::runtime().unwrap();
    let max_c = plan.concurrency.iter().copied().max().unwrap_or(64);
    let mut report = Report {
        machine: machine(),
        ratio_concurrency: if plan.concurrency.contains(&64) {
            64
        } else {
            plan.concurrency[plan.concurrency.len() / 2]
        },
        ..Report::default()
    };
    println!("vault-bench ({}) on {}", plan.mode, report.machine);
    for name in SYSTEMS {
        if !has(&plan, name) {
            report.skipped.insert(
                name.into(),
                format!("not selected in this run ({} mode / --systems)", plan.mode),
            );
        }
    }

    // The vault: citizens imported, one grant per citizen issued up front.
    let t = Instant::now();
    let (server, people) = TestServer::start(
        plan.citizens,
        &Limits {
            policies: Some(bench_policies(work.path(), &FIELDS).unwrap()),
            ..Limits::default()
        },
    );
    // The server's memory at three moments: the store just opened, all grants issued, and
    // the peak over the measured rounds (below), so a report tells its baseline from its load.
    let rss_at_open = server.pid().and_then(rss_mib);
    println!(
        "vault: {} citizens imported, server up in {:.1} s (RSS {})",
        people.len(),
        t.elapsed().as_secs_f64(),
        mib_text(rss_at_open)
    );
    let ident = server.agency_identity("bench-agency");
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..max_c)
            .map(|_| server.async_client(Some(&ident)))
            .collect(),
    );
    let ids: Arc<Vec<String>> = Arc::new(people.iter().map(|(id, _)| id.clone()).collect());
    let base = server.url("");
    let t = Instant::now();
    let tokens = issue(&rt, &clients, &base, &ids);
    let rss_after_grants = server.pid().and_then(rss_mib);
    println!(
        "vault: {} grants issued in {:.1} s (RSS {})",
        tokens.len(),
        t.elapsed().as_secs_f64(),
        mib_text(rss_after_grants)
    );
    let q = FIELDS.join(",");
    let release = release_op(&clients, vec![base.clone()], &ids, &tokens);
    // The size of a real release answer, for the ceiling's fixed body.
    let sample = rt.block_on(async {
        clients[0]
            .get(format!("{base}/v1/citizens/{}/fields?fields={q}", ids[0]))
            .bearer_auth(&tokens[0])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len()
    });
    let mixed: Op = {
        let (ids, b, q, clients) = (
            Arc::clone(&ids),
            base.clone(),
            q.clone(),
            Arc::clone(&clients),
        );
        Arc::new(move |c, i| {
            let cl = clients[c % clients.len()].clone();
            let id = ids[(mix(c, i) % ids.len() as u64) as usize].clone();
            let (b, q) = (b.clone(), q.clone());
            Box::pin(async move {
                let Ok(r) = cl
                    .post(format!("{b}/v1/grants"))
                    .json(&grant_body(&id))
                    .send()
                    .await
                else {
                    return false;
                };
                let Ok(v) = r.json::<Value>().await else {
                    return false;
                };
                let Some(token) = v["access_token"].as_str() else {
                    return false;
                };
                for _ in 0..2 {
                    match cl
                        .get(format!("{b}/v1/citizens/{id}/fields?fields={q}"))
                        .bearer_auth(token)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            if r.bytes().await.is_err() {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
                true
            })
        })
    };

    // Each system with the process whose CPU time a round is charged (if it is one process).
    let mut systems: Vec<(String, Measure, Option<u32>)> = Vec::new();
    let rt = Arc::new(rt);
    let http = |op: Op| -> Measure {
        let rt = Arc::clone(&rt);
        Box::new(move |c, secs| round_of(&load::run(&rt, c, Duration::from_secs_f64(secs), &op)))
    };
    let _ceiling = if has(&plan, "ceiling") {
        let (proc_, url) = start_ceiling(&server.pki_dir(), sample);
        let op = http_op(Arc::clone(&clients), move |cl, _, _| {
            cl.get(format!("{url}/ceiling"))
        });
        systems.push(("ceiling".into(), http(op), Some(proc_.0.id())));
        println!("ceiling: fixed {sample}-byte JSON answers (the size of a release)");
        Some(proc_)
    } else {
        None
    };
    if has(&plan, "vault") {
        systems.push(("vault".into(), http(release), server.pid()));
    }
    if has(&plan, "vault_mixed") {
        systems.push(("vault_mixed".into(), http(mixed), server.pid()));
    }
    let on_pg = (has(&plan, "vault_pg") || has(&plan, "vault_pg2"))
        .then(|| on_postgres(&plan, work.path(), &rt, max_c));
    if let Some(pg) = &on_pg {
        let first = pg.first.url("");
        if has(&plan, "vault_pg") {
            let op = release_op(&pg.clients, vec![first.clone()], &pg.ids, &pg.tokens);
            systems.push(("vault_pg".into(), http(op), pg.first.pid()));
        }
        if let Some(second) = &pg.second {
            let op = release_op(
                &pg.clients,
                vec![first, second.url("")],
                &pg.ids,
                &pg.tokens,
            );
            systems.push(("vault_pg2".into(), http(op), None));
        }
    }
    let mut peers_alive: Vec<Box<dyn std::any::Any>> = Vec::new();
    if has(&plan, "openbao") {
        match peers::openbao::start(work.path(), &server, &people, &rt, max_c) {
            Ok((bao, op)) => {
                systems.push(("openbao".into(), http(op), Some(bao.pid())));
                peers_alive.push(Box::new(bao));
            }
            Err(e) => {
                println!("openbao: not measured: {e}");
                report.skipped.insert("openbao".into(), e);
            }
        }
    }
    if has(&plan, "postgres") {
        match peers::postgres::start(work.path(), &people) {
            Ok(pg) => {
                let pg = Arc::new(pg);
                let p2 = Arc::clone(&pg);
                systems.push((
                    "postgres".into(),
                    Box::new(move |c, secs| p2.pgbench(c, secs)),
                    None,
                ));
                peers_alive.push(Box::new(pg));
            }
            Err(e) => {
                println!("postgres: not measured: {e}");
                report.skipped.insert("postgres".into(), e);
            }
        }
    }

    // Warm up each system at each concurrency, then alternate: A B C … A B C … (rounds).
    let mut peak_rss = 0.0f64;
    for &c in &plan.concurrency {
        for (name, measure, _) in &systems {
            let w = measure(c, plan.warmup);
            println!("warm-up {name} c{c}: {:.0} req/s", w.rps);
        }
        for round in 1..=plan.rounds {
            for (name, measure, pid) in &systems {
                let cpu_before = pid.and_then(cpu_seconds);
                let t = Instant::now();
                let mut r = measure(c, plan.seconds);
                let wall = t.elapsed().as_secs_f64();
                r.cpu_us = cpu_before
                    .zip(pid.and_then(cpu_seconds))
                    .and_then(|(a, b)| cpu_us_per_request(b - a, wall, r.rps));
                let cpu = r
                    .cpu_us
                    .map_or_else(|| "–".to_owned(), |u| format!("{u:.0}"));
                println!(
                    "round {round} {name:<12} c{c:<4} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  cpu {cpu:>5} µs/req  errors {}",
                    r.rps, r.p50_ms, r.p99_ms, r.errors
                );
                report.add(name, c, r);
                if name.starts_with("vault")
                    && let Some(rss) = server.pid().and_then(rss_mib)
                {
                    peak_rss = peak_rss.max(rss);
                }
            }
        }
    }
    for (key, rss) in [
        ("vault_server_rss_mib_under_load", Some(peak_rss)),
        ("vault_server_rss_mib_at_open", rss_at_open),
        ("vault_server_rss_mib_after_grants", rss_after_grants),
    ] {
        report
            .micro
            .insert(key.into(), json!(rss.map(|r| (r * 10.0).round() / 10.0)));
    }
    report
        .micro
        .insert("vault_citizens".into(), json!(people.len()));
    report.micro.insert(
        "vault_mixed_operation".into(),
        json!("one operation = POST /v1/grants + 2 releases (3 requests)"),
    );
    drop(systems);
    drop(peers_alive);
    drop(on_pg);
    drop(server);

    peers::micro(
        &mut report,
        work.path(),
        plan.import_count,
        plan.audit_entries,
    );

    let json = serde_json::to_string_pretty(&report.to_json()).unwrap();
    std::fs::write(plan.out.join("report.json"), json).unwrap();
    std::fs::write(plan.out.join("report.md"), report.to_markdown()).unwrap();
    std::fs::write(plan.out.join("chart.svg"), report.to_svg()).unwrap();
    println!("\n{}", report.to_markdown());
    println!(
        "wrote {}/report.md, report.json, chart.svg",
        plan.out.display()
    );
}
