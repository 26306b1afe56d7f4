//! The load generator: a fixed number of connections, each a task that issues one request
//! after another for a fixed duration, recording every latency in an HDR histogram and
//! counting every failure (never dropping one). Used for every HTTP system of the benchmark.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One request: given the connection number and a per-connection sequence number, does the
/// work and says whether it succeeded.
pub type Op = Arc<dyn Fn(usize, u64) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (any error or unexpected status).
    pub errors: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Latency of successful requests, microseconds.
    pub hist: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s, 3 significant digits; cannot fail for these bounds.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()))
}

#[expect(
    clippy::panic,
    reason = "hdrhistogram refuses only invalid bounds, which are constant"
)]
fn unreachable_histogram() -> Histogram<u64> {
    panic!("histogram bounds are valid")
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            ok: 0,
            errors: 0,
            seconds: 0.0,
            hist: histogram(),
        }
    }
}

impl Outcome {
    /// Records one request.
    pub fn record(&mut self, ok: bool, latency: Duration) {
        if ok {
            self.ok += 1;
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let _ = self.hist.record(us.min(self.hist.high()));
        } else {
            self.errors += 1;
        }
    }

    /// Adds another connection's counts (same run: the wall time is the longest).
    pub fn merge(&mut self, other: &Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.seconds = self.seconds.max(other.seconds);
        let _ = self.hist.add(&other.hist);
    }

    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs `op` on `connections` concurrent tasks for `duration` on the runtime.
pub fn run(
    rt: &tokio::runtime::Runtime,
    connections: usize,
    duration: Duration,
    op: &Op,
) -> Outcome {
    rt.block_on(async {
        let start = Instant::now();
        let deadline = start + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let op = Arc::clone(op);
                tokio::spawn(async move {
                    let mut out = Outcome::default();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let ok = op(c, i).await;
                        out.record(ok, t.elapsed());
                        i += 1;
                    }
                    out
                })
            })
            .collect();
        let mut total = Outcome::default();
        for t in tasks {
            match t.await {
                Ok(o) => total.merge(&o),
                // A task that panicked lost its counts: report it as at least one error.
                Err(_) => total.errors += 1,
            }
        }
        total.seconds = start.elapsed().as_secs_f64();
        total
    })
}

/// splitmix64 of (connection, sequence): a cheap, well-spread pseudo-random index.
pub fn mix(c: usize, i: u64) -> u64 {
    let mut z =
        (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An HTTP operation: builds a request for (connection, sequence) on that connection's
/// client; success is a 2xx whose body was read completely.
pub fn http_op<F>(clients: Arc<Vec<reqwest::Client>>, build: F) -> Op
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    Arc::new(move |c, i| {
        let req = build(&clients[c % clients.len()], c, i);
        Box::pin(async move {
            match req.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

/// A multi-threaded runtime with one worker per core.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_keeps_quantiles() {
        let mut a = Outcome::default();
        let mut b = Outcome::default();
        for ms in 1..=50 {
            a.record(true, Duration::from_millis(ms));
        }
        for ms in 51..=100 {
            b.record(true, Duration::from_millis(ms));
        }
        b.record(false, Duration::ZERO);
        a.seconds = 2.0;
        b.seconds = 1.5;
        a.merge(&b);
        assert_eq!((a.ok, a.errors), (100, 1));
        assert_eq!(a.seconds, 2.0);
        assert!((a.rps() - 50.0).abs() < 1e-9);
        assert!(
            (a.quantile_ms(0.5) - 50.0).abs() < 0.1,
            "{}",
            a.quantile_ms(0.5)
        );
        assert!(
            (a.quantile_ms(0.99) - 99.0).abs() < 0.1,
            "{}",
            a.quantile_ms(0.99)
        );
    }

    #[test]
    fn every_failure_is_counted() {
        let rt = runtime().unwrap();
        let op: Op = Arc::new(|_, i| Box::pin(async move { i % 3 != 0 }));
        let o = run(&rt, 4, Duration::from_millis(50), &op);
        let total = o.ok + o.errors;
        assert!(total > 0);
        // Each connection fails its requests 0, 3, 6, …: a third of them, rounded up.
        assert!(
            o.errors * 3 >= total && o.errors * 3 <= total + 3 * 4,
            "{} of {}",
            o.errors,
            total
        );
        assert_eq!(
            o.hist.len(),
            o.ok,
            "latency recorded for every success only"
        );
    }
}
