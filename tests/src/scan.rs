//! Plaintext scanner: searches every byte of a directory tree (or any bytes) for a set of
//! needles (names, ids, phone numbers, addresses) in one pass per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const WINDOW: usize = 8;

impl Hit {
    /// Where it was, never what: `file at byte N (needle M)`.
    pub fn describe(&self) -> String {
        format!(
            "{} at byte {} (needle {})",
            self.file.display(),
            self.offset,
            self.needle
        )
    }
}

/// A needle found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The file.
    pub file: PathBuf,
    /// Byte offset.
    pub offset: usize,
    /// Index of the needle in the scanner's list.
    pub needle: usize,
}

/// A multi-needle scanner keyed by each needle's first 8 bytes.
#[derive(Debug, Default)]
pub struct Scanner {
    needles: Vec<Vec<u8>>,
    by_prefix: HashMap<[u8; WINDOW], Vec<usize>>,
}

impl Scanner {
    /// A scanner for `needles`; needles shorter than 8 bytes are refused (too many false
    /// positives to prove anything).
    pub fn new<I, S>(needles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut s = Self::default();
        for n in needles {
            let n = n.as_ref();
            let Some(prefix) = n
                .get(..WINDOW)
                .and_then(|p| <[u8; WINDOW]>::try_from(p).ok())
            else {
                panic!("needle shorter than {WINDOW} bytes");
            };
            s.by_prefix.entry(prefix).or_default().push(s.needles.len());
            s.needles.push(n.to_vec());
        }
        s
    }

    /// Number of needles.
    pub fn len(&self) -> usize {
        self.needles.len()
    }

    /// Whether there are no needles.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The needle with this index.
    pub fn needle(&self, i: usize) -> &[u8] {
        &self.needles[i]
    }

    /// Every needle occurrence in `bytes`.
    pub fn scan_bytes(&self, file: &Path, bytes: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if bytes.len() < WINDOW {
            return hits;
        }
        for i in 0..=bytes.len() - WINDOW {
            let key: [u8; WINDOW] = bytes[i..i + WINDOW].try_into().unwrap_or([0; WINDOW]);
            if let Some(list) = self.by_prefix.get(&key) {
                for &n in list {
                    let needle = &self.needles[n];
                    if bytes[i..].starts_with(needle) && self.stands_alone(n, bytes, i) {
                        hits.push(Hit {
                            file: file.to_path_buf(),
                            offset: i,
                            needle: n,
                        });
                    }
                }
            }
        }
        hits
    }

    /// Whether the occurrence of needle `n` at `at` counts. A needle of digits only (an id, a
    /// phone or account number) counts only as a whole number: not inside a longer run of
    /// letters and digits such as a millisecond timestamp or a hex hash, where at gigabyte
    /// scale some 10-12 digit number always turns up by chance. Other needles count anywhere.
    fn stands_alone(&self, n: usize, bytes: &[u8], at: usize) -> bool {
        let needle = &self.needles[n];
        if !needle.iter().all(u8::is_ascii_digit) {
            return true;
        }
        let before = at.checked_sub(1).and_then(|b| bytes.get(b));
        let after = bytes.get(at + needle.len());
        !before.is_some_and(u8::is_ascii_alphanumeric)
            && !after.is_some_and(u8::is_ascii_alphanumeric)
    }

    /// Every needle occurrence in every file under `dir`.
    pub fn scan_dir(&self, dir: &Path) -> Vec<Hit> {
        let mut hits = Vec::new();
        each_file(dir, &mut |p, bytes| hits.extend(self.scan_bytes(p, bytes)));
        hits
    }
}

/// Calls `f` with the path and bytes of every readable file under `dir`, recursively.
fn each_file(dir: &Path, f: &mut dyn FnMut(&Path, &[u8])) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                f(&p, &bytes);
            }
        }
    }
}

/// What to look for after serving `people`: each citizen id and each string value of 8 or
/// more bytes that at most 3 citizens share (so not an enum value such as a marital status),
/// except values the policy files contain (a closed vocabulary's entry, such as an education
/// level held by one citizen of a small population, is public text, not a leak) and
/// date-shaped values (`YYYY-MM-DD`: a licence expiry can be today's date, which every log
/// timestamp carries).
pub fn citizen_needles(people: &[(String, serde_json::Value)]) -> Vec<String> {
    needles_outside(people, &public_policy_text())
}

/// Every policy file's text (`policies/`, read recursively), joined.
fn public_policy_text() -> String {
    let mut text = String::new();
    each_file(&crate::policies_dir(), &mut |_, bytes| {
        text.push_str(&String::from_utf8_lossy(bytes));
        text.push('\n');
    });
    text
}

