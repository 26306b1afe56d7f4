//! Prometheus metrics in text format: requests and latency by route and status, grants by
//! outcome, denials by code, and the audit writer's batch sizes and commit latency. Labels are
//! route templates and codes only, never paths or values.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use vault_core::audit::{BATCH_SIZE_BUCKETS, SYNC_MICROS_BUCKETS, WriterStats};

/// Latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    grants: BTreeMap<String, u64>,
    denials: BTreeMap<String, u64>,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    sweeps: AtomicU64,
}

impl Metrics {
    /// One answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        *m.requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let h = m
            .latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = h.counts.get_mut(i) {
            *c += 1;
        }
        h.sum += seconds;
    }

    /// A grant request's outcome (`active`, `pending_consent`, `denied`).
    pub fn grant(&self, outcome: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.grants.entry(outcome.to_owned()).or_default() += 1;
        }
    }

    /// One tick of the retention sweep done.
    pub fn sweep_tick(&self) {
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// A refusal, by its code.
    pub fn denial(&self, code: &str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.denials.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// The text exposition.
    pub fn render(&self, audit: Option<&WriterStats>, audit_size: u64) -> String {
        let mut o = String::new();
        let Ok(m) = self.inner.lock() else {
            return o;
        };
        o.push_str("# HELP vault_http_requests_total HTTP requests answered.\n# TYPE vault_http_requests_total counter\n");
        for ((method, route, status), n) in &m.requests {
            let _ = writeln!(
                o,
                "vault_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        o.push_str("# HELP vault_http_request_duration_seconds Request latency.\n# TYPE vault_http_request_duration_seconds histogram\n");
        for ((method, route), h) in &m.latency {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cum = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cum += h.counts.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    o,
                    "vault_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cum}"
                );
            }
            cum += h.counts.last().copied().unwrap_or(0);
            let _ = writeln!(
                o,
                "vault_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cum}\n\
                 vault_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 vault_http_request_duration_seconds_count{{{labels}}} {cum}",
                h.sum
            );
        }
        o.push_str("# HELP vault_grants_total Grant requests by outcome.\n# TYPE vault_grants_total counter\n");
        for (k, n) in &m.grants {
            let _ = writeln!(o, "vault_grants_total{{outcome=\"{k}\"}} {n}");
        }
        o.push_str(
            "# HELP vault_denials_total Refusals by code.\n# TYPE vault_denials_total counter\n",
        );
        for (k, n) in &m.denials {
            let _ = writeln!(o, "vault_denials_total{{code=\"{k}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP vault_retention_sweeps_total Ticks of the retention sweep done.\n# TYPE vault_retention_sweeps_total counter\nvault_retention_sweeps_total {}",
            self.sweeps.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP vault_audit_entries Entries in the audit log.\n# TYPE vault_audit_entries gauge\nvault_audit_entries {audit_size}"
        );
        if let Some(bytes) = resident_bytes() {
            let _ = writeln!(
                o,
                "# HELP process_resident_memory_bytes Resident memory of the server process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {bytes}"
            );
        }
        if let Some(s) = audit {
            let _ = writeln!(
                o,
                "# HELP vault_audit_batch_failures_total Audit commits that failed.\n# TYPE vault_audit_batch_failures_total counter\nvault_audit_batch_failures_total {}",
                s.failures.load(Ordering::Relaxed)
            );
            hist(
                &mut o,
                "vault_audit_batch_size",
                "Entries per group commit.",
                &BATCH_SIZE_BUCKETS.map(|b| b.to_string()),
                &s.batch_sizes,
                s.entries.load(Ordering::Relaxed) as f64,
            );
            hist(
                &mut o,
                "vault_audit_sync_seconds",
                "Group commit write + fdatasync latency.",
                &SYNC_MICROS_BUCKETS.map(|b| (b as f64 / 1e6).to_string()),
                &s.sync_micros,
                s.sync_micros_sum.load(Ordering::Relaxed) as f64 / 1e6,
            );
        }
        o
    }
}

/// The process's resident set size (Linux `/proc/self/status`), if readable.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn hist(
    o: &mut String,
    name: &str,
    help: &str,
    bounds: &[String],
    counts: &[std::sync::atomic::AtomicU64],
    sum: f64,
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cum = 0;
    for (i, b) in bounds.iter().enumerate() {
        cum += counts.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        let _ = writeln!(o, "{name}_bucket{{le=\"{b}\"}} {cum}");
    }
    cum += counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
    let _ = writeln!(
        o,
        "{name}_bucket{{le=\"+Inf\"}} {cum}\n{name}_sum {sum}\n{name}_count {cum}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("GET", "/v1/purposes", 200, 0.0007);
        m.request("GET", "/v1/purposes", 200, 0.2);
        m.grant("active");
        m.denial("purpose_not_allowed");
        let stats = WriterStats::default();
        let t = m.render(Some(&stats), 5);
        assert!(t.contains(
            "vault_http_requests_total{method=\"GET\",route=\"/v1/purposes\",status=\"200\"} 2"
        ));
        assert!(t.contains("route=\"/v1/purposes\",le=\"0.001\"} 1"));
        assert!(t.contains("route=\"/v1/purposes\",le=\"+Inf\"} 2"));
        assert!(t.contains("vault_grants_total{outcome=\"active\"} 1"));
        assert!(t.contains("vault_denials_total{code=\"purpose_not_allowed\"} 1"));
        assert!(t.contains("vault_audit_entries 5"));
        assert!(t.contains("vault_audit_sync_seconds_count 0"));
        let rss: u64 = t
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            rss > 1 << 20,
            "the test process holds more than 1 MiB: {rss}"
        );
    }
}
