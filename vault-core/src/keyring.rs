//! Key hierarchy: the root key source, versioned KEKs wrapped by the root key, derived index
//! and pseudonym keys, and DEK wrapping under the current KEK. Rotation state lives in the
//! persisted `KeyringRecord`; the re-wrap loop itself is in `vault`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::note::LogSigner;
use crate::crypto::{self, DerivedKeys};
use crate::error::VaultError;
use crate::id::{BlindId, CitizenId};
use crate::secret::{DataKey, Kek, PseudonymKey, RootKey};
use crate::token::{TokenKey, TokenKeys};

/// Where the root comes from: a key file (development), or a hardware token whose key never
/// leaves it (PKCS#11, in `vault-server`).
pub trait RootKeySource {
    /// Loads (or connects to) the root.
    fn load(&self) -> Result<Box<dyn Root>, VaultError>;
}

/// The root of the key hierarchy: it wraps and unwraps the keyring's KEKs and seeds. A key
/// in memory (`RootKey`), or one that stays inside a token, which wraps and unwraps for us.
pub trait Root: Send + Sync {
    /// Wraps a 32-byte secret bound to `label`.
    fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError>;
    /// Unwraps what `wrap_secret` made for `label`; anything else is `IntegrityFailure` (or
    /// `WrongRootKey` where the root can tell).
    fn unwrap_secret(&self, label: &str, wrapped: &[u8])
    -> Result<Zeroizing<[u8; 32]>, VaultError>;
    /// Wraps KEK `version`.
    fn wrap_kek(&self, version: u32, kek: &Kek) -> Result<Vec<u8>, VaultError> {
        self.wrap_secret(&format!("kek-v{version}"), kek.expose())
    }
    /// Unwraps KEK `version`.
    fn unwrap_kek(&self, version: u32, wrapped: &[u8]) -> Result<Kek, VaultError> {
        self.unwrap_secret(&format!("kek-v{version}"), wrapped)
            .map(|k| Kek::from_bytes(*k))
    }
    /// The index, pseudonym and answer keys derived from the root itself, where it can (a
    /// key in memory: vaults made with one derive them so); `None` for a token, whose
    /// keyring keeps a wrapped derivation seed instead.
    fn derived_keys(&self) -> Option<Result<DerivedKeys, VaultError>> {
        None
    }
}

impl Root for RootKey {
    fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
        crypto::wrap_secret(self, label, secret)
    }
    fn unwrap_secret(
        &self,
        label: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        crypto::unwrap_secret(self, label, wrapped)
    }
    fn wrap_kek(&self, version: u32, kek: &Kek) -> Result<Vec<u8>, VaultError> {
        crypto::wrap_kek(self, version, kek)
    }
    fn unwrap_kek(&self, version: u32, wrapped: &[u8]) -> Result<Kek, VaultError> {
        crypto::unwrap_kek(self, version, wrapped)
    }
    fn derived_keys(&self) -> Option<Result<DerivedKeys, VaultError>> {
        Some(crypto::derive_keys(self))
    }
}

/// A root key in a file holding 64 hex digits. Refused if group or others may read it.
#[derive(Debug, Clone)]
pub struct FileRootKey(PathBuf);

impl FileRootKey {
    /// The key at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Creates a new random root key file with mode 0600. Never overwrites.
    pub fn generate(path: impl Into<PathBuf>) -> Result<Self, VaultError> {
        let path = path.into();
        let key = crypto::generate_root_key()?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.expose())));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path).map_err(|e| {
            VaultError::RootKeyUnavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                VaultError::RootKeyUnavailable(format!("cannot write {}: {e}", path.display()))
            })?;
        Ok(Self(path))
    }
}

impl RootKeySource for FileRootKey {
    fn load(&self) -> Result<Box<dyn Root>, VaultError> {
        self.read().map(|k| Box::new(k) as Box<dyn Root>)
    }
}

