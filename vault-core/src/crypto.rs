//! Cryptographic primitives: AES-256-GCM field sealing and key wrapping, HKDF derivation,
//! HMAC blind indexes and pseudonyms. Pure functions over secret types; no storage here.
//!
//! Envelope formats (all integers big-endian):
//! - field: `0x01 | alg | dek_version u32 | record_version u64 | nonce[12] | ct+tag`,
//!   AAD = lp("cdv.field.v1") lp(blind id) lp(field name) record_version dek_version
//! - wrapped DEK: `0x02 | alg | kek_version u32 | dek_version u32 | nonce[12] | ct+tag`,
//!   AAD = lp("cdv.dek.v1") lp(blind id) kek_version dek_version
//! - wrapped KEK: `0x03 | alg | kek_version u32 | nonce[12] | ct+tag`,
//!   AAD = lp("cdv.kek.v1") kek_version
//!
//! where `lp(x)` is a u32 length followed by `x`. Field envelopes carry the DEK version, not
//! the KEK version: rotating a KEK re-wraps DEKs and never has to touch field ciphertexts.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::id::{BlindId, CitizenId, FieldName};
use crate::secret::{AnswerKey, DataKey, IndexKey, Kek, Plaintext, PseudonymKey, RootKey};

/// Algorithm byte for AES-256-GCM with a 96-bit random nonce.
pub const ALG_AES256GCM: u8 = 0x01;
/// Format byte of a sealed field.
pub const FORMAT_FIELD: u8 = 0x01;
/// Format byte of a wrapped DEK.
pub const FORMAT_DEK: u8 = 0x02;
/// Format byte of a wrapped KEK.
pub const FORMAT_KEK: u8 = 0x03;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const FIELD_HEADER_LEN: usize = 2 + 4 + 8 + NONCE_LEN;
const DEK_HEADER_LEN: usize = 2 + 4 + 4 + NONCE_LEN;
const KEK_HEADER_LEN: usize = 2 + 4 + NONCE_LEN;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), VaultError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|_| VaultError::StoreUnavailable("operating system random source failed".into()))
}

thread_local! {
    /// OS randomness fetched 4 KiB at a time for nonces: one `getrandom` call per ~340
    /// nonces instead of one per seal. Nonces need uniqueness, not secrecy; keys are
    /// still drawn from the OS one by one.
    static NONCE_POOL: std::cell::RefCell<(Box<[u8; 4096]>, usize)> =
        std::cell::RefCell::new((Box::new([0u8; 4096]), 4096));
}

/// A fresh random 96-bit nonce.
fn random_nonce() -> Result<[u8; NONCE_LEN], VaultError> {
    NONCE_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (buf, used) = &mut *pool;
        if *used + NONCE_LEN > buf.len() {
            random_bytes(buf.as_mut_slice())?;
            *used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(
            buf.get(*used..*used + NONCE_LEN)
                .unwrap_or(&[0u8; NONCE_LEN]),
        );
        // Never hand out the same pool bytes twice.
        buf.get_mut(*used..*used + NONCE_LEN)
            .into_iter()
            .for_each(|b| b.fill(0));
        *used += NONCE_LEN;
        Ok(n)
    })
}

/// 16 fresh random bytes from the same pool (audit entry nonces: public, unpredictable).
pub fn random_nonce16() -> Result<[u8; 16], VaultError> {
    let a = random_nonce()?;
    let b = random_nonce()?;
    let mut n = [0u8; 16];
    n[..12].copy_from_slice(&a);
    n[12..].copy_from_slice(&b[..4]);
    Ok(n)
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let mut k = Zeroizing::new([0u8; 32]);
    random_bytes(k.as_mut())?;
    Ok(k)
}

/// A fresh random root key.
pub fn generate_root_key() -> Result<RootKey, VaultError> {
    Ok(RootKey::from_bytes(*random_key()?))
}

