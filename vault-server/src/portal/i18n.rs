//! The pages' strings: one catalog per language (`i18n/vi.toml`, `i18n/en.toml`, compiled
//! in), Vietnamese first. A test checks that both catalogs have the same keys and that every
//! key a template uses exists.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Tiếng Việt (the default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// The `lang` attribute and query value.
    pub fn code(self) -> &'static str {
        match self {
            Self::Vi => "vi",
            Self::En => "en",
        }
    }

    /// The language named `s` (`vi` or `en`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vi" => Some(Self::Vi),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// This language's catalog.
    pub fn catalog(self) -> &'static Catalog {
        static VI: OnceLock<Catalog> = OnceLock::new();
        static EN: OnceLock<Catalog> = OnceLock::new();
        match self {
            Self::Vi => VI.get_or_init(|| Catalog::parse(VI_TOML)),
            Self::En => EN.get_or_init(|| Catalog::parse(EN_TOML)),
        }
    }
}

const VI_TOML: &str = include_str!("../../i18n/vi.toml");
const EN_TOML: &str = include_str!("../../i18n/en.toml");

/// Strings by key.
#[derive(Debug, Default)]
pub struct Catalog {
    map: HashMap<String, String>,
}

impl Catalog {
    fn parse(text: &str) -> Self {
        let map = toml::from_str::<HashMap<String, String>>(text).unwrap_or_default();
        Self { map }
    }

    /// The string for `key` (the key itself if missing: tests keep that from happening).
    pub fn s<'a>(&'a self, key: &'a str) -> &'a str {
        self.map.get(key).map_or(key, String::as_str)
    }

    /// The string for `key` with `{name}` placeholders filled in.
    pub fn fmt(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut out = self.s(key).to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    #[cfg(test)]
    fn keys(&self) -> std::collections::BTreeSet<&str> {
        self.map.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogs_parse_and_have_the_same_keys() {
        let (vi, en) = (Lang::Vi.catalog(), Lang::En.catalog());
        assert!(vi.keys().len() > 100, "vi.toml did not parse");
        assert_eq!(vi.keys(), en.keys());
        for k in vi.keys() {
            assert!(!vi.s(k).is_empty() && !en.s(k).is_empty(), "{k} is empty");
        }
    }

    #[test]
    fn every_key_the_templates_and_code_use_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut used = std::collections::BTreeSet::new();
        let mut scan = |text: &str| {
            for part in text.split("t.s(\"").skip(1) {
                if let Some(k) = part.split('"').next() {
                    used.insert(k.to_owned());
                }
            }
            for part in text.split("tr(\"").skip(1) {
                if let Some(k) = part.split('"').next() {
                    used.insert(k.to_owned());
                }
            }
        };
        for sub in ["templates/portal", "src/portal", "templates/console"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                scan(&std::fs::read_to_string(e.unwrap().path()).unwrap());
            }
        }
        scan(&std::fs::read_to_string(dir.join("src/console.rs")).unwrap());
        for part in std::fs::read_to_string(dir.join("src/console.rs"))
            .unwrap()
            .split("Some(&s), \"")
            .skip(1)
        {
            if let Some(k) = part.split('"').next() {
                used.insert(k.to_owned());
            }
        }
        assert!(used.len() > 50, "{used:?}");
        let vi = Lang::Vi.catalog().keys();
        let missing: Vec<_> = used.iter().filter(|k| !vi.contains(k.as_str())).collect();
        assert!(
            missing.is_empty(),
            "keys used but not in the catalogs: {missing:?}"
        );
    }

    #[test]
    fn placeholders_are_filled() {
        let t = Lang::En.catalog();
        assert_eq!(
            t.fmt("err_required", &[("field", "Note")]),
            "Please fill in: Note."
        );
    }
}
