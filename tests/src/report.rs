//! The benchmark report: per system and concurrency the median of the rounds (throughput,
//! p50, p99, errors summed), the ratios the targets are stated in, and the same data as
//! `report.json`, `report.md` and an SVG chart.

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
                "at_concurrency": self.ratio_concurrency,
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
        o.push_str("| system | connections | req/s (median) | p50 ms | p99 ms | errors | rounds req/s |\n|---|---|---|---|---|---|---|\n");
        for (name, by_c) in &self.systems {
            for (c, rounds) in by_c {
                let s = summarize(rounds);
                let each: Vec<String> = rounds.iter().map(|r| format!("{:.0}", r.rps)).collect();
                let _ = writeln!(
                    o,
                    "| {name} | {c} | {:.0} | {:.2} | {:.2} | {} | {} |",
                    s.rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.errors,
                    each.join(" / ")
                );
            }
        }
        let _ = writeln!(o, "\nRatios at {} connections:\n", self.ratio_concurrency);
        for other in ["ceiling", "openbao", "postgres"] {
            let _ = writeln!(
                o,
                "- vault / {other}: {}",
                self.ratio(other)
                    .map_or_else(|| "not measured".to_owned(), |r| format!("{r:.2}"))
            );
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
        let j = rep.to_json();
        assert_eq!(j["systems"]["vault"]["64"]["rps"], json!(1000.0));
        assert_eq!(j["systems"]["vault"]["64"]["errors"], json!(3));
        assert_eq!(j["ratios"]["vault_over_openbao"], json!(10.0));
        assert!(j["ratios"]["vault_over_postgres"].is_null());
        let md = rep.to_markdown();
        assert!(md.contains("| vault | 64 | 1000 |"), "{md}");
        assert!(md.contains("vault / postgres: not measured"));
        let svg = rep.to_svg();
        assert!(svg.starts_with("<svg") && svg.contains("vault c64"));
    }

    #[test]
    fn even_number_of_rounds_and_empty() {
        assert_eq!(median(vec![1.0, 3.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(Report::default().ratio("ceiling"), None);
    }
}
