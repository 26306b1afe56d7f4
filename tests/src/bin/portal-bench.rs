//! The portal's history page under load: one citizen with 200 history entries, 16 signed-in
//! sessions reading `/portal/accesses?limit=200` at once, against the JSON API's
//! `/v1/me/accesses?limit=200` (the same data, no HTML) measured in the same run. Reports
//! the server-side time (the server's own request log), client latency, throughput and the
//! page's weight. See BENCHMARKS.md.
//!
//! `cargo build --release --workspace --bins && target/release/portal-bench [--seconds N]
//!  [--sessions N] [--out FILE]`

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark driver: a failed setup aborts the run with its cause; progress on stdout"
)]

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use vault_tests::args::{Args, Opt};
use vault_tests::load::{self, http_op};
use vault_tests::portal::{Browser, DevServer};

const USAGE: &str = "usage: portal-bench [--seconds N] [--sessions N] [--out FILE]";
const ENTRIES: usize = 200;

/// The server-side times (µs) of the successful requests in the request log (one kind of
/// request runs at a time).
fn server_times(lines: &[String]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        if f["status"] == json!(200)
            && let Some(us) = f["micros"].as_u64()
        {
            let _ = h.record(us.max(1));
        }
    }
    h
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let args = Args::from_env(
        &[
            Opt::Text("--seconds"),
            Opt::Number("--sessions"),
            Opt::Text("--out"),
        ],
        USAGE,
    );
    let seconds: f64 = args
        .text("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let sessions = usize::try_from(args.number("--sessions", 16)).unwrap_or(16);
    let dev = DevServer::start();
    let citizen = dev.citizen(0);

    // 200 entries in the citizen's history: 100 grants, each used once.
    let agency = dev.client(Some("csgt-cong-an-tphcm"));
    for i in 0..ENTRIES / 2 {
        let g: Value = agency
            .post(dev.url("/v1/grants"))
            .json(
                &json!({"citizen_id": citizen, "purpose": "driver_licence_renewal",
                          "dossier_id": format!("HS-BENCH-{i}"),
                          "fields": ["full_name", "date_of_birth"],
                          "official": {"id": "can-bo-01"}}),
            )
            .send()
            .unwrap()
            .json()
            .unwrap();
        let token = g["access_token"].as_str().expect("a grant").to_owned();
        let r = agency
            .get(dev.url(&format!("/v1/citizens/{citizen}/fields?fields=full_name")))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }

    // The sessions, each signed in through the dev issuer.
    let mut cookies = Vec::new();
    for _ in 0..sessions {
        let mut b = Browser::new(&dev);
        b.sign_in(&citizen, "/portal");
        cookies.push(format!(
            "__Host-vault-session={}",
            b.cookies["__Host-vault-session"]
        ));
    }
    let ca = std::fs::read(dev.data.join("dev/ca.pem")).unwrap();
    vault_tests::server::install_provider();
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..sessions)
            .map(|_| {
                reqwest::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap()
            })
            .collect(),
    );
    let rt = load::runtime().unwrap();
    let base = dev.origin.clone();

    // Page weight: the HTML of the history page with its 200 rows, and the stylesheet
    // (fetched once, then cached for a year under its hashed name).
    let html = rt.block_on(async {
        clients[0]
            .get(format!("{base}/portal/accesses?limit={ENTRIES}"))
            .header("cookie", &cookies[0])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let gzipped = rt.block_on(async {
        clients[0]
            .get(format!("{base}/portal/accesses?limit={ENTRIES}"))
            .header("cookie", &cookies[0])
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len()
    });
    let rows = html.matches("/portal/receipt/").count();
    assert!(rows >= ENTRIES, "the page shows {rows} entries");
    let css_path = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let css = rt.block_on(async {
        clients[0]
            .get(format!("{base}{css_path}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len()
    });

    let token = dev.token(&citizen);
    let cookies = Arc::new(cookies);
    let page_op = {
        let (b, cookies) = (base.clone(), Arc::clone(&cookies));
        http_op(Arc::clone(&clients), move |cl, c, _| {
            cl.get(format!("{b}/portal/accesses?limit={ENTRIES}"))
                .header("cookie", &cookies[c % cookies.len()])
                .header("accept-encoding", "gzip")
        })
    };
    let api_op = {
        let b = base.clone();
        http_op(Arc::clone(&clients), move |cl, _, _| {
            cl.get(format!("{b}/v1/me/accesses?limit={ENTRIES}"))
                .bearer_auth(&token)
        })
    };
    let warm = Duration::from_secs(2);
    let _ = load::run(&rt, sessions, warm, &api_op);
    let _ = load::run(&rt, sessions, warm, &page_op);
    let mut results = serde_json::Map::new();
    let mut lines = Vec::new();
    for (name, op) in [("api_json", &api_op), ("portal_page", &page_op)] {
        let _ = dev.take_request_log();
        let o = load::run(&rt, sessions, Duration::from_secs_f64(seconds), op);
        std::thread::sleep(Duration::from_millis(300));
        let server = server_times(&dev.take_request_log());
        let line = format!(
            "{name:<12} {:>7.0} req/s  client p50 {:>6.2} ms p99 {:>6.2} ms  server p50 {:>6.2} ms p99 {:>6.2} ms  errors {}",
            o.rps(),
            o.quantile_ms(0.5),
            o.quantile_ms(0.99),
            ms(&server, 0.5),
            ms(&server, 0.99),
            o.errors
        );
        println!("{line}");
        lines.push(line);
        results.insert(
            name.into(),
            json!({"rps": o.rps(), "client_p50_ms": o.quantile_ms(0.5),
                   "client_p99_ms": o.quantile_ms(0.99), "server_p50_ms": ms(&server, 0.5),
                   "server_p99_ms": ms(&server, 0.99), "errors": o.errors,
                   "server_samples": server.len()}),
        );
    }
    let ratio = results["portal_page"]["server_p99_ms"]
        .as_f64()
        .unwrap_or(0.0)
        / results["api_json"]["server_p99_ms"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1e-9);
    let summary = format!(
        "history page: {rows} entries, {:.1} KB on the wire (gzip; {:.1} KB of HTML) + {:.1} KB stylesheet (cached); server p99 page/API = {ratio:.2}",
        gzipped as f64 / 1024.0,
        html.len() as f64 / 1024.0,
        css as f64 / 1024.0
    );
    println!("{summary}");
    let report = json!({"sessions": sessions, "seconds": seconds, "entries": rows,
                        "html_bytes": html.len(), "html_gzip_bytes": gzipped, "css_bytes": css,
                        "server_p99_ratio_page_over_api": ratio, "results": results});
    if let Some(out) = args.text("--out") {
        std::fs::write(out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}
