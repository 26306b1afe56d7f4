//! Audit export lines (`{"index", "entry", "leaf_hash"}`, one per line, `entry` being the
//! leaf's exact canonical bytes) and their offline verification against a signed checkpoint
//! and the log's verifier key, in one streaming pass with O(log n) memory.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::merkle::{self, Hash};
use super::note::{Checkpoint, LogVerifier};

/// One export line for entry `index`.
pub fn export_line(index: u64, entry: &[u8], leaf: &Hash) -> Vec<u8> {
    let mut line = Vec::with_capacity(entry.len() + 110);
    line.extend_from_slice(b"{\"index\":");
    line.extend_from_slice(index.to_string().as_bytes());
    line.extend_from_slice(b",\"entry\":");
    line.extend_from_slice(entry);
    line.extend_from_slice(b",\"leaf_hash\":\"");
    line.extend_from_slice(hex::encode(leaf).as_bytes());
    line.extend_from_slice(b"\"}\n");
    line
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    index: u64,
    #[serde(borrow)]
    entry: &'a RawValue,
    leaf_hash: &'a str,
}

/// Splits an export line into (index, raw entry bytes, leaf hash hex). The exporter's own
/// layout is recognized without a JSON parse (the entry's bytes are hashed as they are, so
/// nothing but the committed bytes can match); any other valid layout goes through serde.
fn split_line(line: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    const SUFFIX_LEN: usize = ",\"leaf_hash\":\"".len() + 64 + "\"}".len();
    if let Some(rest) = line.strip_prefix(b"{\"index\":") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let index = std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok();
        let rest = rest.get(digits..)?.strip_prefix(b",\"entry\":");
        if let (Some(index), Some(rest)) = (index, rest)
            && rest.len() > SUFFIX_LEN
        {
            let (entry, suffix) = rest.split_at(rest.len() - SUFFIX_LEN);
            let hex = suffix
                .strip_prefix(b",\"leaf_hash\":\"")
                .and_then(|h| h.strip_suffix(b"\"}"));
            if let Some(hex) = hex
                && entry.first() == Some(&b'{')
                && entry.last() == Some(&b'}')
            {
                return Some((index, entry, hex));
            }
        }
    }
    let parsed: Line<'_> = serde_json::from_slice(line).ok()?;
    let entry = parsed.entry.get().as_bytes();
    // Borrowed from `line`, so the slices outlive the parse.
    let start = (entry.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let hex_start = (parsed.leaf_hash.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    Some((
        parsed.index,
        line.get(start..start + entry.len())?,
        line.get(hex_start..hex_start + parsed.leaf_hash.len())?,
    ))
}

/// The streaming root of a growing tree: the roots of its complete subtrees, largest first.
#[derive(Debug, Default, Clone)]
pub struct CompactRange {
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl CompactRange {
    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let (mut height, mut h) = (0u32, leaf);
        while let Some(&(top, left)) = self.stack.last() {
            if top != height {
                break;
            }
            self.stack.pop();
            h = merkle::node_hash(&left, &h);
            height += 1;
        }
        self.stack.push((height, h));
        self.size += 1;
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut r)) = it.next() else {
            return merkle::empty_root();
        };
        for (_, left) in it {
            r = merkle::node_hash(left, &r);
        }
        r
    }
}

/// Why an export failed verification; `index` names the first bad entry when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineError {
    /// The first bad entry.
    pub index: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for OfflineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "entry {i}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// What an offline verification proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineReport {
    /// Entries read and re-hashed.
    pub entries: u64,
    /// The verified checkpoint's size (its root was recomputed from the entries).
    pub checkpoint_size: u64,
}

fn fail(index: Option<u64>, reason: impl Into<String>) -> OfflineError {
    OfflineError {
        index,
        reason: reason.into(),
    }
}

