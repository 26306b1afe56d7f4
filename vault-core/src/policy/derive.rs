//! What a release answers for each requested name, by the purpose's rules: a stored field as
//! it is or masked (`last4`, `year_only`, `initials`), or a derived answer computed inside
//! the core from fields that never leave it (`age_at_least` from the birth date, `resides_in`
//! from the ward). Pure: values in, values out, time a parameter.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{DERIVED_AGE_AT_LEAST, DERIVED_RESIDES_IN, Mask, Purpose};
use crate::clock::Timestamp;

/// The stored fields that say where a citizen resides (the ward, commune or special zone):
/// what a jurisdiction check and `resides_in` read.
pub const RESIDENCE: [&str; 1] = ["residence_ward"];

/// The stored fields a release of `requested` opens: the requested fields themselves, and
/// for a derived answer the fields it is computed from.
pub fn sources(requested: &[String]) -> Vec<&str> {
    let mut raw: Vec<&str> = requested
        .iter()
        .map(String::as_str)
        .filter(|f| *f != DERIVED_AGE_AT_LEAST && *f != DERIVED_RESIDES_IN)
        .collect();
    if requested.iter().any(|f| f == DERIVED_AGE_AT_LEAST) {
        raw.push("date_of_birth");
    }
    if requested.iter().any(|f| f == DERIVED_RESIDES_IN) {
        raw.extend(RESIDENCE);
    }
    raw
}

/// The answer for each of `requested` from the `opened` stored fields under `purpose`'s
/// masks and derived answers, at `now`. A field the record does not hold is left out.
pub fn answers(
    purpose: &Purpose,
    requested: &[String],
    opened: &BTreeMap<String, Value>,
    now: Timestamp,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in requested {
        if f == DERIVED_AGE_AT_LEAST {
            let min = purpose.derived.age_at_least.map_or(0, i64::from);
            let age = opened
                .get("date_of_birth")
                .and_then(Value::as_str)
                .and_then(|d| age_on(d, now));
            out.insert(f.clone(), age.map_or(Value::Null, |a| json!(a >= min)));
        } else if f == DERIVED_RESIDES_IN {
            let inside = RESIDENCE.iter().any(|k| {
                opened
                    .get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|code| purpose.derived.resides_in.iter().any(|u| u == code))
            });
            out.insert(f.clone(), json!(inside));
        } else if let Some(v) = opened.get(f.as_str()) {
            let v = purpose
                .masks
                .get(f)
                .map_or_else(|| v.clone(), |m| mask(*m, v));
            out.insert(f.clone(), v);
        }
    }
    out
}

fn mask(m: Mask, v: &Value) -> Value {
    let Some(s) = v.as_str() else {
        return v.clone();
    };
    match m {
        Mask::Last4 => {
            let chars: Vec<char> = s.chars().collect();
            let keep = chars.len().min(4);
            let hidden = chars.len() - keep;
            json!(format!(
                "{}{}",
                "*".repeat(hidden),
                chars[hidden..].iter().collect::<String>()
            ))
        }
        Mask::YearOnly => json!(s.get(..4).unwrap_or("")),
        Mask::Initials => json!(
            s.split_whitespace()
                .filter_map(|w| w.chars().next())
                .map(|c| format!("{c}."))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn age_on(dob: &str, now: Timestamp) -> Option<i64> {
    let (y, m, d) = super::parse_date(dob)?;
    let (ny, nm, nd) = now.civil_date();
    let mut age = ny - i64::from(y);
    if (nm, nd) < (m, d) {
        age -= 1;
    }
    Some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_they_say() {
        assert_eq!(mask(Mask::Last4, &json!("0903123456")), json!("******3456"));
        assert_eq!(mask(Mask::Last4, &json!("12")), json!("12"));
        assert_eq!(mask(Mask::YearOnly, &json!("1990-05-01")), json!("1990"));
        assert_eq!(
            mask(Mask::Initials, &json!("Nguyễn Văn An")),
            json!("N. V. A.")
        );
        assert_eq!(
            mask(Mask::Last4, &json!(42)),
            json!(42),
            "non-strings pass through"
        );
    }

    #[test]
    fn age_counts_whole_years_on_the_day() {
        // 2026-11-23
        let now = Timestamp::from_millis(1_795_395_723_456);
        assert_eq!(age_on("2008-11-23", now), Some(18));
        assert_eq!(age_on("2008-11-24", now), Some(17));
        assert_eq!(age_on("not a date", now), None);
    }

    #[test]
    fn derived_answers_read_their_sources_only() {
        let req = vec![
            "age_at_least".to_owned(),
            "resides_in".to_owned(),
            "full_name".to_owned(),
        ];
        assert_eq!(
            sources(&req),
            vec!["full_name", "date_of_birth", "residence_ward"]
        );
    }
}
