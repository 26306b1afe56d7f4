//! `vaultctl policy check DIR`: load and validate a policy directory, run its cases, and
//! make sure every file in `cases/invalid/` is refused.

use std::fmt::Write as _;
use std::path::Path;

use vault_core::policy::{self, PolicySet};

use super::{CtlError, CtlResult, out};

pub(super) fn run(dir: &Path) -> CtlResult {
    let set = PolicySet::load_dir(dir).map_err(|e| CtlError(e.to_string()))?;
    let mut report = format!(
        "policy set {}: {} fields, {} purposes, {} agencies\n  sha256 {}\n",
        dir.display(),
        set.fields().count(),
        set.purposes().count(),
        set.agencies().count(),
        set.sha256_hex()
    );
    match set.calendar() {
        Some(c) => {
            let years: Vec<String> = c.years().map(|y| y.to_string()).collect();
            let _ = writeln!(
                report,
                "  calendar: holidays listed for {}",
                years.join(", ")
            );
        }
        None => report.push_str(
            "  calendar: none (no calendar.toml: data-subject requests cannot be given deadlines)\n",
        ),
    }
    let cases_dir = dir.join("cases");
    let mut failures = 0usize;
    if cases_dir.is_dir() {
        let cases = policy::load_cases(&cases_dir).map_err(|e| CtlError(e.to_string()))?;
        let results = policy::run_cases(&set, &cases);
        for r in results.iter().filter(|r| !r.passed) {
            failures += 1;
            let _ = writeln!(report, "  FAIL {} (got {})", r.case, r.actual);
        }
        let _ = writeln!(
            report,
            "  cases: {} passed, {} failed",
            results.len() - failures,
            failures
        );
        let invalid = cases_dir.join("invalid");
        if invalid.is_dir() {
            let mut paths: Vec<_> = std::fs::read_dir(&invalid)
                .map_err(|e| CtlError(format!("{}: {e}", invalid.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            let mut refused = 0usize;
            for p in &paths {
                match policy::check_fragment(dir, p) {
                    Err(e) => {
                        refused += 1;
                        let _ = writeln!(report, "  refused as expected: {e}");
                    }
                    Ok(_) => {
                        failures += 1;
                        let _ =
                            writeln!(report, "  FAIL {} loaded but must be refused", p.display());
                    }
                }
            }
            let _ = writeln!(
                report,
                "  invalid fixtures: {refused} of {} refused",
                paths.len()
            );
        }
    } else {
        let _ = writeln!(report, "  no cases/ directory: nothing to run");
    }
    out(&report)?;
    if failures > 0 {
        return Err(CtlError(format!("{failures} policy check(s) failed")));
    }
    Ok(())
}