impl FileRootKey {
    fn read(&self) -> Result<RootKey, VaultError> {
        let shown = self.0.display().to_string();
        let meta = fs::metadata(&self.0)
            .map_err(|e| VaultError::RootKeyUnavailable(format!("cannot read {shown}: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(VaultError::RootKeyPermissions { path: shown, mode });
            }
        }
        if meta.len() > 1024 {
            return Err(VaultError::RootKeyUnavailable(format!(
                "{shown} is not a root key file (too large)"
            )));
        }
        let text =
            Zeroizing::new(fs::read_to_string(&self.0).map_err(|e| {
                VaultError::RootKeyUnavailable(format!("cannot read {shown}: {e}"))
            })?);
        parse_root_key_hex(&text)
            .map_err(|why| VaultError::RootKeyUnavailable(format!("{shown}: {why}")))
    }
}

/// A root key held in memory: for tests, and for the test-only environment source.
pub struct InMemoryRootKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for InMemoryRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InMemoryRootKey(<redacted>)")
    }
}

impl InMemoryRootKey {
    /// From raw bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, VaultError> {
        let key =
            parse_root_key_hex(text).map_err(|why| VaultError::RootKeyUnavailable(why.into()))?;
        Ok(Self(Zeroizing::new(*key.expose())))
    }
}

impl RootKeySource for InMemoryRootKey {
    fn load(&self) -> Result<Box<dyn Root>, VaultError> {
        Ok(Box::new(RootKey::from_bytes(*self.0)))
    }
}

fn parse_root_key_hex(text: &str) -> Result<RootKey, &'static str> {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.len() != 64 {
        return Err("expected 64 hex digits (a 256-bit key)");
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(trimmed, bytes.as_mut()).map_err(|_| "expected 64 hex digits")?;
    Ok(RootKey::from_bytes(*bytes))
}

/// The keyring as stored: wrapped KEKs by version and the rotation state. No plaintext keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyringRecord {
    /// The KEK version that wraps new DEKs.
    pub current: u32,
    /// DEKs wrapped under an older KEK than this are refused; older KEKs are deleted.
    pub min_decryption_version: u32,
    /// Wrapped KEKs by version (hex of the `0x03` envelope).
    pub keks: BTreeMap<u32, String>,
    /// Set while a rotation to `current` is re-wrapping DEKs.
    pub rotating_from: Option<u32>,
    /// The audit log's origin (the checkpoint's first line and the log key's name).
    pub log_origin: String,
    /// The audit log's Ed25519 signing seed, wrapped by the root key (hex).
    pub audit_key: String,
    /// Token signing seeds by version, wrapped by the root key (hex). The highest signs; the
    /// others still verify until retired.
    pub token_keys: BTreeMap<u32, String>,
    /// With a root that cannot derive keys itself (a token): the seed the index, pseudonym
    /// and answer keys derive from, wrapped by the root (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_seed: Option<String>,
}

/// The default audit log origin.
pub const DEFAULT_LOG_ORIGIN: &str = "vault.hochiminhcity.gov.vn/audit";
const AUDIT_KEY_LABEL: &str = "audit-log-signing-key";

fn token_label(version: u32) -> String {
    format!("token-signing-key-v{version}")
}

const DERIVATION_LABEL: &str = "key-derivation-seed";

fn new_wrapped_seed(root: &dyn Root, label: &str) -> Result<String, VaultError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    crypto::random_bytes(seed.as_mut())?;
    Ok(hex::encode(root.wrap_secret(label, &seed)?))
}

fn unwrap_seed(
    root: &dyn Root,
    label: &str,
    hex_text: &str,
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let wrapped = hex::decode(hex_text)
        .map_err(|_| VaultError::StoreCorrupt("wrapped key is not hex".into()))?;
    root.unwrap_secret(label, &wrapped)
}

/// The opened keyring: plaintext KEKs and derived keys, zeroized on drop.
pub struct Keyring {
    keks: BTreeMap<u32, Kek>,
    current: u32,
    min_decryption: u32,
    derived: DerivedKeys,
    audit_signer: LogSigner,
    token_seed: Zeroizing<[u8; 32]>,
    token_older: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .field("min_decryption", &self.min_decryption)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A new keyring with KEK version 1.
    pub fn create(root: &dyn Root, log_origin: &str) -> Result<(Self, KeyringRecord), VaultError> {
        let kek = crypto::generate_kek()?;
        let wrapped = root.wrap_kek(1, &kek)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        crypto::random_bytes(seed.as_mut())?;
        let record = KeyringRecord {
            current: 1,
            min_decryption_version: 1,
            keks: BTreeMap::from([(1, hex::encode(wrapped))]),
            rotating_from: None,
            log_origin: log_origin.to_owned(),
            audit_key: hex::encode(root.wrap_secret(AUDIT_KEY_LABEL, &seed)?),
            token_keys: BTreeMap::from([(1, new_wrapped_seed(root, &token_label(1))?)]),
            derivation_seed: match root.derived_keys() {
                Some(_) => None,
                None => Some(new_wrapped_seed(root, DERIVATION_LABEL)?),
            },
        };
        Ok((Self::open(root, &record)?, record))
    }

