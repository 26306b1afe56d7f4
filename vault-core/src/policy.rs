//! Policy: the field catalog, purposes and agencies loaded from `policies/`, the policy set's
//! SHA-256, and the pure decision `authorize(set, request, facts)`. No I/O in the decision,
//! no clock, no storage: the same inputs always give the same answer.

pub mod anomalies;
pub mod calendar;
mod cases;
pub mod derive;
mod load;
pub mod release;
mod value;

use std::collections::BTreeMap;

pub use cases::{Case, CaseOutcome, CaseResult, load_cases, run_cases};
pub use load::{FragmentKind, check_fragment};
pub use value::parse_date;

pub use crate::error::{Denial, PolicyError};

/// A field's value type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// UTF-8 text up to `max_len` characters.
    String,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// A signed 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of a fixed set of strings.
    Enum(Vec<String>),
    /// A list of strings, each up to `max_len` characters, at most 32 items.
    StringList,
}

/// Whether a field is basic or sensitive personal data (Law 91/2025, Decree 356/2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    /// Basic personal data.
    Basic,
    /// Sensitive personal data: needs consent unless a legal basis covers it.
    Sensitive,
}

/// A catalog field.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// Snake-case name.
    pub name: String,
    /// Vietnamese label.
    pub label_vi: String,
    /// English label.
    pub label_en: String,
    /// Value type.
    pub ty: FieldType,
    /// Basic or sensitive.
    pub sensitivity: Sensitivity,
    /// Category (identity, contact, health, …).
    pub category: String,
    /// Maximum length in characters (strings, list items).
    pub max_len: usize,
    /// The agency that is its source of truth (`source`), which resolves corrections of it.
    pub source: Option<String>,
}

/// Whether a purpose asks the citizen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentRule {
    /// Every grant for this purpose needs the citizen's consent.
    Required,
    /// Basic fields need no consent; sensitive ones do unless the legal basis covers them.
    NotRequired,
}

/// How a field is masked on release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// Only the last four characters, the rest replaced by `*`.
    Last4,
    /// Only the year of a date.
    YearOnly,
    /// Only the initials of a name.
    Initials,
}

/// Answers a purpose may receive instead of raw fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived {
    /// `age_at_least`: whether the citizen is at least this old (from `date_of_birth`).
    pub age_at_least: Option<u8>,
    /// `resides_in`: whether the citizen lives in one of these wards or communes.
    pub resides_in: Vec<String>,
}

/// Name of the derived answer `age_at_least`.
pub const DERIVED_AGE_AT_LEAST: &str = "age_at_least";
/// Name of the derived answer `resides_in`.
pub const DERIVED_RESIDES_IN: &str = "resides_in";

/// An administrative procedure for which data may be released.
#[derive(Debug, Clone)]
pub struct Purpose {
    /// Id (the file name's stem).
    pub id: String,
    /// Vietnamese label.
    pub label_vi: String,
    /// English label.
    pub label_en: String,
    /// Procedure group (civil_status, business, land, …).
    pub procedure_group: String,
    /// The legal basis, as cited.
    pub legal_basis: String,
    /// Whether the legal basis allows sensitive fields without consent.
    pub legal_basis_covers_sensitive: bool,
    /// Fields that may be requested.
    pub fields: Vec<String>,
    /// Longest token lifetime.
    pub max_ttl_seconds: u32,
    /// Most releases per grant.
    pub max_uses: u32,
    /// Consent rule.
    pub consent: ConsentRule,
    /// Emergency access: granted at once, flagged, reviewed afterwards.
    pub break_glass: bool,
    /// Masks applied on release.
    pub masks: BTreeMap<String, Mask>,
    /// Derived answers available.
    pub derived: Derived,
}

impl Purpose {
    /// Whether `name` may be requested: a listed field or a declared derived answer.
    pub fn allows(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f == name)
            || (name == DERIVED_AGE_AT_LEAST && self.derived.age_at_least.is_some())
            || (name == DERIVED_RESIDES_IN && !self.derived.resides_in.is_empty())
    }
}