/// `citizen_needles` against a given public text.
fn needles_outside(people: &[(String, serde_json::Value)], public: &str) -> Vec<String> {
    let date = |s: &str| {
        let b = s.as_bytes();
        b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    };
    let mut holders: HashMap<String, usize> = HashMap::new();
    let mut needles: Vec<String> = Vec::new();
    for (id, fields) in people {
        needles.push(id.clone());
        let mut mine: Vec<String> = Vec::new();
        let mut stack: Vec<&serde_json::Value> = fields
            .as_object()
            .map(|o| o.values().collect())
            .unwrap_or_default();
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(t) if t.len() >= WINDOW && !date(t) => {
                    mine.push(t.clone());
                }
                serde_json::Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
        }
        mine.sort();
        mine.dedup();
        for t in mine {
            *holders.entry(t).or_default() += 1;
        }
    }
    needles.extend(
        holders
            .into_iter()
            .filter(|(t, n)| *n <= 3 && !public.contains(t.as_str()))
            .map(|(t, _)| t),
    );
    needles.sort();
    needles.dedup();
    needles
}

/// Scans what a served vault leaves behind for `people`'s values and ids: every file of its
/// data directory, everything the server wrote to its log, a fresh `vaultctl audit export`,
/// and `extra` named byte strings (error bodies, say). Returns the hits.
pub fn served_vault(
    server: &crate::server::TestServer,
    people: &[(String, serde_json::Value)],
    extra: &[(String, Vec<u8>)],
) -> Vec<Hit> {
    let scanner = Scanner::new(citizen_needles(people));
    let mut hits = scanner.scan_dir(&server.vault.data());
    hits.extend(scanner.scan_bytes(Path::new("server log"), &server.log_bytes()));
    let export = server.vault.ctl(&["audit", "export"]);
    assert!(export.status.success(), "audit export failed");
    assert!(!export.stdout.is_empty(), "empty audit export");
    hits.extend(scanner.scan_bytes(Path::new("audit export"), &export.stdout));
    for (name, bytes) in extra {
        hits.extend(scanner.scan_bytes(Path::new(name), bytes));
    }
    // Local diagnosis only (demo data): CDV_SCAN_DEBUG=1 prints each export hit in context.
    if std::env::var_os("CDV_SCAN_DEBUG").is_some() {
        for h in hits
            .iter()
            .filter(|h| h.file == Path::new("audit export"))
            .take(5)
        {
            let from = h.offset.saturating_sub(120);
            let to = (h.offset + 80).min(export.stdout.len());
            eprintln!(
                "hit {:?} in: {}",
                String::from_utf8_lossy(scanner.needle(h.needle)),
                String::from_utf8_lossy(&export.stdout[from..to])
            );
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_count_as_whole_numbers_names_anywhere() {
        let s = Scanner::new(["0335136421", "Nguyễn Văn An"]);
        let p = Path::new("x");
        let found = |b: &[u8]| s.scan_bytes(p, b).len();
        assert_eq!(found(br#"{"phone":"0335136421"}"#), 1);
        assert_eq!(found(b"\x00\x010335136421\xff"), 1);
        assert_eq!(found(b"ts=10335136421"), 0, "inside a longer number");
        assert_eq!(found(b"ab0335136421cd"), 0, "inside a hex string");
        assert_eq!(
            found("xNguyễn Văn Anh".as_bytes()),
            1,
            "names count anywhere"
        );
    }

    #[test]
    fn rare_values_are_needles_unless_the_policy_files_hold_them() {
        let person = |id: &str, edu: &str, name: &str| {
            (
                id.to_owned(),
                serde_json::json!({"education_level": edu, "full_name": name}),
            )
        };
        let people = vec![
            person("079123456789", "trung học phổ thông", "Nguyễn Văn An"),
            person("079123456790", "đại học", "Trần Thị Bình"),
        ];
        let needles = citizen_needles(&people);
        for n in [
            "079123456789",
            "079123456790",
            "Nguyễn Văn An",
            "Trần Thị Bình",
        ] {
            assert!(needles.iter().any(|x| x == n), "{n} must be a needle");
        }
        // Held by one citizen each, but listed in policies/fields.toml: public vocabulary.
        assert!(!needles.iter().any(|x| x == "trung học phổ thông"));
        // The same value is a needle when no policy text names it (the filter is what drops it).
        let without = needles_outside(&people, "");
        assert!(without.iter().any(|x| x == "trung học phổ thông"));
        // Ids are needles even when public text happens to contain them.
        let ids = needles_outside(&people, "079123456789 Nguyễn Văn An");
        assert!(ids.iter().any(|x| x == "079123456789"));
        assert!(!ids.iter().any(|x| x == "Nguyễn Văn An"));
    }
}
