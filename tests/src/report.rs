//! The benchmark report: per system and concurrency the median of the rounds (throughput,
//! p50, p99, server CPU per request, errors summed), the ratios the targets are stated in,
//! and the same data as `report.json`, `report.md` and an SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

/// One round of one system at one concurrency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed requests.
    pub errors: u64,
    /// CPU time (user + system, all threads) the server process used per request, µs; `None`
    /// where the server is not one process the bench started (PostgreSQL). Steadier than
    /// req/s on a shared machine: a neighbour's load stretches the wall clock, not the CPU
    /// time a request costs.
    pub cpu_us: Option<f64>,
}

/// `USER_HZ`: the unit of `/proc/<pid>/stat` times, fixed at 100 by Linux's user ABI.
const USER_HZ: f64 = 100.0;

/// The CPU time (user + system) a process has used, in seconds, from its `/proc/<pid>/stat`
/// line (`None` if the line is not one).
pub fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses: the
    // fields after it start at the last `)`; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let user: u64 = f.next()?.parse().ok()?;
    let system: u64 = f.next()?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

/// The CPU time process `pid` has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Server CPU µs per request over a round: `cpu_s` of CPU time in `wall_s` seconds at `rps`.
pub fn cpu_us_per_request(cpu_s: f64, wall_s: f64, rps: f64) -> Option<f64> {
    (wall_s > 0.0 && rps > 0.0).then(|| cpu_s / wall_s / rps * 1e6)
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// system → concurrency → rounds.
    pub systems: BTreeMap<String, BTreeMap<usize, Vec<Round>>>,
    /// Named single figures (audit appends, import rate, …).
    pub micro: Map<String, Value>,
    /// A line describing the machine.
    pub machine: String,
    /// Systems that could not run, and why.
    pub skipped: BTreeMap<String, String>,
    /// The concurrency the ratios are taken at.
    pub ratio_concurrency: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The summary of several rounds: medians of rps and latencies, errors summed.
pub fn summarize(rounds: &[Round]) -> Round {
    Round {
        rps: median(rounds.iter().map(|r| r.rps).collect()),
        p50_ms: median(rounds.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median(rounds.iter().map(|r| r.p99_ms).collect()),
        errors: rounds.iter().map(|r| r.errors).sum(),
        cpu_us: {
            let cpu: Vec<f64> = rounds.iter().filter_map(|r| r.cpu_us).collect();
            (!cpu.is_empty()).then(|| median(cpu))
        },
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// Adds a round.
    pub fn add(&mut self, system: &str, concurrency: usize, round: Round) {
        self.systems
            .entry(system.to_owned())
            .or_default()
            .entry(concurrency)
            .or_default()
            .push(round);
    }

    /// The summary of a system at a concurrency.
    pub fn summary(&self, system: &str, concurrency: usize) -> Option<Round> {
        self.systems
            .get(system)?
            .get(&concurrency)
            .filter(|r| !r.is_empty())
            .map(|r| summarize(r))
    }

    /// `vault` throughput over another system's at the ratio concurrency.
    pub fn ratio(&self, other: &str) -> Option<f64> {
        let v = self.summary("vault", self.ratio_concurrency)?;
        let o = self.summary(other, self.ratio_concurrency)?;
        (o.rps > 0.0).then(|| round2(v.rps / o.rps))
    }

    /// The spread of `ratio(other)`: the lowest and highest of the per-round ratios, round
    /// *i* of the vault over round *i* of `other` (both ran in the same pass of the
    /// alternation, so a drift of the machine mostly moves both). With an odd number of
    /// rounds the ratio of the medians lies within it (of the rounds at or above the vault's
    /// median and those at or below the other's, at least one is both). `None` without a
    /// pair of rounds.
    pub fn ratio_range(&self, other: &str) -> Option<(f64, f64)> {
        self.pair_range(other, |v, o| (o.rps > 0.0).then(|| v.rps / o.rps))
    }

    /// The spread of `cpu_ratio(other)`, paired round by round as `ratio_range`.
    pub fn cpu_ratio_range(&self, other: &str) -> Option<(f64, f64)> {
        self.pair_range(other, |v, o| {
            let (v, o) = (v.cpu_us?, o.cpu_us?);
            (o > 0.0).then(|| v / o)
        })
    }

    fn pair_range(
        &self,
        other: &str,
        each: impl Fn(&Round, &Round) -> Option<f64>,
    ) -> Option<(f64, f64)> {
        let c = self.ratio_concurrency;
        let v = self.systems.get("vault")?.get(&c)?;
        let o = self.systems.get(other)?.get(&c)?;
        let all: Vec<f64> = v
            .iter()
            .zip(o)
            .filter_map(|(v, o)| each(v, o))
            .filter(|x| x.is_finite())
            .collect();
        let lo = all.iter().copied().reduce(f64::min)?;
        let hi = all.iter().copied().reduce(f64::max)?;
        Some((round2(lo), round2(hi)))
    }

    /// `vault`'s server CPU per request over another system's, at the ratio concurrency.
    pub fn cpu_ratio(&self, other: &str) -> Option<f64> {
        let v = self.summary("vault", self.ratio_concurrency)?.cpu_us?;
        let o = self.summary(other, self.ratio_concurrency)?.cpu_us?;
        (o > 0.0).then(|| round2(v / o))
    }

    /// `report.json`.
    pub fn to_json(&self) -> Value {
        let mut systems = Map::new();
        for (name, by_c) in &self.systems {
            let mut m = Map::new();
            for c in by_c.keys() {
                if let Some(s) = self.summary(name, *c) {
                    m.insert(
                        c.to_string(),
                        json!({"rps": round2(s.rps), "p50_ms": round2(s.p50_ms),
                               "p99_ms": round2(s.p99_ms), "errors": s.errors,
                               "cpu_us_per_req": s.cpu_us.map(round2),
                               "rounds": by_c[c].iter().map(|r| round2(r.rps)).collect::<Vec<_>>()}),
                    );
                }
            }
            systems.insert(name.clone(), Value::Object(m));
        }
        json!({
            "systems": systems,
            "ratios": {
                "vault_over_ceiling": self.ratio("ceiling"),
                "vault_over_openbao": self.ratio("openbao"),
                "vault_over_postgres": self.ratio("postgres"),
                "vault_cpu_per_req_over_ceiling": self.cpu_ratio("ceiling"),
                "vault_cpu_per_req_over_openbao": self.cpu_ratio("openbao"),
                "vault_postgres_over_vault": self.ratio("vault_pg").map(|r| 1.0 / r),
                "vault_postgres_2_nodes_over_vault": self.ratio("vault_pg2").map(|r| 1.0 / r),
                "at_concurrency": self.ratio_concurrency,
            },
            "ratio_ranges": {
                "vault_over_ceiling": self.ratio_range("ceiling").map(|(a, b)| [a, b]),
                "vault_over_openbao": self.ratio_range("openbao").map(|(a, b)| [a, b]),
                "vault_over_postgres": self.ratio_range("postgres").map(|(a, b)| [a, b]),
                "vault_cpu_per_req_over_ceiling": self.cpu_ratio_range("ceiling").map(|(a, b)| [a, b]),
                "vault_cpu_per_req_over_openbao": self.cpu_ratio_range("openbao").map(|(a, b)| [a, b]),
            },
            "micro": self.micro,
            "skipped": self.skipped,
            "machine": self.machine,
        })
    }

    /// `report.md`.
    pub fn to_markdown(&self) -> String {
        let mut o = String::from("# Citizen Data Vault benchmark\n\n");
        let _ = writeln!(o, "Machine: {}\n", self.machine);
        o.push_str("| system | connections | req/s (median) | p50 ms | p99 ms | server CPU µs/req | errors | rounds req/s |\n|---|---|---|---|---|---|---|---|\n");
        for (name, by_c) in &self.systems {
            for (c, rounds) in by_c {
                let s = summarize(rounds);
                let each: Vec<String> = rounds.iter().map(|r| format!("{:.0}", r.rps)).collect();
                let _ = writeln!(
                    o,
                    "| {name} | {c} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                    s.rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.cpu_us
                        .map_or_else(|| "–".to_owned(), |u| format!("{u:.0}")),
                    s.errors,
                    each.join(" / ")
                );
            }
        }
        let _ = writeln!(o, "\nRatios at {} connections:\n", self.ratio_concurrency);
        for other in ["ceiling", "openbao", "postgres"] {
            let spread = self
                .ratio_range(other)
                .map_or_else(String::new, |(lo, hi)| {
                    format!(" (round by round {lo:.2}–{hi:.2})")
                });
            let _ = writeln!(
                o,
                "- vault / {other}: {}{spread}",
                self.ratio(other)
                    .map_or_else(|| "not measured".to_owned(), |r| format!("{r:.2}"))
            );
        }
        for (other, what) in [
            ("vault_pg", "one node on PostgreSQL"),
            ("vault_pg2", "two nodes on PostgreSQL"),
        ] {
            if let Some(r) = self.ratio(other) {
                let spread = self
                    .ratio_range(other)
                    .map_or_else(String::new, |(lo, hi)| {
                        format!(" (round by round {:.2}–{:.2})", 1.0 / hi, 1.0 / lo)
                    });
                let _ = writeln!(o, "- {what} / the embedded store: {:.2}{spread}", 1.0 / r);
            }
        }
        for other in ["ceiling", "openbao"] {
            if let Some(r) = self.cpu_ratio(other) {
                let spread = self
                    .cpu_ratio_range(other)
                    .map_or_else(String::new, |(lo, hi)| {
                        format!(" (round by round {lo:.2}–{hi:.2})")
                    });
                let _ = writeln!(
                    o,
                    "- server CPU per request, vault / {other}: {r:.2}{spread}"
                );
            }
        }
        if !self.micro.is_empty() {
            o.push_str("\n## Micro-figures\n\n");
            for (k, v) in &self.micro {
                match v.as_str() {
                    // A tool's own Markdown output, shown as it printed it.
                    Some(text) if text.contains('\n') => {
                        let _ = writeln!(o, "### {k}\n\n{text}\n");
                    }
                    Some(text) => {
                        let _ = writeln!(o, "- {k}: {text}");
                    }
                    None => {
                        let _ = writeln!(o, "- {k}: {v}");
                    }
                }
            }
        }
        if !self.skipped.is_empty() {
            o.push_str("\n## Not measured\n\n");
            for (k, v) in &self.skipped {
                let _ = writeln!(o, "- {k}: {v}");
            }
        }
        o
    }

    /// An SVG chart: throughput bars and p99 marks per system and concurrency.
    pub fn to_svg(&self) -> String {
        let cells: Vec<(String, usize, Round)> = self
            .systems
            .iter()
            .flat_map(|(n, by_c)| {
                by_c.keys()
                    .filter_map(move |c| Some((n.clone(), *c, self.summary(n, *c)?)))
            })
            .collect();
        let max_rps = cells.iter().map(|c| c.2.rps).fold(1.0, f64::max);
        let max_p99 = cells.iter().map(|c| c.2.p99_ms).fold(1.0, f64::max);
        let (bar, gap, h, top) = (28.0, 10.0, 300.0, 40.0);
        let width = 80.0 + cells.len() as f64 * (bar + gap) + 40.0;
        let mut o = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"10\">\n\
             <text x=\"10\" y=\"20\" font-size=\"14\">Throughput (bars, req/s, max {max_rps:.0}) and p99 latency (dots, ms, max {max_p99:.1})</text>\n",
            h + top + 120.0
        );
        for (i, (name, c, r)) in cells.iter().enumerate() {
            let x = 60.0 + i as f64 * (bar + gap);
            let bh = r.rps / max_rps * h;
            let py = top + h - r.p99_ms / max_p99 * h;
            let _ = writeln!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{bh:.1}\" fill=\"#3b6ea8\"><title>{name} {c}: {:.0} req/s</title></rect>\n\
                 <circle cx=\"{:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"#c0392b\"><title>{name} {c}: p99 {:.2} ms</title></circle>\n\
                 <text transform=\"translate({:.1},{:.1}) rotate(60)\">{name} c{c}</text>",
                top + h - bh,
                r.rps,
                x + bar / 2.0,
                r.p99_ms,
                x + 4.0,
                top + h + 12.0
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rps: f64, p99: f64, errors: u64) -> Round {
        Round {
            rps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            errors,
            cpu_us: Some(2e6 / rps),
        }
    }

    #[test]
    fn medians_errors_and_ratios() {
        let mut rep = Report {
            ratio_concurrency: 64,
            ..Report::default()
        };
        for x in [900.0, 1000.0, 5000.0] {
            rep.add("ceiling", 64, r(x * 10.0, 2.0, 0));
            rep.add("vault", 64, r(x, 8.0, 1));
        }
        rep.add("openbao", 64, r(100.0, 30.0, 0));
        let v = rep.summary("vault", 64).unwrap();
        assert_eq!((v.rps, v.errors), (1000.0, 3), "median, errors summed");
        assert_eq!(rep.ratio("ceiling"), Some(0.1));
        assert_eq!(rep.ratio("openbao"), Some(10.0));
        assert_eq!(rep.ratio("postgres"), None);
        assert_eq!(rep.ratio_range("ceiling"), Some((0.1, 0.1)));
        assert_eq!(rep.ratio_range("openbao"), Some((9.0, 9.0)), "one pair");
        assert_eq!(rep.ratio_range("postgres"), None);
        assert_eq!(rep.cpu_ratio_range("ceiling"), Some((10.0, 10.0)));
        let j = rep.to_json();
        assert_eq!(j["ratio_ranges"]["vault_over_openbao"], json!([9.0, 9.0]));
        assert!(j["ratio_ranges"]["vault_over_postgres"].is_null());
        assert_eq!(j["systems"]["vault"]["64"]["rps"], json!(1000.0));
        assert_eq!(j["systems"]["vault"]["64"]["errors"], json!(3));
        assert_eq!(j["ratios"]["vault_over_openbao"], json!(10.0));
        assert!(j["ratios"]["vault_over_postgres"].is_null());
        assert_eq!(j["systems"]["vault"]["64"]["cpu_us_per_req"], json!(2000.0));
        assert_eq!(j["ratios"]["vault_cpu_per_req_over_ceiling"], json!(10.0));
        assert_eq!(j["ratios"]["vault_cpu_per_req_over_openbao"], json!(0.1));
        rep.add(
            "postgres",
            64,
            Round {
                cpu_us: None,
                ..r(50.0, 1.0, 0)
            },
        );
        let j = rep.to_json();
        assert!(j["systems"]["postgres"]["64"]["cpu_us_per_req"].is_null());
        let md = rep.to_markdown();
        assert!(
            md.contains("| vault | 64 | 1000 | 4.00 | 8.00 | 2000 | 3 |"),
            "{md}"
        );
        assert!(
            md.contains("| postgres | 64 | 50 | 0.50 | 1.00 | – | 0 |"),
            "{md}"
        );
        assert!(md.contains("server CPU per request, vault / ceiling: 10.00"));
        assert!(md.contains("vault / postgres: 20.00"), "{md}");
        let svg = rep.to_svg();
        assert!(svg.starts_with("<svg") && svg.contains("vault c64"));
    }

    #[test]
    fn the_ratio_range_pairs_rounds_in_order_and_skips_empty_peers() {
        let mut rep = Report {
            ratio_concurrency: 16,
            ..Report::default()
        };
        // Round by round: 2/10, 3/10, 1/0 (skipped), so 0.2–0.3; the median ratio is 2/10.
        for (v, c) in [(2.0, 10.0), (3.0, 10.0), (1.0, 0.0)] {
            rep.add("vault", 16, r(v, 1.0, 0));
            // A round that answered nothing has no CPU per request (`cpu_us_per_request`).
            let cpu_us = (c > 0.0).then(|| 2e6 / c);
            rep.add(
                "ceiling",
                16,
                Round {
                    cpu_us,
                    ..r(c, 1.0, 0)
                },
            );
        }
        assert_eq!(rep.ratio("ceiling"), Some(0.2));
        assert_eq!(rep.ratio_range("ceiling"), Some((0.2, 0.3)));
        // CPU per request is 2e6 / rps in `r`: 10/2 and 10/3; the third pair has none.
        assert_eq!(rep.cpu_ratio_range("ceiling"), Some((3.33, 5.0)));
        assert!(
            rep.to_markdown()
                .contains("- vault / ceiling: 0.20 (round by round 0.20–0.30)"),
            "{}",
            rep.to_markdown()
        );
        // Another concurrency's rounds are not paired with these.
        rep.add("openbao", 64, r(1.0, 1.0, 0));
        assert_eq!(rep.ratio_range("openbao"), None);
        assert!(
            rep.to_markdown()
                .contains("- vault / openbao: not measured\n")
        );
    }

    #[test]
    fn with_three_rounds_the_median_ratio_lies_within_the_range() {
        for case in 0..2_000u64 {
            let mut rep = Report {
                ratio_concurrency: 64,
                ..Report::default()
            };
            for i in 0..3u64 {
                let x = |k: u64| {
                    (crate::load::mix(usize::try_from(case).unwrap_or(0), i * 2 + k) % 50_000 + 1)
                        as f64
                };
                rep.add("vault", 64, r(x(0), 1.0, 0));
                rep.add("ceiling", 64, r(x(1), 1.0, 0));
            }
            let (lo, hi) = rep.ratio_range("ceiling").unwrap_or((f64::NAN, f64::NAN));
            let m = rep.ratio("ceiling").unwrap_or(f64::NAN);
            assert!(lo <= m && m <= hi, "case {case}: {m} outside {lo}–{hi}");
        }
    }

    #[test]
    fn cpu_time_from_a_stat_line_and_per_request() {
        // A command name with a space and a parenthesis; utime 250, stime 50 ticks.
        let line = "4242 (vault (x) srv) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_seconds_of_stat(line), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("4242 (short) S 1 2"), None);
        assert_eq!(cpu_seconds_of_stat("no parenthesis"), None);
        // 3 CPU-seconds over 2 s at 1,000 req/s: 1,500 µs a request.
        assert_eq!(cpu_us_per_request(3.0, 2.0, 1000.0), Some(1500.0));
        assert_eq!(cpu_us_per_request(3.0, 2.0, 0.0), None);
        assert!(
            cpu_seconds(std::process::id()).is_some(),
            "this process's own"
        );
    }

    #[test]
    fn medians_skip_rounds_without_cpu() {
        let with = |cpu| Round {
            rps: 1.0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            errors: 0,
            cpu_us: cpu,
        };
        assert_eq!(
            summarize(&[with(Some(10.0)), with(None), with(Some(30.0))]).cpu_us,
            Some(20.0)
        );
        assert_eq!(summarize(&[with(None)]).cpu_us, None);
    }

    #[test]
    fn even_number_of_rounds_and_empty() {
        assert_eq!(median(vec![1.0, 3.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(Report::default().ratio("ceiling"), None);
    }
}
