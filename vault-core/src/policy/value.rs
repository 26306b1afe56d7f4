//! Field value validation against the catalog: type, size, calendar dates, enum members.
//! Reasons never quote the value, so they are safe to print and log.

use serde_json::Value;

use super::{FieldDef, FieldType};

/// Most items in a `string_list` value.
pub const MAX_LIST_ITEMS: usize = 32;

impl FieldDef {
    /// Checks `v` against this field's type and limits. The reason never contains `v`.
    pub fn validate(&self, v: &Value) -> Result<(), String> {
        match (&self.ty, v) {
            (FieldType::String, Value::String(s)) => self.check_len(s),
            (FieldType::Date, Value::String(s)) => {
                if is_valid_date(s) {
                    Ok(())
                } else {
                    Err("expected a calendar date YYYY-MM-DD".into())
                }
            }
            (FieldType::Integer, Value::Number(n)) if n.is_i64() => Ok(()),
            (FieldType::Boolean, Value::Bool(_)) => Ok(()),
            (FieldType::Enum(values), Value::String(s)) => {
                if values.iter().any(|x| x == s) {
                    Ok(())
                } else {
                    Err(format!("expected one of: {}", values.join(", ")))
                }
            }
            (FieldType::StringList, Value::Array(items)) => {
                if items.len() > MAX_LIST_ITEMS {
                    return Err(format!("at most {MAX_LIST_ITEMS} items"));
                }
                items.iter().try_for_each(|i| match i {
                    Value::String(s) => self.check_len(s),
                    _ => Err("expected a list of strings".into()),
                })
            }
            (ty, _) => Err(format!("expected {}", ty.describe())),
        }
    }

    fn check_len(&self, s: &str) -> Result<(), String> {
        if s.chars().count() > self.max_len {
            Err(format!(
                "value too long (at most {} characters)",
                self.max_len
            ))
        } else if s.chars().any(|c| c.is_control()) {
            Err("control characters are not allowed".into())
        } else {
            Ok(())
        }
    }
}

impl FieldType {
    /// A short description for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Date => "a date string YYYY-MM-DD",
            Self::Integer => "an integer",
            Self::Boolean => "true or false",
            Self::Enum(_) => "one of the allowed strings",
            Self::StringList => "a list of strings",
        }
    }

    /// The catalog spelling of this type.
    pub fn name(&self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Date => "date",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Enum(_) => "enum",
            Self::StringList => "string_list",
        }
    }
}

/// Parses `YYYY-MM-DD` into (year, month, day) if it is a real calendar date.
pub fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (y >= 1800 && (1..=days).contains(&d)).then(|| (i32::try_from(y).unwrap_or(0), m, d))
}

fn is_valid_date(s: &str) -> bool {
    parse_date(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::Sensitivity;
    use super::*;
    use serde_json::json;

    fn def(ty: FieldType) -> FieldDef {
        FieldDef {
            name: "f".into(),
            label_vi: "f".into(),
            label_en: "f".into(),
            ty,
            sensitivity: Sensitivity::Basic,
            category: "identity".into(),
            max_len: 5,
            source: None,
        }
    }

    #[test]
    fn validates_types_without_quoting_values() {
        let s = def(FieldType::String);
        assert!(s.validate(&json!("abcde")).is_ok());
        let err = s.validate(&json!("abcdef-secret")).unwrap_err();
        assert!(err.contains("too long") && !err.contains("secret"));
        assert!(s.validate(&json!(5)).is_err());
        assert!(def(FieldType::Date).validate(&json!("2024-02-29")).is_ok());
        assert!(def(FieldType::Date).validate(&json!("2023-02-29")).is_err());
        assert!(def(FieldType::Date).validate(&json!("2023-2-1")).is_err());
        assert!(def(FieldType::Integer).validate(&json!(12)).is_ok());
        assert!(def(FieldType::Integer).validate(&json!(1.5)).is_err());
        assert!(def(FieldType::Boolean).validate(&json!("true")).is_err());
        let e = def(FieldType::Enum(vec!["a".into(), "b".into()]));
        assert!(e.validate(&json!("a")).is_ok());
        assert!(e.validate(&json!("c")).is_err());
        let l = def(FieldType::StringList);
        assert!(l.validate(&json!(["ab", "cd"])).is_ok());
        assert!(l.validate(&json!(["ab", 3])).is_err());
        assert!(s.validate(&json!("a\u{0}b")).is_err());
    }
}
