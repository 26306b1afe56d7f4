//! Policy fixture cases (`policies/cases/*.toml`): a request, the citizen's facts and the
//! expected decision, run through the real `authorize`.

use std::path::Path;

use serde::Deserialize;

use super::load::Source;
use super::{
    AccessRequest, CitizenFacts, ConsentState, Decision, PolicyError, PolicySet, authorize,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    case: Vec<Case>,
}

/// What a case expects.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseOutcome {
    /// Granted at once.
    Permit,
    /// Waits for the citizen's consent.
    PendingConsent,
    /// Refused with `code`.
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawConsent {
    None,
    Standing,
}

/// One fixture case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows, in a sentence.
    pub name: String,
    /// Calling agency.
    pub agency: String,
    /// Purpose id.
    pub purpose: String,
    /// Requested fields.
    pub fields: Vec<String>,
    /// The citizen's ward, commune or special zone.
    pub citizen_ward: Option<String>,
    #[serde(default = "no_consent")]
    consent: RawConsent,
    /// Expected outcome.
    pub expect: CaseOutcome,
    /// Expected denial code (for `deny`).
    pub code: Option<String>,
    /// Expected break-glass flag (for `permit`), when given.
    pub break_glass: Option<bool>,
    #[serde(skip)]
    file: String,
}

fn no_consent() -> RawConsent {
    RawConsent::None
}

/// A case and whether it passed; `detail` says what happened when it did not.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `file: name`.
    pub case: String,
    /// Whether the decision matched.
    pub passed: bool,
    /// The actual decision, in words.
    pub actual: String,
}

/// Loads every `*.toml` file directly in `dir` (not `invalid/`).
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, PolicyError> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| PolicyError {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read directory: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| PolicyError {
            file: p.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read file: {e}"),
        })?;
        let src = Source {
            file: p.display().to_string(),
            text: &text,
        };
        let f: CasesFile = src.parse()?;
        for mut c in f.case {
            if (c.expect == CaseOutcome::Deny) != c.code.is_some() {
                return Err(src.err(
                    0..0,
                    format!(
                        "case `{}`: `code` is required exactly when expect = \"deny\"",
                        c.name
                    ),
                ));
            }
            c.file = src.file.clone();
            out.push(c);
        }
    }
    Ok(out)
}

/// Runs every case through `authorize`.
pub fn run_cases(set: &PolicySet, cases: &[Case]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|c| {
            let req = AccessRequest {
                agency: &c.agency,
                purpose: &c.purpose,
                fields: &c.fields,
            };
            let facts = CitizenFacts {
                ward: c.citizen_ward.as_deref(),
                consent: match c.consent {
                    RawConsent::None => ConsentState::None,
                    RawConsent::Standing => ConsentState::Standing,
                },
            };
            let got = authorize(set, &req, &facts);
            let passed = match (&got, c.expect) {
                (Ok(Decision::Permit { break_glass, .. }), CaseOutcome::Permit) => {
                    c.break_glass.is_none_or(|b| b == *break_glass)
                }
                (Ok(Decision::PendingConsent), CaseOutcome::PendingConsent) => true,
                (Err(d), CaseOutcome::Deny) => c.code.as_deref() == Some(d.code()),
                _ => false,
            };
            let actual = match got {
                Ok(Decision::Permit { break_glass, .. }) => {
                    format!("permit (break_glass = {break_glass})")
                }
                Ok(Decision::PendingConsent) => "pending_consent".into(),
                Err(d) => format!("deny ({})", d.code()),
            };
            CaseResult {
                case: format!("{}: {}", c.file, c.name),
                passed,
                actual,
            }
        })
        .collect()
}
