//! C2SP signed notes with Ed25519 (`ring`) and `tlog-checkpoint` bodies: signing, verifier
//! and signer key strings, strict parsing. A verified note only ever comes out of
//! `LogVerifier::verify_note`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::merkle::Hash;
use crate::error::VaultError;

const ALG_ED25519: u8 = 0x01;
const MAX_NOTE: usize = 64 * 1024;
const DASH: &str = "\u{2014} ";

/// Why a key or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A malformed key string.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// A malformed note or checkpoint.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature by the expected key verifies.
    #[error("no valid signature by the log key")]
    BadSignature,
}

fn key_hash(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The log's Ed25519 signing key. Never printed; the seed is zeroized on drop.
pub struct LogSigner {
    name: String,
    hash: [u8; 4],
    pair: Ed25519KeyPair,
    seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({}, <redacted>)", self.name)
    }
}

impl LogSigner {
    /// A signer named `name` (the checkpoint origin) from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "key name must be non-empty, without spaces or '+'",
            ));
        }
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::BadKey("bad seed"))?;
        Ok(Self {
            name: name.to_owned(),
            hash: key_hash(name, pair.public_key().as_ref()),
            pair,
            seed: Zeroizing::new(*seed),
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex hash>+<base64(0x01 || seed)>`.
    pub fn from_signer_key(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (name, hash, key) = (parts.next(), parts.next(), parts.next());
        let (Some(name), Some(hash), Some(key)) = (name, hash, key) else {
            return Err(NoteError::BadKey("expected name+hash+key"));
        };
        let raw = Zeroizing::new(
            B64.decode(key)
                .map_err(|_| NoteError::BadKey("key is not base64"))?,
        );
        let seed: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| NoteError::BadKey("seed must be 32 bytes"))?,
            _ => return Err(NoteError::BadKey("unknown algorithm")),
        };
        let signer = Self::from_seed(name, &seed)?;
        if hex::encode(signer.hash) != hash {
            return Err(NoteError::BadKey("key hash does not match"));
        }
        Ok(signer)
    }

    /// The verifier for this key.
    pub fn verifier(&self) -> LogVerifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        LogVerifier {
            name: self.name.clone(),
            hash: self.hash,
            public,
        }
    }

    /// A second handle on the same key (for the log's writer thread).
    pub fn clone_signer(&self) -> Result<Self, VaultError> {
        Self::from_seed(&self.name, &self.seed)
            .map_err(|e| VaultError::StoreCorrupt(format!("audit key: {e}")))
    }

    /// Signs `text` (which must end with a newline) as a signed note.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') || text.contains("\n\n") {
            return Err(NoteError::Malformed(
                "text must end with a newline and contain no blank line",
            ));
        }
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.hash);
        blob.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n{DASH}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A log's public key: `<name>+<hex hash>+<base64(0x01 || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    hash: [u8; 4],
    public: [u8; 32],
}

impl std::fmt::Display for LogVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(raw)
        )
    }
}

impl LogVerifier {
    /// Parses a verifier key string.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let mut parts = s.trim_end().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+hash+key"));
        };
        if !valid_name(name) {
            return Err(NoteError::BadKey("bad key name"));
        }
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        let public: [u8; 32] = match raw.split_first() {
            Some((&ALG_ED25519, pk)) => pk
                .try_into()
                .map_err(|_| NoteError::BadKey("public key must be 32 bytes"))?,
            _ => return Err(NoteError::BadKey("unknown algorithm")),
        };
        let expected = key_hash(name, &public);
        if hex::encode(expected) != hash {
            return Err(NoteError::BadKey("key hash does not match"));
        }
        Ok(Self {
            name: name.to_owned(),
            hash: expected,
            public,
        })
    }

    /// The key name (the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks a signed note and returns its text. At least one signature line must be by
    /// this key and verify; lines by other keys are ignored.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.len() > MAX_NOTE {
            return Err(NoteError::Malformed("note too large"));
        }
        let split = note
            .find("\n\n")
            .ok_or(NoteError::Malformed("no signature block"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with a newline",
            ));
        }
        let mut verified = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line.strip_prefix(DASH).ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            if name != self.name || blob[..4] != self.hash {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature)?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::BadSignature)
        }
    }
}

/// A `tlog-checkpoint` body: origin, tree size, root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (the text of a verified note).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Malformed("missing origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.bytes().all(|b| b.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::Malformed("bad tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Malformed("bad root hash"))?;
        if lines.next() != Some("") || lines.next().is_some() {
            return Err(NoteError::Malformed("unexpected lines after the root hash"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs this checkpoint.
    pub fn sign(&self, signer: &LogSigner) -> Result<String, NoteError> {
        signer.sign_note(&self.body())
    }

    /// Verifies a signed checkpoint note and parses it; its origin must be the key's name.
    pub fn verify(note: &str, verifier: &LogVerifier) -> Result<Self, NoteError> {
        let cp = Self::parse(verifier.verify_note(note)?)?;
        if cp.origin != verifier.name() {
            return Err(NoteError::Malformed(
                "checkpoint origin is not the log key's name",
            ));
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vector() -> Value {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/signed-note-vector.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    #[test]
    fn reference_vector_is_reproduced_byte_for_byte() {
        let v = vector();
        let signer = LogSigner::from_signer_key(v["signer_key"].as_str().unwrap()).unwrap();
        let note = signer.sign_note(v["text"].as_str().unwrap()).unwrap();
        assert_eq!(note, v["note"].as_str().unwrap());
        assert_eq!(
            signer.verifier().to_string(),
            v["verifier_key"].as_str().unwrap()
        );
        let verifier = LogVerifier::parse(v["verifier_key"].as_str().unwrap()).unwrap();
        assert_eq!(
            verifier.verify_note(&note).unwrap(),
            v["text"].as_str().unwrap()
        );
    }

    #[test]
    fn any_changed_byte_fails() {
        let v = vector();
        let note = v["note"].as_str().unwrap().as_bytes().to_vec();
        let verifier = LogVerifier::parse(v["verifier_key"].as_str().unwrap()).unwrap();
        for i in 0..note.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut bad = note.clone();
                bad[i] ^= bit;
                let ok = std::str::from_utf8(&bad)
                    .ok()
                    .map(|s| verifier.verify_note(s).is_ok());
                assert_ne!(ok, Some(true), "byte {i} bit {bit:#x} still verifies");
            }
        }
    }

    #[test]
    fn checkpoints_round_trip_and_check_origin() {
        let signer = LogSigner::from_seed("example.org/log", &[9; 32]).unwrap();
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: 42,
            root: [3; 32],
        };
        let note = cp.sign(&signer).unwrap();
        assert!(note.starts_with("example.org/log\n42\n"));
        assert_eq!(Checkpoint::verify(&note, &signer.verifier()).unwrap(), cp);
        let other = LogSigner::from_seed("example.org/log", &[8; 32]).unwrap();
        assert!(Checkpoint::verify(&note, &other.verifier()).is_err());
        let wrong_origin = Checkpoint {
            origin: "evil.org/log".into(),
            ..cp.clone()
        };
        assert!(
            Checkpoint::verify(&wrong_origin.sign(&signer).unwrap(), &signer.verifier()).is_err()
        );
        assert!(Checkpoint::parse("o\n042\nAAAA\n").is_err());
        assert!(LogVerifier::parse(&signer.verifier().to_string()).is_ok());
    }
}