/// Where an agency may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jurisdiction {
    /// The whole city.
    City,
    /// These wards, communes or special zones (`geo::Unit` ids).
    Units(Vec<String>),
}

/// An agency system allowed to call the vault.
#[derive(Debug, Clone)]
pub struct Agency {
    /// Id, as in the certificate SAN `urn:vault:agency:<id>`.
    pub id: String,
    /// Vietnamese name.
    pub name_vi: String,
    /// English name.
    pub name_en: String,
    /// `ward` (a commune-level unit's agency) or `city`.
    pub level: String,
    /// Where it may act.
    pub jurisdiction: Jurisdiction,
    /// Purposes it may use.
    pub purposes: Vec<String>,
    /// Whether it is a source of truth that may write records.
    pub writes: bool,
    /// Whether it works at every hour (a hospital): its releases at night or on a weekend
    /// are not the `off_hours` anomaly.
    pub around_the_clock: bool,
}

/// A loaded, validated policy set and its SHA-256.
#[derive(Debug, Clone)]
pub struct PolicySet {
    fields: BTreeMap<String, FieldDef>,
    purposes: BTreeMap<String, Purpose>,
    agencies: BTreeMap<String, Agency>,
    calendar: Option<calendar::Calendar>,
    anomalies: anomalies::Thresholds,
    sha256: [u8; 32],
}

impl PolicySet {
    /// Loads and validates `dir` (`fields.toml`, `purposes/*.toml`, `agencies.toml` and,
    /// where present, `calendar.toml`).
    pub fn load_dir(dir: &std::path::Path) -> Result<Self, PolicyError> {
        load::load_dir(dir)
    }

    /// Validates a policy set given as texts: `fields.toml`, `agencies.toml`, each purpose
    /// file as (file stem, text) and optionally `calendar.toml`. The same checks as `load_dir`, with no file system
    /// (the fuzz target and tests use it); errors name `fields.toml`, `purposes/<stem>.toml`.
    pub fn from_texts(
        fields: &str,
        agencies: &str,
        purposes: &[(&str, &str)],
        calendar: Option<&str>,
    ) -> Result<Self, PolicyError> {
        load::from_texts(fields, agencies, purposes, calendar)
    }

    /// Checks each value against its catalog field (type, format, enum): the error names
    /// the field (or `<invalid name>`), never the value.
    pub fn validate_fields(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<(crate::FieldName, serde_json::Value)>, crate::VaultError> {
        use crate::{FieldName, VaultError};
        let printable = |name: &str| {
            if FieldName::parse(name).is_some() && !crate::id::has_long_digit_run(name) {
                name.to_owned()
            } else {
                "<invalid name>".to_owned()
            }
        };
        fields
            .into_iter()
            .map(|(name, value)| {
                let def = self
                    .field(&name)
                    .ok_or_else(|| VaultError::UnknownField(printable(&name)))?;
                def.validate(&value)
                    .map_err(|reason| VaultError::InvalidFieldValue {
                        field: def.name.clone(),
                        reason,
                    })?;
                let fname = FieldName::parse(&name)
                    .ok_or_else(|| VaultError::UnknownField(printable(&name)))?;
                Ok((fname, value))
            })
            .collect()
    }

    /// A catalog field.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(name)
    }

    /// All catalog fields by name.
    pub fn fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.values()
    }

    /// A purpose.
    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.get(id)
    }

    /// All purposes by id.
    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    /// An agency.
    pub fn agency(&self, id: &str) -> Option<&Agency> {
        self.agencies.get(id)
    }

    /// All agencies by id.
    pub fn agencies(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.values()
    }

    /// The anomaly rules' thresholds (`anomalies.toml`, or the defaults without one).
    pub fn anomalies(&self) -> &anomalies::Thresholds {
        &self.anomalies
    }

    /// The working-day calendar (`calendar.toml`), if the set has one.
    pub fn calendar(&self) -> Option<&calendar::Calendar> {
        self.calendar.as_ref()
    }

    /// SHA-256 over every policy file (path and content, in path order; `cases/` excluded).
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Whether a consent the citizen gave already covers this request. Consent is specific: an
/// approval consents to one grant, so only a standing consent (`consent::StandingConsent`)
/// the citizen asked for, covering this agency, purpose and every requested field and not
/// expired, lets a later request through without asking again. A refusal refuses one grant
/// and says nothing about the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    /// No standing consent covers the request: the citizen is asked.
    None,
    /// A live standing consent covers the request.
    Standing,
}

