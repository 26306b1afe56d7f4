//! Loading `policies/`: strict TOML (unknown keys are errors) into raw spanned structs, then
//! validation into the domain types. Every error names the file, line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::{
    Agency, ConsentRule, Derived, FieldDef, FieldType, Jurisdiction, Mask, PolicyError, PolicySet,
    Purpose, Sensitivity,
};
use crate::geo;
use crate::id::FieldName;

/// Categories that Decree 356/2025 makes sensitive: a field in one must be `sensitive`.
const SENSITIVE_CATEGORIES: &[&str] = &[
    "health",
    "biometric",
    "genetic",
    "religion",
    "ethnicity",
    "political",
    "criminal_record",
    "finance",
    "location",
    "sex_life",
];
const BASIC_CATEGORIES: &[&str] = &[
    "identity",
    "contact",
    "residence",
    "family",
    "document",
    "education",
    "employment",
    "business",
    "property",
];
/// Fields the core reads for decisions; the catalog must define them.
const REQUIRED_FIELDS: &[&str] = &["residence_ward", "date_of_birth"];

/// One source file and its text.
pub(super) struct Source<'a> {
    pub file: String,
    pub text: &'a str,
}

impl Source<'_> {
    pub(super) fn err(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let (line, column) = line_col(self.text, span.start);
        PolicyError {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(super) fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, PolicyError> {
        toml::from_str(self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            self.err(span, e.message().trim().to_string())
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn whole_file(file: &Path, message: String) -> PolicyError {
    PolicyError {
        file: file.display().to_string(),
        line: 0,
        column: 0,
        message,
    }
}

fn read(path: &Path) -> Result<String, PolicyError> {
    let bytes =
        std::fs::read(path).map_err(|e| whole_file(path, format!("cannot read file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let (line, column) = line_col(&text, e.utf8_error().valid_up_to());
        PolicyError {
            file: path.display().to_string(),
            line,
            column,
            message: "file is not valid UTF-8".into(),
        }
    })
}

// ---- raw file shapes -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsFile {
    field: Vec<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    label_vi: Spanned<String>,
    label_en: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<RawType>,
    values: Option<Spanned<Vec<String>>>,
    sensitivity: Spanned<RawSensitivity>,
    category: Spanned<String>,
    max_len: Option<Spanned<usize>>,
    source: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawType {
    String,
    Date,
    Integer,
    Boolean,
    Enum,
    StringList,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawSensitivity {
    Basic,
    Sensitive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: Spanned<String>,
    label_vi: Spanned<String>,
    label_en: Spanned<String>,
    procedure_group: String,
    legal_basis: Spanned<String>,
    #[serde(default)]
    legal_basis_covers_sensitive: bool,
    fields: Spanned<Vec<Spanned<String>>>,
    max_ttl_seconds: Spanned<u32>,
    max_uses: Spanned<u32>,
    consent: Spanned<RawConsent>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    masks: BTreeMap<String, Spanned<RawMask>>,
    derived: Option<RawDerived>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawConsent {
    Required,
    NotRequired,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawMask {
    Last4,
    YearOnly,
    Initials,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    age_at_least: Option<Spanned<u8>>,
    #[serde(default)]
    resides_in: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgenciesFile {
    agency: Vec<RawAgency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    id: Spanned<String>,
    name_vi: Spanned<String>,
    name_en: Spanned<String>,
    level: Spanned<RawLevel>,
    jurisdiction: Spanned<Vec<Spanned<String>>>,
    purposes: Vec<Spanned<String>>,
    #[serde(default)]
    writes: bool,
    #[serde(default)]
    around_the_clock: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawLevel {
    /// A commune-level unit's agency (phường, xã, đặc khu).
    Ward,
    /// Refused with a message: the district level was abolished on 1 July 2025.
    District,
    City,
}

// ---- validation ----------------------------------------------------------------------------

fn non_empty(src: &Source<'_>, s: &Spanned<String>, what: &str) -> Result<String, PolicyError> {
    if s.get_ref().trim().is_empty() {
        Err(src.err(s.span(), format!("{what} must not be empty")))
    } else {
        Ok(s.get_ref().clone())
    }
}

#[cfg(test)]
pub(super) fn parse_fields(src: &Source<'_>) -> Result<BTreeMap<String, FieldDef>, PolicyError> {
    Ok(parse_fields_spanned(src)?.0)
}

/// The catalog, and where each field's `source` is written (checked against the agencies
/// once they are loaded).
type SourceSpans = Vec<(String, Range<usize>)>;

fn parse_fields_spanned(
    src: &Source<'_>,
) -> Result<(BTreeMap<String, FieldDef>, SourceSpans), PolicyError> {
    let mut spans = Vec::new();
    let file: FieldsFile = src.parse()?;
    let mut out = BTreeMap::new();
    for f in file.field {
        let name = f.name.get_ref();
        if FieldName::parse(name).is_none() {
            return Err(src.err(
                f.name.span(),
                "field name must be snake_case (a-z, 0-9, _), start with a letter, at most 64 characters",
            ));
        }
        if name == super::DERIVED_AGE_AT_LEAST || name == super::DERIVED_RESIDES_IN {
            return Err(src.err(
                f.name.span(),
                format!("`{name}` is reserved for a derived answer"),
            ));
        }
        if out.contains_key(name) {
            return Err(src.err(f.name.span(), format!("field `{name}` is defined twice")));
        }
        let ty = match (*f.ty.get_ref(), &f.values) {
            (RawType::Enum, Some(v)) if !v.get_ref().is_empty() => {
                FieldType::Enum(v.get_ref().clone())
            }
            (RawType::Enum, _) => {
                return Err(src.err(f.ty.span(), "an enum field needs a non-empty `values` list"));
            }
            (_, Some(v)) => {
                return Err(src.err(v.span(), "`values` is only allowed on enum fields"));
            }
            (RawType::String, None) => FieldType::String,
            (RawType::Date, None) => FieldType::Date,
            (RawType::Integer, None) => FieldType::Integer,
            (RawType::Boolean, None) => FieldType::Boolean,
            (RawType::StringList, None) => FieldType::StringList,
        };
        let category = f.category.get_ref().as_str();
        let sensitive_category = SENSITIVE_CATEGORIES.contains(&category);
        if !sensitive_category && !BASIC_CATEGORIES.contains(&category) {
            return Err(src.err(
                f.category.span(),
                format!(
                    "unknown category `{category}`, expected one of: {}, {}",
                    BASIC_CATEGORIES.join(", "),
                    SENSITIVE_CATEGORIES.join(", ")
                ),
            ));
        }
        let sensitivity = match *f.sensitivity.get_ref() {
            RawSensitivity::Basic if sensitive_category => {
                return Err(src.err(
                    f.sensitivity.span(),
                    format!(
                        "field `{name}` is in category `{category}`, which is sensitive personal data (Decree 356/2025): set sensitivity = \"sensitive\""
                    ),
                ));
            }
            RawSensitivity::Basic => Sensitivity::Basic,
            RawSensitivity::Sensitive => Sensitivity::Sensitive,
        };
        let max_len = match &f.max_len {
            Some(m) if !(1..=4096).contains(m.get_ref()) => {
                return Err(src.err(m.span(), "max_len must be between 1 and 4096"));
            }
            Some(m) => *m.get_ref(),
            None => 200,
        };
        out.insert(
            name.clone(),
            FieldDef {
                name: name.clone(),
                label_vi: non_empty(src, &f.label_vi, "label_vi")?,
                label_en: non_empty(src, &f.label_en, "label_en")?,
                ty,
                sensitivity,
                category: category.to_owned(),
                max_len,
                source: f.source.as_ref().map(|s| s.get_ref().clone()),
            },
        );
        if let Some(s) = &f.source {
            spans.push((s.get_ref().clone(), s.span()));
        }
    }
    Ok((out, spans))
}

fn is_unit_code(code: &str) -> bool {
    geo::unit(code).is_some()
}

pub(super) fn parse_purpose(
    src: &Source<'_>,
    stem: Option<&str>,
    fields: &BTreeMap<String, FieldDef>,
) -> Result<Purpose, PolicyError> {
    let p: RawPurpose = src.parse()?;
    let id = p.id.get_ref();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(src.err(p.id.span(), "purpose id must be snake_case (a-z, 0-9, _)"));
    }
    if let Some(stem) = stem.filter(|s| s != id) {
        return Err(src.err(
            p.id.span(),
            format!("purpose id `{id}` must match its file name `{stem}.toml`"),
        ));
    }
    if p.fields.get_ref().is_empty() {
        return Err(src.err(p.fields.span(), "a purpose must list at least one field"));
    }
    let mut listed = BTreeSet::new();
    for f in p.fields.get_ref() {
        if !fields.contains_key(f.get_ref()) {
            return Err(src.err(f.span(), format!("unknown field `{}`", f.get_ref())));
        }
        if !listed.insert(f.get_ref().clone()) {
            return Err(src.err(f.span(), format!("field `{}` is listed twice", f.get_ref())));
        }
    }
    if !(1..=86_400).contains(p.max_ttl_seconds.get_ref()) {
        return Err(src.err(
            p.max_ttl_seconds.span(),
            "max_ttl_seconds must be between 1 and 86400",
        ));
    }
    if !(1..=10_000).contains(p.max_uses.get_ref()) {
        return Err(src.err(p.max_uses.span(), "max_uses must be between 1 and 10000"));
    }
    let consent = match p.consent.get_ref() {
        RawConsent::Required => ConsentRule::Required,
        RawConsent::NotRequired => ConsentRule::NotRequired,
    };
    if p.break_glass && consent == ConsentRule::Required {
        return Err(src.err(
            p.consent.span(),
            "a break-glass purpose cannot wait for consent: set consent = \"not_required\"",
        ));
    }
    let mut masks = BTreeMap::new();
    for (field, mask) in &p.masks {
        let Some(def) = listed.contains(field).then(|| fields.get(field)).flatten() else {
            return Err(src.err(
                mask.span(),
                format!("mask for `{field}`, which is not a field of this purpose"),
            ));
        };
        let (m, ok) = match mask.get_ref() {
            RawMask::Last4 => (Mask::Last4, def.ty == FieldType::String),
            RawMask::Initials => (Mask::Initials, def.ty == FieldType::String),
            RawMask::YearOnly => (Mask::YearOnly, def.ty == FieldType::Date),
        };
        if !ok {
            return Err(src.err(
                mask.span(),
                format!(
                    "this mask does not apply to `{field}` of type {}",
                    def.ty.name()
                ),
            ));
        }
        masks.insert(field.clone(), m);
    }
    let mut derived = Derived::default();
    if let Some(d) = p.derived {
        if let Some(age) = d.age_at_least {
            if !(1..=120).contains(age.get_ref()) {
                return Err(src.err(age.span(), "age_at_least must be between 1 and 120"));
            }
            derived.age_at_least = Some(*age.get_ref());
        }
        for code in d.resides_in {
            if !is_unit_code(code.get_ref()) {
                return Err(src.err(
                    code.span(),
                    format!(
                        "unknown ward or commune `{}` (see vault_core::geo; there is no district level since 1 July 2025)",
                        code.get_ref()
                    ),
                ));
            }
            derived.resides_in.push(code.into_inner());
        }
    }
    Ok(Purpose {
        id: id.clone(),
        label_vi: non_empty(src, &p.label_vi, "label_vi")?,
        label_en: non_empty(src, &p.label_en, "label_en")?,
        procedure_group: p.procedure_group,
        legal_basis: non_empty(src, &p.legal_basis, "legal_basis")?,
        legal_basis_covers_sensitive: p.legal_basis_covers_sensitive,
        fields: listed.into_iter().collect(),
        max_ttl_seconds: *p.max_ttl_seconds.get_ref(),
        max_uses: *p.max_uses.get_ref(),
        consent,
        break_glass: p.break_glass,
        masks,
        derived,
    })
}

pub(super) fn parse_agencies(
    src: &Source<'_>,
    purposes: &BTreeMap<String, Purpose>,
) -> Result<BTreeMap<String, Agency>, PolicyError> {
    let file: AgenciesFile = src.parse()?;
    let mut out = BTreeMap::new();
    for a in file.agency {
        let id = a.id.get_ref();
        let ok = id.len() <= 64
            && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(src.err(a.id.span(), "agency id must be lowercase letters, digits and `-` (it appears in certificate SANs)"));
        }
        if out.contains_key(id) {
            return Err(src.err(a.id.span(), format!("agency `{id}` is defined twice")));
        }
        let mut allowed = Vec::new();
        for p in &a.purposes {
            if !purposes.contains_key(p.get_ref()) {
                return Err(src.err(p.span(), format!("unknown purpose `{}`", p.get_ref())));
            }
            if allowed.contains(p.get_ref()) {
                return Err(src.err(
                    p.span(),
                    format!("purpose `{}` is listed twice", p.get_ref()),
                ));
            }
            allowed.push(p.get_ref().clone());
        }
        let units = a.jurisdiction.get_ref();
        let level = *a.level.get_ref();
        let jurisdiction = match level {
            RawLevel::District => {
                return Err(src.err(
                    a.level.span(),
                    "there is no district level since 1 July 2025: use level = \"ward\" (a ward, commune or special zone) or \"city\"",
                ));
            }
            RawLevel::City => {
                if units.len() != 1 || units.first().map(|u| u.get_ref().as_str()) != Some("city") {
                    return Err(src.err(
                        a.jurisdiction.span(),
                        "a city-level agency has jurisdiction = [\"city\"]",
                    ));
                }
                Jurisdiction::City
            }
            RawLevel::Ward => {
                if units.is_empty() {
                    return Err(src.err(
                        a.jurisdiction.span(),
                        "jurisdiction must name at least one ward, commune or special zone",
                    ));
                }
                for u in units {
                    let code = u.get_ref();
                    if !is_unit_code(code) {
                        return Err(src.err(
                            u.span(),
                            format!(
                                "`{code}` is not a known ward, commune or special zone of Ho Chi Minh City (vault_core::geo)"
                            ),
                        ));
                    }
                }
                Jurisdiction::Units(units.iter().map(|u| u.get_ref().clone()).collect())
            }
        };
        out.insert(
            id.clone(),
            Agency {
                id: id.clone(),
                name_vi: non_empty(src, &a.name_vi, "name_vi")?,
                name_en: non_empty(src, &a.name_en, "name_en")?,
                level: if level == RawLevel::City {
                    "city"
                } else {
                    "ward"
                }
                .to_owned(),
                jurisdiction,
                purposes: allowed,
                writes: a.writes,
                around_the_clock: a.around_the_clock,
            },
        );
    }
    Ok(out)
}

// ---- directories -----------------------------------------------------------------------

struct Files {
    fields: (PathBuf, String),
    agencies: (PathBuf, String),
    purposes: Vec<(PathBuf, String)>,
    /// `calendar.toml`, where the directory has one.
    calendar: Option<(PathBuf, String)>,
    /// `anomalies.toml`, where the directory has one.
    anomalies: Option<(PathBuf, String)>,
}

fn read_dir_files(dir: &Path) -> Result<Files, PolicyError> {
    let pdir = dir.join("purposes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&pdir)
        .map_err(|e| whole_file(&pdir, format!("cannot read directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let fields = dir.join("fields.toml");
    let agencies = dir.join("agencies.toml");
    let optional = |name: &str| -> Result<Option<(PathBuf, String)>, PolicyError> {
        let p = dir.join(name);
        if p.exists() {
            Ok(Some((p.clone(), read(&p)?)))
        } else {
            Ok(None)
        }
    };
    Ok(Files {
        calendar: optional("calendar.toml")?,
        anomalies: optional("anomalies.toml")?,
        fields: (fields.clone(), read(&fields)?),
        agencies: (agencies.clone(), read(&agencies)?),
        purposes: paths
            .into_iter()
            .map(|p| read(&p).map(|t| (p, t)))
            .collect::<Result<_, _>>()?,
    })
}

fn build(dir: &Path, files: &Files, check_stems: bool) -> Result<PolicySet, PolicyError> {
    let src =
        |(p, t): &(PathBuf, String)| -> (String, String) { (p.display().to_string(), t.clone()) };
    let (ff, ft) = src(&files.fields);
    let fields_src = Source {
        file: ff.clone(),
        text: &ft,
    };
    let (fields, sources) = parse_fields_spanned(&fields_src)?;
    for req in REQUIRED_FIELDS {
        if !fields.contains_key(*req) {
            return Err(whole_file(
                Path::new(&ff),
                format!("the catalog must define `{req}` (the core reads it for decisions)"),
            ));
        }
    }
    let mut purposes = BTreeMap::new();
    for (path, text) in &files.purposes {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let src = Source {
            file: path.display().to_string(),
            text,
        };
        let p = parse_purpose(&src, check_stems.then_some(stem), &fields)?;
        if purposes.contains_key(&p.id) {
            return Err(src.err(0..0, format!("purpose `{}` is defined twice", p.id)));
        }
        purposes.insert(p.id.clone(), p);
    }
    let (af, at) = src(&files.agencies);
    let agencies = parse_agencies(
        &Source {
            file: af,
            text: &at,
        },
        &purposes,
    )?;
    for (agency, span) in sources {
        if !agencies.get(&agency).is_some_and(|a| a.writes) {
            return Err(fields_src.err(
                span,
                format!(
                    "source `{agency}` must be an agency of agencies.toml with writes = true (it resolves corrections by writing the value)"
                ),
            ));
        }
    }
    let calendar = files
        .calendar
        .as_ref()
        .map(|(p, t)| super::calendar::Calendar::parse(&p.display().to_string(), t))
        .transpose()?;
    let anomalies = files
        .anomalies
        .as_ref()
        .map(|(p, t)| super::anomalies::Thresholds::parse(&p.display().to_string(), t))
        .transpose()?
        .unwrap_or_default();

    let mut hasher = Sha256::new();
    let mut all: Vec<&(PathBuf, String)> = vec![&files.fields, &files.agencies];
    all.extend(files.purposes.iter());
    all.extend(files.calendar.iter());
    all.extend(files.anomalies.iter());
    let mut named: Vec<(String, &str)> = all
        .into_iter()
        .map(|(p, t)| {
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/");
            (rel, t.as_str())
        })
        .collect();
    named.sort();
    for (rel, text) in named {
        hasher.update((rel.len() as u64).to_be_bytes());
        hasher.update(rel.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    Ok(PolicySet {
        fields,
        purposes,
        agencies,
        calendar,
        anomalies,
        sha256: hasher.finalize().into(),
    })
}

pub(super) fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
    build(dir, &read_dir_files(dir)?, true)
}

pub(super) fn from_texts(
    fields: &str,
    agencies: &str,
    purposes: &[(&str, &str)],
    calendar: Option<&str>,
) -> Result<PolicySet, PolicyError> {
    let files = Files {
        fields: (PathBuf::from("fields.toml"), fields.to_owned()),
        agencies: (PathBuf::from("agencies.toml"), agencies.to_owned()),
        purposes: purposes
            .iter()
            .map(|(stem, text)| {
                (
                    PathBuf::from(format!("purposes/{stem}.toml")),
                    (*text).to_owned(),
                )
            })
            .collect(),
        calendar: calendar.map(|t| (PathBuf::from("calendar.toml"), t.to_owned())),
        anomalies: None,
    };
    build(Path::new(""), &files, true)
}

/// What a policy fragment (a file in `cases/invalid/`) stands in for, from its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentKind {
    /// `fields*.toml`: replaces `fields.toml`.
    Fields,
    /// `purpose*.toml`: added to `purposes/` (replacing a purpose with the same id).
    Purpose,
    /// `agencies*.toml`: replaces `agencies.toml`.
    Agencies,
}

impl FragmentKind {
    /// The kind named by a fragment file's name, if any.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name.starts_with("fields") {
            Some(Self::Fields)
        } else if name.starts_with("purpose") {
            Some(Self::Purpose)
        } else if name.starts_with("agencies") {
            Some(Self::Agencies)
        } else {
            None
        }
    }
}

/// Loads the policy set in `base` with `fragment` substituted for the file of its kind.
pub fn check_fragment(base: &Path, fragment: &Path) -> Result<PolicySet, PolicyError> {
    let kind = FragmentKind::of(fragment).ok_or_else(|| {
        whole_file(
            fragment,
            "fragment name must start with fields, purpose or agencies".into(),
        )
    })?;
    let mut files = read_dir_files(base)?;
    let text = read(fragment)?;
    let entry = (fragment.to_path_buf(), text);
    match kind {
        FragmentKind::Fields => files.fields = entry,
        FragmentKind::Agencies => files.agencies = entry,
        FragmentKind::Purpose => {
            // Replace a base purpose with the same id, so "defined twice" is not what fails.
            let id = entry
                .1
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("id").and_then(|v| v.as_str()).map(str::to_owned));
            if let Some(id) = id {
                files
                    .purposes
                    .retain(|(p, _)| p.file_stem().and_then(|s| s.to_str()) != Some(id.as_str()));
            }
            files.purposes.push(entry);
        }
    }
    build(base, &files, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("a\nbc\nd", 5), (3, 1));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let src = Source {
            file: "fields.toml".into(),
            text: "[[field]]\nname = \"a\"\nlabel_vi = \"A\"\nlabel_en = \"A\"\ntype = \"string\"\nsensitivity = \"basic\"\ncategory = \"identity\"\ncolour = \"red\"\n",
        };
        let err = parse_fields(&src).err().unwrap();
        assert_eq!(err.file, "fields.toml");
        assert_eq!(err.line, 8, "{err}");
        assert!(err.message.contains("colour"), "{err}");
    }

    #[test]
    fn health_field_marked_basic_is_refused() {
        let src = Source {
            file: "fields.toml".into(),
            text: "[[field]]\nname = \"blood\"\nlabel_vi = \"A\"\nlabel_en = \"A\"\ntype = \"string\"\nsensitivity = \"basic\"\ncategory = \"health\"\n",
        };
        let err = parse_fields(&src).err().unwrap();
        assert_eq!(err.line, 6);
        assert!(err.message.contains("Decree 356/2025"));
    }

    #[test]
    fn texts_load_like_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let files = read_dir_files(&dir).unwrap();
        let stems: Vec<String> = files
            .purposes
            .iter()
            .map(|(p, _)| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        let purposes: Vec<(&str, &str)> = stems
            .iter()
            .zip(&files.purposes)
            .map(|(s, (_, t))| (s.as_str(), t.as_str()))
            .collect();
        let calendar = files.calendar.as_ref().map(|(_, t)| t.as_str());
        let set = from_texts(&files.fields.1, &files.agencies.1, &purposes, calendar).unwrap();
        // From texts there is no anomalies.toml (its defaults apply).
        let mut without = read_dir_files(&dir).unwrap();
        without.anomalies = None;
        let disk = build(&dir, &without, true).unwrap();
        assert_eq!(set.sha256(), disk.sha256());
        let err = from_texts("[[field]]\nnope = 1\n", &files.agencies.1, &purposes, None)
            .err()
            .unwrap();
        assert_eq!((err.file.as_str(), err.line), ("fields.toml", 2), "{err}");
    }
}