    /// Opens a stored keyring. A root key that does not unwrap every KEK is `WrongRootKey`,
    /// and nothing is returned half-opened.
    pub fn open(root: &dyn Root, record: &KeyringRecord) -> Result<Self, VaultError> {
        let mut keks = BTreeMap::new();
        for (&version, wrapped_hex) in &record.keks {
            let wrapped = hex::decode(wrapped_hex)
                .map_err(|_| VaultError::StoreCorrupt("keyring entry is not hex".into()))?;
            keks.insert(version, root.unwrap_kek(version, &wrapped)?);
        }
        if !keks.contains_key(&record.current) {
            return Err(VaultError::StoreCorrupt(
                "keyring has no current key".into(),
            ));
        }
        let wrapped_seed = hex::decode(&record.audit_key)
            .map_err(|_| VaultError::StoreCorrupt("audit key is not hex".into()))?;
        let seed = root.unwrap_secret(AUDIT_KEY_LABEL, &wrapped_seed)?;
        let audit_signer = LogSigner::from_seed(&record.log_origin, &seed)
            .map_err(|e| VaultError::StoreCorrupt(format!("audit key: {e}")))?;
        let (&token_current, current_hex) = record
            .token_keys
            .last_key_value()
            .ok_or_else(|| VaultError::StoreCorrupt("keyring has no token key".into()))?;
        let token_seed = unwrap_seed(root, &token_label(token_current), current_hex)?;
        let mut token_older = Vec::new();
        for (&v, h) in record.token_keys.range(..token_current) {
            let k = TokenKey::from_seed(&unwrap_seed(root, &token_label(v), h)?)?;
            token_older.push((k.kid().to_owned(), k.public()));
        }
        Ok(Self {
            keks,
            current: record.current,
            min_decryption: record.min_decryption_version,
            derived: match (root.derived_keys(), &record.derivation_seed) {
                (_, Some(seed)) => {
                    crypto::derive_keys_from(&*unwrap_seed(root, DERIVATION_LABEL, seed)?)?
                }
                (Some(keys), None) => keys?,
                (None, None) => {
                    return Err(VaultError::StoreCorrupt(
                        "keyring has no derivation seed for a root that cannot derive keys".into(),
                    ));
                }
            },
            audit_signer,
            token_seed,
            token_older,
        })
    }

    /// Adds KEK version `current + 1`, makes it current and marks the rotation in progress.
    pub fn begin_rotation(
        root: &dyn Root,
        record: &KeyringRecord,
    ) -> Result<KeyringRecord, VaultError> {
        if record.rotating_from.is_some() {
            return Err(VaultError::RotationInProgress);
        }
        let next = record
            .current
            .checked_add(1)
            .ok_or_else(|| VaultError::StoreCorrupt("key version overflow".into()))?;
        let kek = crypto::generate_kek()?;
        let mut rec = record.clone();
        rec.keks
            .insert(next, hex::encode(root.wrap_kek(next, &kek)?));
        rec.rotating_from = Some(record.current);
        rec.current = next;
        Ok(rec)
    }

    /// Ends a rotation: every DEK is under `current`, so older KEKs are deleted.
    pub fn finish_rotation(record: &KeyringRecord) -> KeyringRecord {
        let mut rec = record.clone();
        rec.keks.retain(|&v, _| v >= rec.current);
        rec.min_decryption_version = rec.current;
        rec.rotating_from = None;
        rec
    }

    /// The KEK version that wraps new DEKs.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// The oldest KEK version still accepted.
    pub fn min_decryption_version(&self) -> u32 {
        self.min_decryption
    }