/// A fresh random KEK.
pub fn generate_kek() -> Result<Kek, VaultError> {
    Ok(Kek::from_bytes(*random_key()?))
}

/// A fresh random DEK.
pub fn generate_dek() -> Result<DataKey, VaultError> {
    Ok(DataKey::from_bytes(*random_key()?))
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

struct Aad(Vec<u8>);

impl Aad {
    fn new(tag: &str) -> Self {
        let mut a = Self(Vec::with_capacity(96));
        a.part(tag.as_bytes());
        a
    }
    fn part(&mut self, b: &[u8]) -> &mut Self {
        // Parts are tags, 32-byte ids and field names (≤ 64 bytes): the length fits in u32.
        self.0
            .extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
}

fn be_u32(b: &[u8], at: usize) -> Result<u32, VaultError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(VaultError::IntegrityFailure)
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, VaultError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(VaultError::IntegrityFailure)
}

/// Seals one field value of one citizen with that citizen's DEK.
pub struct FieldSealer {
    cipher: Aes256Gcm,
    blind: BlindId,
    dek_version: u32,
}

impl std::fmt::Debug for FieldSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldSealer(<redacted>)")
    }
}

impl FieldSealer {
    /// Prepares the AES key schedule once for all of a citizen's fields.
    pub fn new(dek: &DataKey, blind: BlindId, dek_version: u32) -> Self {
        Self {
            cipher: cipher(dek.expose()),
            blind,
            dek_version,
        }
    }

    fn aad(&self, field: &FieldName, record_version: u64) -> Aad {
        let mut aad = Aad::new("cdv.field.v1");
        aad.part(&self.blind.0)
            .part(field.as_str().as_bytes())
            .u64(record_version)
            .u32(self.dek_version);
        aad
    }

    /// Seals `plaintext` as `field` at `record_version`.
    pub fn seal(
        &self,
        field: &FieldName,
        record_version: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let nonce_bytes = random_nonce()?;
        let nonce = Nonce::from_slice(&nonce_bytes);
        let aad = self.aad(field, record_version);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad.0,
                },
            )
            .map_err(|_| VaultError::IntegrityFailure)?;
        let mut out = Vec::with_capacity(FIELD_HEADER_LEN + ct.len());
        out.push(FORMAT_FIELD);
        out.push(ALG_AES256GCM);
        out.extend_from_slice(&self.dek_version.to_be_bytes());
        out.extend_from_slice(&record_version.to_be_bytes());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens an envelope that must be `field` at exactly `expected_version`. An envelope
    /// from another citizen, field, DEK or an older version is refused.
    pub fn open(
        &self,
        field: &FieldName,
        expected_version: u64,
        envelope: &[u8],
    ) -> Result<Plaintext, VaultError> {
        if envelope.len() < FIELD_HEADER_LEN + TAG_LEN
            || envelope.first() != Some(&FORMAT_FIELD)
            || envelope.get(1) != Some(&ALG_AES256GCM)
        {
            return Err(VaultError::IntegrityFailure);
        }
        if be_u32(envelope, 2)? != self.dek_version {
            return Err(VaultError::IntegrityFailure);
        }
        if be_u64(envelope, 6)? != expected_version {
            return Err(VaultError::StaleCiphertext);
        }
        let nonce = Nonce::from_slice(&envelope[14..FIELD_HEADER_LEN]);
        let aad = self.aad(field, expected_version);
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &envelope[FIELD_HEADER_LEN..],
                    aad: &aad.0,
                },
            )
            .map(Plaintext::new)
            .map_err(|_| VaultError::IntegrityFailure)
    }
}

/// Envelope format of a sealed case body.
pub const FORMAT_CASE: u8 = 0x06;
const CASE_HEADER_LEN: usize = 2 + 4 + NONCE_LEN;

impl FieldSealer {
    fn case_aad(&self, kind: &str, id: &str) -> Aad {
        let mut aad = Aad::new("cdv.case.v1");
        aad.part(&self.blind.0)
            .part(kind.as_bytes())
            .part(id.as_bytes())
            .u32(self.dek_version);
        aad
    }