/// Verifies an export (which must start at index 0) against a signed checkpoint: the
/// signature, every entry's leaf hash recomputed from its bytes, consecutive indexes, and
/// the root at the checkpoint's size.
pub fn verify_export<R: BufRead>(
    mut reader: R,
    checkpoint_note: &str,
    verifier: &LogVerifier,
) -> Result<OfflineReport, OfflineError> {
    let cp = Checkpoint::verify(checkpoint_note, verifier)
        .map_err(|e| fail(None, format!("checkpoint: {e}")))?;
    let mut range = CompactRange::default();
    let mut line = Vec::with_capacity(1024);
    let mut checked_root = cp.size == 0;
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(fail(None, "checkpoint of the empty log has a wrong root"));
    }
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| fail(Some(range.size()), format!("read error: {e}")))?;
        if n == 0 {
            break;
        }
        let expected = range.size();
        let (index, entry, leaf_hex) = split_line(line.trim_ascii_end()).ok_or_else(|| {
            fail(
                Some(expected),
                "line is not {\"index\", \"entry\", \"leaf_hash\"}",
            )
        })?;
        if index != expected {
            return Err(fail(
                Some(expected),
                format!("expected index {expected}, found {index}"),
            ));
        }
        let leaf = merkle::leaf_hash(entry);
        let mut claimed = [0u8; 32];
        if hex::decode_to_slice(leaf_hex, &mut claimed).is_err() || claimed != leaf {
            return Err(fail(
                Some(expected),
                "entry bytes do not hash to its leaf_hash",
            ));
        }
        range.push(leaf);
        if range.size() == cp.size {
            if range.root() != cp.root {
                return Err(fail(
                    Some(expected),
                    format!(
                        "root of the first {} entries does not match the checkpoint",
                        cp.size
                    ),
                ));
            }
            checked_root = true;
        }
    }
    if !checked_root {
        return Err(fail(
            Some(range.size()),
            format!(
                "export ends after {} entries but the checkpoint covers {}",
                range.size(),
                cp.size
            ),
        ));
    }
    Ok(OfflineReport {
        entries: range.size(),
        checkpoint_size: cp.size,
    })
}

#[cfg(test)]
mod tests {
    use super::super::merkle::MemoryTree;
    use super::super::note::LogSigner;
    use super::*;

    fn export(n: u64) -> (Vec<u8>, String, LogVerifier) {
        let signer = LogSigner::from_seed("t/log", &[3; 32]).unwrap();
        let mut out = Vec::new();
        let mut t = MemoryTree::new();
        for i in 0..n {
            let e = format!("{{\"i\":{i},\"v\":1}}");
            let h = merkle::leaf_hash(e.as_bytes());
            t.push(h);
            out.extend(export_line(i, e.as_bytes(), &h));
        }
        let root = merkle::root(&t, n).unwrap();
        let note = Checkpoint {
            origin: "t/log".into(),
            size: n,
            root,
        }
        .sign(&signer)
        .unwrap();
        (out, note, signer.verifier())
    }

    #[test]
    fn compact_range_matches_the_full_tree() {
        let mut t = MemoryTree::new();
        let mut r = CompactRange::default();
        assert_eq!(r.root(), merkle::empty_root());
        for i in 0..200u32 {
            let h = merkle::leaf_hash(&i.to_be_bytes());
            t.push(h);
            r.push(h);
            assert_eq!(r.root(), merkle::root(&t, u64::from(i) + 1).unwrap());
        }
    }

    #[test]
    fn a_good_export_verifies_and_each_tampering_names_the_entry() {
        let (good, note, v) = export(50);
        assert_eq!(
            verify_export(&good[..], &note, &v).unwrap(),
            OfflineReport {
                entries: 50,
                checkpoint_size: 50
            }
        );
        let text = String::from_utf8(good.clone()).unwrap();
        // A changed entry.
        let bad = text.replacen("{\"i\":17,\"v\":1}", "{\"i\":17,\"v\":2}", 1);
        assert_eq!(
            verify_export(bad.as_bytes(), &note, &v).unwrap_err().index,
            Some(17)
        );
        // A changed entry with its leaf hash recomputed: the root catches it.
        let e = "{\"i\":17,\"v\":2}";
        let line17 = text.lines().nth(17).unwrap();
        let forged = String::from_utf8(export_line(
            17,
            e.as_bytes(),
            &merkle::leaf_hash(e.as_bytes()),
        ))
        .unwrap();
        let bad = text.replacen(&format!("{line17}\n"), &forged, 1);
        assert!(
            verify_export(bad.as_bytes(), &note, &v)
                .unwrap_err()
                .reason
                .contains("root")
        );
        // A removed entry.
        let bad: String = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        assert_eq!(
            verify_export(bad.as_bytes(), &note, &v).unwrap_err().index,
            Some(3)
        );
        // Truncated.
        let bad: String = text.lines().take(40).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            verify_export(bad.as_bytes(), &note, &v).unwrap_err().index,
            Some(40)
        );
        // The same data laid out differently (keys reordered, spaces) still verifies.
        let relaid: String = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let entry = serde_json::to_string(&v["entry"]).unwrap();
                format!(
                    "{{ \"leaf_hash\": {}, \"entry\": {entry}, \"index\": {} }}\n",
                    v["leaf_hash"], v["index"]
                )
            })
            .collect();
        assert!(verify_export(relaid.as_bytes(), &note, &v).is_ok());
        // Another key.
        let other = LogSigner::from_seed("t/log", &[4; 32]).unwrap().verifier();
        assert!(verify_export(&good[..], &note, &other).is_err());
    }
}