    /// The blind index of a citizen id.
    pub fn blind(&self, id: &CitizenId) -> BlindId {
        crypto::blind_index(&self.derived.index, id)
    }

    /// The audit-pseudonym key.
    pub fn pseudonym_key(&self) -> &PseudonymKey {
        &self.derived.pseudonym
    }

    /// The key of remembered idempotent answers.
    pub(crate) fn answer_key(&self) -> &crate::secret::AnswerKey {
        &self.derived.answers
    }

    /// The audit log's signing key.
    pub fn audit_signer(&self) -> &LogSigner {
        &self.audit_signer
    }

    /// The token keys: the newest signs, older unretired ones verify. `origin` is the vault's.
    pub fn token_keys(&self, origin: &str) -> Result<TokenKeys, VaultError> {
        Ok(TokenKeys::new(
            TokenKey::from_seed(&self.token_seed)?,
            &self.token_older,
            origin,
        ))
    }

    /// Adds a new token signing key; the previous ones keep verifying until retired.
    pub fn rotate_token_key(
        root: &dyn Root,
        record: &KeyringRecord,
    ) -> Result<KeyringRecord, VaultError> {
        let next = record.token_keys.keys().last().copied().unwrap_or(0) + 1;
        let mut rec = record.clone();
        rec.token_keys
            .insert(next, new_wrapped_seed(root, &token_label(next))?);
        Ok(rec)
    }

    /// Retires every token key but the newest: tokens they signed stop verifying.
    pub fn retire_old_token_keys(record: &KeyringRecord) -> KeyringRecord {
        let mut rec = record.clone();
        if let Some(&newest) = rec.token_keys.keys().last() {
            rec.token_keys.retain(|&v, _| v == newest);
        }
        rec
    }

    /// Wraps a DEK under the current KEK.
    pub fn wrap_dek(
        &self,
        blind: &BlindId,
        dek_version: u32,
        dek: &DataKey,
    ) -> Result<Vec<u8>, VaultError> {
        let kek = self
            .keks
            .get(&self.current)
            .ok_or(VaultError::KeyRetired(self.current))?;
        crypto::wrap_dek(kek, self.current, blind, dek_version, dek)
    }