    /// Seals a citizen's case body (a complaint, correction or request) under the citizen's
    /// DEK, bound to the case's kind and id: it cannot be moved to another case, citizen or
    /// field, and erasing the citizen's DEK shreds it with the record.
    pub fn seal_case(&self, kind: &str, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let nonce_bytes = random_nonce()?;
        let nonce = Nonce::from_slice(&nonce_bytes);
        let aad = self.case_aad(kind, id);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad.0,
                },
            )
            .map_err(|_| VaultError::IntegrityFailure)?;
        let mut out = Vec::with_capacity(CASE_HEADER_LEN + ct.len());
        out.push(FORMAT_CASE);
        out.push(ALG_AES256GCM);
        out.extend_from_slice(&self.dek_version.to_be_bytes());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens `seal_case`'s envelope of exactly this case.
    pub fn open_case(
        &self,
        kind: &str,
        id: &str,
        envelope: &[u8],
    ) -> Result<Plaintext, VaultError> {
        if envelope.len() < CASE_HEADER_LEN + TAG_LEN
            || envelope.first() != Some(&FORMAT_CASE)
            || envelope.get(1) != Some(&ALG_AES256GCM)
            || be_u32(envelope, 2)? != self.dek_version
        {
            return Err(VaultError::IntegrityFailure);
        }
        let aad = self.case_aad(kind, id);
        let (header, body) = envelope.split_at(CASE_HEADER_LEN);
        let nonce = Nonce::from_slice(header.get(6..).unwrap_or_default());
        self.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: body,
                    aad: &aad.0,
                },
            )
            .map(Plaintext::new)
            .map_err(|_| VaultError::IntegrityFailure)
    }
}