/// What a grant request asks for.
#[derive(Debug, Clone)]
pub struct AccessRequest<'a> {
    /// The calling agency (from its certificate).
    pub agency: &'a str,
    /// The purpose id.
    pub purpose: &'a str,
    /// The fields (or derived answers) requested.
    pub fields: &'a [String],
}

/// Facts about the citizen the decision needs. Read inside the core, never released.
#[derive(Debug, Clone)]
pub struct CitizenFacts<'a> {
    /// The ward, commune or special zone the citizen resides in, if known.
    pub ward: Option<&'a str>,
    /// Whether a standing consent covers the request.
    pub consent: ConsentState,
}

/// A yes from the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Grant now. `break_glass` grants are flagged for auditor review and shown to the citizen.
    Permit {
        /// Emergency access.
        break_glass: bool,
        /// Whether the citizen's consent was what made it possible.
        by_consent: bool,
    },
    /// The citizen must consent first.
    PendingConsent,
}

/// The decision: a pure function of the policy set, the request and the citizen's facts.
pub fn authorize(
    set: &PolicySet,
    req: &AccessRequest<'_>,
    facts: &CitizenFacts<'_>,
) -> Result<Decision, Denial> {
    let agency = set.agency(req.agency).ok_or(Denial::UnknownAgency)?;
    let purpose = set.purpose(req.purpose).ok_or(Denial::UnknownPurpose)?;
    if req.fields.is_empty() {
        return Err(Denial::InvalidRequest);
    }
    for (i, f) in req.fields.iter().enumerate() {
        let derived = (f == DERIVED_AGE_AT_LEAST) || (f == DERIVED_RESIDES_IN);
        if !derived && set.field(f).is_none() {
            // Echo a requested name only if it has field-name syntax: never free text.
            let shown = crate::id::FieldName::parse(f)
                .map_or_else(|| "<invalid name>".to_owned(), |n| n.to_string());
            return Err(Denial::UnknownField(shown));
        }
        if req.fields[..i].contains(f) {
            return Err(Denial::InvalidRequest);
        }
    }
    if !agency.purposes.iter().any(|p| p == &purpose.id) {
        return Err(Denial::PurposeNotAllowed);
    }
    if let Some(f) = req.fields.iter().find(|f| !purpose.allows(f)) {
        return Err(Denial::FieldNotInPurpose(f.clone()));
    }
    let inside = match &agency.jurisdiction {
        Jurisdiction::City => true,
        Jurisdiction::Units(units) => units.iter().any(|u| Some(u.as_str()) == facts.ward),
    };
    if !inside {
        return Err(Denial::OutsideJurisdiction);
    }
    if purpose.break_glass {
        return Ok(Decision::Permit {
            break_glass: true,
            by_consent: false,
        });
    }
    let sensitive = req.fields.iter().any(|f| {
        set.field(f)
            .is_some_and(|d| d.sensitivity == Sensitivity::Sensitive)
    });
    let needs_consent = match purpose.consent {
        ConsentRule::Required => true,
        ConsentRule::NotRequired => sensitive && !purpose.legal_basis_covers_sensitive,
    };
    if !needs_consent {
        return Ok(Decision::Permit {
            break_glass: false,
            by_consent: false,
        });
    }
    match facts.consent {
        ConsentState::Standing => Ok(Decision::Permit {
            break_glass: false,
            by_consent: true,
        }),
        ConsentState::None => Ok(Decision::PendingConsent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn policies_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn every_policy_file_loads_with_real_content() {
        let set = PolicySet::load_dir(&policies_dir()).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.fields().count() >= 25);
        assert!(set.purposes().count() >= 10);
        assert!(set.agencies().count() >= 4);
        assert!(set.purposes().any(|p| p.break_glass));
        for cat in [
            "health",
            "religion",
            "ethnicity",
            "criminal_record",
            "finance",
            "biometric",
            "location",
        ] {
            assert!(
                set.fields()
                    .any(|f| f.category == cat && f.sensitivity == Sensitivity::Sensitive),
                "no sensitive field in category {cat}"
            );
        }
        let levels: Vec<_> = set.agencies().map(|a| a.level.as_str()).collect();
        assert!(
            levels.contains(&"city") && levels.contains(&"ward") && !levels.contains(&"district")
        );
        assert_eq!(set.sha256_hex().len(), 64);
    }

    #[test]
    fn policy_hash_changes_when_any_file_changes() {
        let src = policies_dir();
        let tmp = tempfile::tempdir().unwrap();
        for rel in [
            "fields.toml",
            "agencies.toml",
            "calendar.toml",
            "anomalies.toml",
        ] {
            std::fs::copy(src.join(rel), tmp.path().join(rel)).unwrap();
        }
        std::fs::create_dir(tmp.path().join("purposes")).unwrap();
        for e in std::fs::read_dir(src.join("purposes")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tmp.path().join("purposes").join(p.file_name().unwrap())).unwrap();
        }
        let a = PolicySet::load_dir(tmp.path()).unwrap().sha256();
        assert_eq!(
            a,
            PolicySet::load_dir(&src).unwrap().sha256(),
            "hash is independent of location"
        );
        let p = tmp.path().join("purposes/construction_permit.toml");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("max_uses = 5", "max_uses = 6");
        std::fs::write(&p, text).unwrap();
        let b = PolicySet::load_dir(tmp.path()).unwrap().sha256();
        assert_ne!(a, b);
        // The calendar is part of the set: a holiday added changes the hash.
        let cal = tmp.path().join("calendar.toml");
        let text = std::fs::read_to_string(&cal)
            .unwrap()
            .replace("\"2026-01-01\",", "\"2026-01-01\", \"2026-01-02\",");
        std::fs::write(&cal, text).unwrap();
        let set = PolicySet::load_dir(tmp.path()).unwrap();
        assert_ne!(b, set.sha256());
        assert!(
            !set.calendar()
                .unwrap()
                .is_working_day(crate::clock::days_from_civil(2026, 1, 2))
                .unwrap()
        );
    }

    #[test]
    fn every_case_gives_its_expected_decision() {
        let set = PolicySet::load_dir(&policies_dir()).unwrap();
        let cases = load_cases(&policies_dir().join("cases")).unwrap_or_else(|e| panic!("{e}"));
        assert!(cases.len() >= 20);
        let results = run_cases(&set, &cases);
        let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
        assert!(failed.is_empty(), "failing cases: {failed:#?}");
        for outcome in [
            CaseOutcome::Permit,
            CaseOutcome::PendingConsent,
            CaseOutcome::Deny,
        ] {
            assert!(cases.iter().any(|c| c.expect == outcome));
        }
    }

    #[test]
    fn every_invalid_fixture_fails_naming_file_line_and_problem() {
        let dir = policies_dir().join("cases/invalid");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", path.display()));
            let err = check_fragment(&policies_dir(), &path)
                .err()
                .unwrap_or_else(|| panic!("{} loaded but must fail", path.display()));
            let shown = err.to_string();
            assert!(shown.starts_with(&path.display().to_string()), "{shown}");
            assert!(err.line >= 2, "{shown}: no line");
            assert!(shown.contains(expect), "{shown}: expected `{expect}`");
            n += 1;
        }
        assert!(n >= 10);
    }

    #[test]
    fn a_valid_fragment_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("purpose_emergency.toml");
        std::fs::copy(policies_dir().join("purposes/emergency_care.toml"), &p).unwrap();
        if let Err(e) = check_fragment(&policies_dir(), &p) {
            panic!("{e}");
        }
    }
}