    /// Unwraps a DEK under whichever live KEK wrapped it.
    pub fn unwrap_dek(
        &self,
        blind: &BlindId,
        dek_version: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, VaultError> {
        let v = crypto::wrapped_dek_kek_version(wrapped)?;
        if v < self.min_decryption {
            return Err(VaultError::KeyRetired(v));
        }
        let kek = self.keks.get(&v).ok_or(VaultError::KeyRetired(v))?;
        crypto::unwrap_dek(kek, blind, dek_version, wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_key_file_is_created_0600_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let src = FileRootKey::generate(&p).unwrap();
        let k1 = src.read().unwrap();
        let k2 = src.read().unwrap();
        assert_eq!(k1.expose(), k2.expose());
        assert!(FileRootKey::generate(&p).is_err(), "never overwrites");
    }

    #[cfg(unix)]
    #[test]
    fn root_key_file_readable_by_others_is_refused_with_a_clear_message() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        FileRootKey::generate(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = FileRootKey::new(&p).read().unwrap_err();
        assert_eq!(err.code(), "root_key_insecure");
        let msg = err.to_string();
        assert!(msg.contains("644") && msg.contains("0600"), "{msg}");
    }

    #[test]
    fn malformed_root_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        fs::write(&p, "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(
            FileRootKey::new(&p).read().unwrap_err().code(),
            "root_key_unavailable"
        );
    }

    #[test]
    fn wrong_root_key_does_not_open_the_keyring() {
        let root = RootKey::from_bytes([1; 32]);
        let (_, rec) = Keyring::create(&root, DEFAULT_LOG_ORIGIN).unwrap();
        let err = Keyring::open(&RootKey::from_bytes([2; 32]), &rec).unwrap_err();
        assert!(matches!(err, VaultError::WrongRootKey));
    }

    #[test]
    fn token_keys_rotate_and_old_ones_verify_until_retired() {
        let root = RootKey::from_bytes([1; 32]);
        let (ring1, rec1) = Keyring::create(&root, DEFAULT_LOG_ORIGIN).unwrap();
        let kid1 = ring1.token_keys("o").unwrap().current_kid().to_owned();
        let rec2 = Keyring::rotate_token_key(&root, &rec1).unwrap();
        let ring2 = Keyring::open(&root, &rec2).unwrap();
        assert_ne!(ring2.token_keys("o").unwrap().current_kid(), kid1);
        assert_eq!(ring2.token_older.len(), 1);
        assert_eq!(ring2.token_older[0].0, kid1);
        let ring3 = Keyring::open(&root, &Keyring::retire_old_token_keys(&rec2)).unwrap();
        assert!(ring3.token_older.is_empty());
    }

    #[test]
    fn rotation_adds_a_version_and_retires_the_old_one_when_finished() {
        let root = RootKey::from_bytes([1; 32]);
        let (ring1, rec1) = Keyring::create(&root, DEFAULT_LOG_ORIGIN).unwrap();
        let blind = BlindId([9; 32]);
        let dek = crypto::generate_dek().unwrap();
        let w1 = ring1.wrap_dek(&blind, 1, &dek).unwrap();

        let rec2 = Keyring::begin_rotation(&root, &rec1).unwrap();
        assert!(matches!(
            Keyring::begin_rotation(&root, &rec2),
            Err(VaultError::RotationInProgress)
        ));
        let ring2 = Keyring::open(&root, &rec2).unwrap();
        assert_eq!(ring2.current_version(), 2);
        // Old DEKs still open during the rotation.
        assert_eq!(
            ring2.unwrap_dek(&blind, 1, &w1).unwrap().expose(),
            dek.expose()
        );
        let w2 = ring2.wrap_dek(&blind, 1, &dek).unwrap();

        let rec3 = Keyring::finish_rotation(&rec2);
        assert_eq!(rec3.keks.keys().copied().collect::<Vec<_>>(), vec![2]);
        let ring3 = Keyring::open(&root, &rec3).unwrap();
        assert!(matches!(
            ring3.unwrap_dek(&blind, 1, &w1),
            Err(VaultError::KeyRetired(1))
        ));
        assert_eq!(
            ring3.unwrap_dek(&blind, 1, &w2).unwrap().expose(),
            dek.expose()
        );
    }

    /// A root like a token's: it wraps and unwraps but cannot derive keys.
    struct TokenLike(RootKey);

    impl Root for TokenLike {
        fn wrap_secret(&self, label: &str, secret: &[u8; 32]) -> Result<Vec<u8>, VaultError> {
            crypto::wrap_secret(&self.0, label, secret)
        }
        fn unwrap_secret(
            &self,
            label: &str,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
            crypto::unwrap_secret(&self.0, label, wrapped)
        }
    }

    #[test]
    fn a_root_that_cannot_derive_keys_keeps_a_wrapped_derivation_seed() {
        let id = CitizenId::parse("079090001111").unwrap();
        let root = TokenLike(RootKey::from_bytes([9; 32]));
        let (ring, rec) = Keyring::create(&root, DEFAULT_LOG_ORIGIN).unwrap();
        assert!(rec.derivation_seed.is_some());
        let again = Keyring::open(&root, &rec).unwrap();
        assert_eq!(ring.blind(&id), again.blind(&id));
        assert!(Keyring::open(&TokenLike(RootKey::from_bytes([8; 32])), &rec).is_err());
        let rotated = Keyring::begin_rotation(&root, &rec).unwrap();
        let ring2 = Keyring::open(&root, &rotated).unwrap();
        assert_eq!(
            ring2.blind(&id),
            ring.blind(&id),
            "rotation keeps the blind index"
        );
        // A root key in memory derives its keys itself, as vaults made before do: no seed,
        // and the stored record is unchanged.
        let (soft, soft_rec) =
            Keyring::create(&RootKey::from_bytes([9; 32]), DEFAULT_LOG_ORIGIN).unwrap();
        assert!(soft_rec.derivation_seed.is_none());
        assert!(
            !serde_json::to_string(&soft_rec)
                .unwrap()
                .contains("derivation_seed")
        );
        assert_ne!(soft.blind(&id), ring.blind(&id));
    }
}