/// Wraps a citizen's DEK under a KEK.
pub fn wrap_dek(
    kek: &Kek,
    kek_version: u32,
    blind: &BlindId,
    dek_version: u32,
    dek: &DataKey,
) -> Result<Vec<u8>, VaultError> {
    let nonce_bytes = random_nonce()?;
    let nonce = Nonce::from_slice(&nonce_bytes);
    let mut aad = Aad::new("cdv.dek.v1");
    aad.part(&blind.0).u32(kek_version).u32(dek_version);
    let ct = cipher(kek.expose())
        .encrypt(
            nonce,
            Payload {
                msg: dek.expose(),
                aad: &aad.0,
            },
        )
        .map_err(|_| VaultError::IntegrityFailure)?;
    let mut out = Vec::with_capacity(DEK_HEADER_LEN + ct.len());
    out.push(FORMAT_DEK);
    out.push(ALG_AES256GCM);
    out.extend_from_slice(&kek_version.to_be_bytes());
    out.extend_from_slice(&dek_version.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The KEK version a wrapped DEK was wrapped under.
pub fn wrapped_dek_kek_version(wrapped: &[u8]) -> Result<u32, VaultError> {
    if wrapped.first() != Some(&FORMAT_DEK) || wrapped.get(1) != Some(&ALG_AES256GCM) {
        return Err(VaultError::IntegrityFailure);
    }
    be_u32(wrapped, 2)
}

/// Unwraps a DEK; `kek` must be the version named in the envelope.
pub fn unwrap_dek(
    kek: &Kek,
    blind: &BlindId,
    dek_version: u32,
    wrapped: &[u8],
) -> Result<DataKey, VaultError> {
    let kek_version = wrapped_dek_kek_version(wrapped)?;
    if wrapped.len() != DEK_HEADER_LEN + 32 + TAG_LEN || be_u32(wrapped, 6)? != dek_version {
        return Err(VaultError::IntegrityFailure);
    }
    let mut aad = Aad::new("cdv.dek.v1");
    aad.part(&blind.0).u32(kek_version).u32(dek_version);
    let pt = Zeroizing::new(
        cipher(kek.expose())
            .decrypt(
                Nonce::from_slice(&wrapped[10..DEK_HEADER_LEN]),
                Payload {
                    msg: &wrapped[DEK_HEADER_LEN..],
                    aad: &aad.0,
                },
            )
            .map_err(|_| VaultError::IntegrityFailure)?,
    );
    let bytes: [u8; 32] = pt
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::IntegrityFailure)?;
    Ok(DataKey::from_bytes(bytes))
}

/// Wraps a KEK under the root key.
pub fn wrap_kek(root: &RootKey, kek_version: u32, kek: &Kek) -> Result<Vec<u8>, VaultError> {
    let nonce_bytes = random_nonce()?;
    let nonce = Nonce::from_slice(&nonce_bytes);
    let mut aad = Aad::new("cdv.kek.v1");
    aad.u32(kek_version);
    let ct = cipher(root.expose())
        .encrypt(
            nonce,
            Payload {
                msg: kek.expose(),
                aad: &aad.0,
            },
        )
        .map_err(|_| VaultError::IntegrityFailure)?;
    let mut out = Vec::with_capacity(KEK_HEADER_LEN + ct.len());
    out.push(FORMAT_KEK);
    out.push(ALG_AES256GCM);
    out.extend_from_slice(&kek_version.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Unwraps a KEK. Failure means the root key is wrong (or the keyring was tampered with).
pub fn unwrap_kek(root: &RootKey, kek_version: u32, wrapped: &[u8]) -> Result<Kek, VaultError> {
    if wrapped.len() != KEK_HEADER_LEN + 32 + TAG_LEN
        || wrapped.first() != Some(&FORMAT_KEK)
        || wrapped.get(1) != Some(&ALG_AES256GCM)
        || be_u32(wrapped, 2)? != kek_version
    {
        return Err(VaultError::IntegrityFailure);
    }
    let mut aad = Aad::new("cdv.kek.v1");
    aad.u32(kek_version);
    let pt = Zeroizing::new(
        cipher(root.expose())
            .decrypt(
                Nonce::from_slice(&wrapped[6..KEK_HEADER_LEN]),
                Payload {
                    msg: &wrapped[KEK_HEADER_LEN..],
                    aad: &aad.0,
                },
            )
            .map_err(|_| VaultError::WrongRootKey)?,
    );
    let bytes: [u8; 32] = pt
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::IntegrityFailure)?;
    Ok(Kek::from_bytes(bytes))
}

/// Format byte of a secret (e.g. the audit signing seed) wrapped by the root key.
pub const FORMAT_SECRET: u8 = 0x04;
const SECRET_HEADER_LEN: usize = 2 + NONCE_LEN;

/// Wraps a 32-byte secret under the root key, bound to `label`.
pub fn wrap_secret(root: &RootKey, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
    let nonce_bytes = random_nonce()?;
    let nonce = Nonce::from_slice(&nonce_bytes);
    let mut aad = Aad::new("cdv.secret.v1");
    aad.part(label.as_bytes());
    let ct = cipher(root.expose())
        .encrypt(
            nonce,
            Payload {
                msg: secret,
                aad: &aad.0,
            },
        )
        .map_err(|_| VaultError::IntegrityFailure)?;
    let mut out = vec![FORMAT_SECRET, ALG_AES256GCM];
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Unwraps a secret wrapped by `wrap_secret` with the same label.
pub fn unwrap_secret(
    root: &RootKey,
    label: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    if wrapped.len() != SECRET_HEADER_LEN + 32 + TAG_LEN
        || wrapped.first() != Some(&FORMAT_SECRET)
        || wrapped.get(1) != Some(&ALG_AES256GCM)
    {
        return Err(VaultError::IntegrityFailure);
    }
    let mut aad = Aad::new("cdv.secret.v1");
    aad.part(label.as_bytes());
    let pt = Zeroizing::new(
        cipher(root.expose())
            .decrypt(
                Nonce::from_slice(&wrapped[2..SECRET_HEADER_LEN]),
                Payload {
                    msg: &wrapped[SECRET_HEADER_LEN..],
                    aad: &aad.0,
                },
            )
            .map_err(|_| VaultError::WrongRootKey)?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(pt.as_slice());
    Ok(out)
}

/// Keys derived from the root key with HKDF-SHA256.
#[derive(Debug)]
pub struct DerivedKeys {
    /// Blind-index key.
    pub index: IndexKey,
    /// Audit-pseudonym key.
    pub pseudonym: PseudonymKey,
    /// Idempotent answers' key.
    pub answers: AnswerKey,
}

/// Derives the blind-index and audit-pseudonym keys from the root key.
pub fn derive_keys(root: &RootKey) -> Result<DerivedKeys, VaultError> {
    derive_keys_from(root.expose())
}

/// The derived keys from 32 bytes of key material (a root key, or a token vault's wrapped
/// derivation seed).
pub fn derive_keys_from(ikm: &[u8; 32]) -> Result<DerivedKeys, VaultError> {
    let hk = Hkdf::<Sha256>::new(Some(b"cdv.hkdf.salt.v1"), ikm);
    let mut index = Zeroizing::new([0u8; 32]);
    let mut pseudonym = Zeroizing::new([0u8; 32]);
    let mut answers = Zeroizing::new([0u8; 32]);
    hk.expand(b"cdv/blind-index/v1", index.as_mut())
        .and_then(|()| hk.expand(b"cdv/audit-pseudonym/v1", pseudonym.as_mut()))
        .and_then(|()| hk.expand(b"cdv/idempotent-answers/v1", answers.as_mut()))
        .map_err(|_| VaultError::RootKeyUnavailable("key derivation failed".into()))?;
    Ok(DerivedKeys {
        index: IndexKey::from_bytes(*index),
        pseudonym: PseudonymKey::from_bytes(*pseudonym),
        answers: AnswerKey::from_bytes(*answers),
    })
}

/// The stored name of a caller's idempotency key: HMAC-SHA256(answer key, "cdv.idem.v1" ||
/// scope || key), so neither the caller nor a key that holds an identifier is on disk.
pub fn answer_name(key: &AnswerKey, scope: &str, idempotency_key: &str) -> [u8; 32] {
    let (scope_len, key_len) = (
        (scope.len() as u64).to_be_bytes(),
        (idempotency_key.len() as u64).to_be_bytes(),
    );
    hmac(
        key.expose(),
        &[
            b"cdv.idem.v1",
            &scope_len,
            scope.as_bytes(),
            &key_len,
            idempotency_key.as_bytes(),
        ],
    )
}

/// What an idempotency key remembers of a request: HMAC-SHA256(answer key, "cdv.req.v1" ||
/// the request), so the store holds no plain hash of the values a request carried.
pub fn request_mac(key: &AnswerKey, request: &[u8]) -> [u8; 32] {
    hmac(key.expose(), &[b"cdv.req.v1", request])
}

/// Format byte of a sealed idempotent answer.
const FORMAT_ANSWER: u8 = 0x05;

/// Seals an answer remembered under `name` (AES-256-GCM, the name in the AAD).
pub fn seal_answer(key: &AnswerKey, name: &[u8; 32], answer: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce_bytes = random_nonce()?;
    let mut aad = Aad::new("cdv.answer.v1");
    aad.part(name);
    let ct = cipher(key.expose())
        .encrypt(
            Nonce::from_slice(&nonce_bytes),
            Payload {
                msg: answer,
                aad: &aad.0,
            },
        )
        .map_err(|_| VaultError::IntegrityFailure)?;
    let mut out = Vec::with_capacity(2 + NONCE_LEN + ct.len());
    out.extend_from_slice(&[FORMAT_ANSWER, ALG_AES256GCM]);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens an answer sealed by `seal_answer` under the same name.
pub fn open_answer(key: &AnswerKey, name: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let head = 2 + NONCE_LEN;
    if sealed.len() < head + TAG_LEN
        || sealed.first() != Some(&FORMAT_ANSWER)
        || sealed.get(1) != Some(&ALG_AES256GCM)
    {
        return Err(VaultError::IntegrityFailure);
    }
    let mut aad = Aad::new("cdv.answer.v1");
    aad.part(name);
    cipher(key.expose())
        .decrypt(
            Nonce::from_slice(&sealed[2..head]),
            Payload {
                msg: &sealed[head..],
                aad: &aad.0,
            },
        )
        .map_err(|_| VaultError::IntegrityFailure)
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this constructor cannot fail for 32 bytes.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The blind index of a citizen id: HMAC-SHA256(index key, "cdv.blind.v1" || id digits).
pub fn blind_index(key: &IndexKey, id: &CitizenId) -> BlindId {
    BlindId(hmac(key.expose(), &[b"cdv.blind.v1", id.as_bytes()]))
}

/// An audit pseudonym: HMAC-SHA256(pseudonym key, "cdv.pseudonym.v1" || per-citizen salt).
pub fn pseudonym(key: &PseudonymKey, salt: &[u8; 32]) -> [u8; 32] {
    hmac(key.expose(), &[b"cdv.pseudonym.v1", salt])
}

/// Compares without an early exit on the first differing byte (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn field(n: &str) -> FieldName {
        FieldName::parse(n).unwrap()
    }

    fn sealer(seed: u8, dek_version: u32) -> FieldSealer {
        FieldSealer::new(
            &DataKey::from_bytes([seed; 32]),
            BlindId([seed.wrapping_add(1); 32]),
            dek_version,
        )
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..2048),
                                version in any::<u64>(), seed in any::<u8>()) {
            let s = sealer(seed, 3);
            let env = s.seal(&field("full_name"), version, &pt).unwrap();
            let back = s.open(&field("full_name"), version, &env).unwrap();
            prop_assert_eq!(back.expose(), &pt[..]);
        }

        #[test]
        fn any_single_bit_flip_is_refused(pt in proptest::collection::vec(any::<u8>(), 1..200),
                                          bit in any::<proptest::sample::Index>()) {
            let s = sealer(9, 1);
            let env = s.seal(&field("phone"), 5, &pt).unwrap();
            let i = bit.index(env.len() * 8);
            let mut bad = env.clone();
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert!(s.open(&field("phone"), 5, &bad).is_err());
        }
    }

    #[test]
    fn envelope_moved_to_another_citizen_field_or_version_is_refused() {
        let dek = DataKey::from_bytes([1; 32]);
        let a = FieldSealer::new(&dek, BlindId([0xaa; 32]), 1);
        let env = a.seal(&field("full_name"), 7, b"Tran Thi B").unwrap();
        // Another citizen (even with the same DEK bytes: the AAD binds the blind id).
        let b = FieldSealer::new(&dek, BlindId([0xbb; 32]), 1);
        assert!(matches!(
            b.open(&field("full_name"), 7, &env),
            Err(VaultError::IntegrityFailure)
        ));
        // Another field.
        assert!(matches!(
            a.open(&field("phone"), 7, &env),
            Err(VaultError::IntegrityFailure)
        ));
        // An older version replayed where version 8 is current.
        assert!(matches!(
            a.open(&field("full_name"), 8, &env),
            Err(VaultError::StaleCiphertext)
        ));
        // A header edited to claim the current version fails authentication.
        let mut forged = env.clone();
        forged[6..14].copy_from_slice(&8u64.to_be_bytes());
        assert!(matches!(
            a.open(&field("full_name"), 8, &forged),
            Err(VaultError::IntegrityFailure)
        ));
        // Another DEK version.
        let a2 = FieldSealer::new(&dek, BlindId([0xaa; 32]), 2);
        assert!(a2.open(&field("full_name"), 7, &env).is_err());
        assert_eq!(
            a.open(&field("full_name"), 7, &env).unwrap().expose(),
            b"Tran Thi B"
        );
    }

    proptest! {
        #[test]
        fn case_bodies_open_only_as_the_case_they_were_sealed_for(
            pt in proptest::collection::vec(any::<u8>(), 0..1024),
            bit in any::<proptest::sample::Index>(),
        ) {
            let s = sealer(5, 2);
            let env = s.seal_case("complaint", "kn-a", &pt).unwrap();
            let opened = s.open_case("complaint", "kn-a", &env).unwrap();
            prop_assert_eq!(opened.expose(), &pt[..]);
            prop_assert!(s.open_case("complaint", "kn-b", &env).is_err());
            prop_assert!(s.open_case("request", "kn-a", &env).is_err());
            prop_assert!(sealer(6, 2).open_case("complaint", "kn-a", &env).is_err());
            prop_assert!(sealer(5, 3).open_case("complaint", "kn-a", &env).is_err());
            let i = bit.index(env.len() * 8);
            let mut bad = env.clone();
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert!(s.open_case("complaint", "kn-a", &bad).is_err());
            // A field envelope is not a case body, nor the reverse.
            let f = s.seal(&field("full_name"), 1, &pt).unwrap();
            prop_assert!(s.open_case("complaint", "kn-a", &f).is_err());
            prop_assert!(s.open(&field("full_name"), 1, &env).is_err());
        }
    }

    #[test]
    fn hundred_thousand_seals_never_repeat_a_nonce() {
        let s = sealer(4, 1);
        let f = field("full_name");
        let mut seen = HashSet::with_capacity(100_000);
        for i in 0..100_000u64 {
            let env = s.seal(&f, i, b"x").unwrap();
            let nonce: [u8; 12] = env[14..26].try_into().unwrap();
            assert!(seen.insert(nonce), "nonce repeated at seal {i}");
        }
    }

    #[test]
    fn dek_and_kek_wrapping_round_trip_and_bind_their_context() {
        let root = RootKey::from_bytes([3; 32]);
        let kek = generate_kek().unwrap();
        let wk = wrap_kek(&root, 2, &kek).unwrap();
        let kek2 = unwrap_kek(&root, 2, &wk).unwrap();
        assert!(matches!(
            unwrap_kek(&RootKey::from_bytes([4; 32]), 2, &wk),
            Err(VaultError::WrongRootKey)
        ));
        assert!(unwrap_kek(&root, 3, &wk).is_err());

        let dek = generate_dek().unwrap();
        let blind = BlindId([5; 32]);
        let wd = wrap_dek(&kek2, 2, &blind, 1, &dek).unwrap();
        assert_eq!(wrapped_dek_kek_version(&wd).unwrap(), 2);
        let dek2 = unwrap_dek(&kek, &blind, 1, &wd).unwrap();
        assert_eq!(dek.expose(), dek2.expose());
        assert!(unwrap_dek(&kek, &BlindId([6; 32]), 1, &wd).is_err());
        assert!(unwrap_dek(&kek, &blind, 2, &wd).is_err());
    }

    #[test]
    fn blind_index_is_keyed_and_deterministic() {
        let id = CitizenId::parse("079203001234").unwrap();
        let k1 = derive_keys(&RootKey::from_bytes([1; 32])).unwrap();
        let k2 = derive_keys(&RootKey::from_bytes([2; 32])).unwrap();
        assert_eq!(blind_index(&k1.index, &id), blind_index(&k1.index, &id));
        assert_ne!(blind_index(&k1.index, &id), blind_index(&k2.index, &id));
        assert_ne!(k1.index.expose(), k1.pseudonym.expose());
        let hex = blind_index(&k1.index, &id).to_string();
        assert!(!hex.contains("079203001234"));
    }
}
