//! Grant tokens (SPEC §3): RFC 9068 JWT access tokens with RFC 9396 authorization details
//! and an RFC 8705 certificate binding, signed with Ed25519 through `jsonwebtoken` (its
//! cryptography over `ring`: `jose`). A token goes from `UnverifiedToken::parse` to
//! `VerifiedToken` only through `verify`, which pins the algorithm from the key (never from
//! the header), has `jsonwebtoken` check the signature, issuer and audience, and runs on top
//! every stricter check of SPEC §3 that does not need the grant's live state (a header
//! allow-list, `typ`, no `crit`, integer times against the given clock, the binding, the
//! size; the vault checks the grant's state on each use), or through `VerifiedCache`, which
//! skips only the signature of bytes that passed `verify` before or that the vault signed
//! itself.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::id::{AgencyId, DossierId, GrantId, PurposeId};

/// Largest accepted token.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;

pub use crate::error::TokenRejection;

pub mod jose;

/// An Ed25519 token signing key with its `kid`.
pub struct TokenKey {
    kid: String,
    /// The key as `jsonwebtoken` signs with it (its bytes zeroized on drop).
    encoding: jsonwebtoken::EncodingKey,
    public: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({}, <redacted>)", self.kid)
    }
}

impl TokenKey {
    /// From a 32-byte seed; the `kid` is derived from the public key.
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Result<Self, VaultError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| VaultError::StoreCorrupt("bad token key".into()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        let kid = format!("tk-{}", hex::encode(&crypto::sha256(&public)[..8]));
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(&jose::ed25519_pkcs8(seed));
        Ok(Self {
            kid,
            encoding,
            public,
        })
    }

    /// The base64url Ed25519 signature of arbitrary bytes (tests forge tokens with it).
    #[cfg(test)]
    fn sign_bytes(&self, input: &[u8]) -> String {
        jose::ensure();
        jsonwebtoken::crypto::sign(input, &self.encoding, jsonwebtoken::Algorithm::EdDSA).unwrap()
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

/// The current signing key and every key that still verifies (current and not yet retired).
#[derive(Debug)]
pub struct TokenKeys {
    current: TokenKey,
    verifying: BTreeMap<String, [u8; 32]>,
    origin: String,
}

impl TokenKeys {
    /// Keys with `current` signing; `older` public keys (by kid) still verify.
    pub fn new(current: TokenKey, older: &[(String, [u8; 32])], origin: &str) -> Self {
        let mut verifying: BTreeMap<String, [u8; 32]> = older.iter().cloned().collect();
        verifying.insert(current.kid.clone(), current.public);
        Self {
            current,
            verifying,
            origin: origin.to_owned(),
        }
    }

    /// The vault's origin (`iss` and `aud`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The current key id.
    pub fn current_kid(&self) -> &str {
        self.current.kid()
    }

    /// Signs a token for `claims` (which must not contain the header fields).
    pub fn sign(&self, claims: &GrantClaims) -> Result<String, VaultError> {
        jose::ensure();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.current.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims.to_json(&self.origin),
            &self.current.encoding,
        )
        .map_err(|_| VaultError::StoreCorrupt("token signing failed".into()))
    }
}

/// The claims of a grant token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantClaims {
    /// The agency (`sub` and `client_id`).
    pub agency: AgencyId,
    /// The official (`act.sub`).
    pub official: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Not before (seconds).
    pub nbf: i64,
    /// Expires (seconds).
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// The grant.
    pub grant_id: GrantId,
    /// base64url SHA-256 of the agency certificate's DER.
    pub cert_thumbprint: String,
    /// The citizen's blind id (hex).
    pub identifier: String,
    /// Granted fields and derived answers.
    pub datatypes: Vec<String>,
    /// Purpose id.
    pub purpose: PurposeId,
    /// The purpose's legal basis.
    pub legal_basis: String,
    /// The agency's dossier.
    pub dossier_id: DossierId,
}

impl GrantClaims {
    fn to_json(&self, origin: &str) -> Value {
        json!({
            "iss": origin,
            "aud": origin,
            "sub": self.agency,
            "client_id": self.agency,
            "act": {"sub": self.official},
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "jti": self.jti,
            "grant_id": self.grant_id,
            "cnf": {"x5t#S256": self.cert_thumbprint},
            "authorization_details": [{
                "type": format!("{origin}/field-release"),
                "actions": ["read"],
                "identifier": self.identifier,
                "datatypes": self.datatypes,
                "purpose": self.purpose,
                "legal_basis": self.legal_basis,
                "dossier_id": self.dossier_id,
            }],
        })
    }
}

/// base64url(SHA-256(certificate DER)), as in `cnf.x5t#S256`.
pub fn cert_thumbprint(der: &[u8]) -> String {
    B64URL.encode(crypto::sha256(der))
}

/// A token split and decoded, nothing checked yet.
#[derive(Debug)]
pub struct UnverifiedToken {
    header: Header,
    /// The claims, or why their JSON has the wrong shape (reported only after the header
    /// and the signature passed, as every other claim check).
    claims: Result<RawClaims, TokenRejection>,
    /// The token as presented (`jsonwebtoken` verifies these bytes).
    raw: String,
}

/// A token whose signature, header, issuer, audience, times and certificate binding passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    claims: GrantClaims,
}

impl VerifiedToken {
    /// The verified claims.
    pub fn claims(&self) -> &GrantClaims {
        &self.claims
    }
}

/// Deserializes any value (even `null`) as "present".
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The JOSE header: the three members a vault token has, and whether a forbidden one is
/// there (with any value). Typed, not a JSON map: a release decodes a token every time.
#[derive(Debug, Default, Deserialize)]
struct Header {
    alg: Option<Value>,
    typ: Option<Value>,
    kid: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

impl Header {
    fn forbidden(&self) -> bool {
        self.crit || self.jku || self.x5u || self.jwk || self.x5c
    }
}

/// The claims a vault token has, typed; unknown members are ignored. A member of the wrong
/// type (`exp` as a string or a float, a number in `datatypes`) fails the decode, which is
/// `TokenRejection::Claims`.
#[derive(Debug, Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<Value>,
    sub: Option<String>,
    client_id: Option<String>,
    act: Option<Act>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    grant_id: Option<String>,
    cnf: Option<Cnf>,
    authorization_details: Option<Vec<Detail>>,
}

#[derive(Debug, Deserialize)]
struct Act {
    sub: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Cnf {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    #[serde(rename = "type")]
    kind: Option<String>,
    actions: Option<Vec<String>>,
    identifier: Option<String>,
    datatypes: Option<Vec<String>>,
    purpose: Option<String>,
    legal_basis: Option<String>,
    dossier_id: Option<String>,
}

/// Decodes one base64url JSON part into `T`: bad base64, bad JSON or not an object is
/// `Err(Malformed)`; an object whose members have the wrong types is `Ok(Err(shape))`.
fn decode_part<T: serde::de::DeserializeOwned>(
    part: &str,
    shape: TokenRejection,
) -> Result<Result<T, TokenRejection>, TokenRejection> {
    let bytes = B64URL.decode(part).map_err(|_| TokenRejection::Malformed)?;
    // Not an array either: serde would fill a struct from one, by position.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(TokenRejection::Malformed);
    }
    match serde_json::from_slice::<T>(&bytes) {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.is_data() => Ok(Err(shape)),
        Err(_) => Err(TokenRejection::Malformed),
    }
}

impl UnverifiedToken {
    /// Splits and decodes a compact JWT. Only the shape is checked here.
    pub fn parse(raw: &str) -> Result<Self, TokenRejection> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        let mut parts = raw.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed);
        };
        Ok(Self {
            header: decode_part::<Header>(h, TokenRejection::Malformed)??,
            claims: decode_part::<RawClaims>(c, TokenRejection::Claims)?,
            raw: {
                B64URL.decode(s).map_err(|_| TokenRejection::Malformed)?;
                raw.to_owned()
            },
        })
    }

    /// Runs every check. `presented_thumbprint` is base64url SHA-256 of the client
    /// certificate on this connection.
    pub fn verify(
        self,
        keys: &TokenKeys,
        presented_thumbprint: &str,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenRejection> {
        let public = self.check_header(keys)?;
        let key = jsonwebtoken::DecodingKey::from_ed_der(public);
        jose::check(
            &self.raw,
            &key,
            jsonwebtoken::Algorithm::EdDSA,
            &keys.origin,
            &keys.origin,
            // Which claims are missing is `check_claims`'s to say, after issuer and audience.
            &[],
        )
        .map_err(|e| match e {
            jose::Failure::Signature => TokenRejection::Signature,
            jose::Failure::Issuer => TokenRejection::Issuer,
            jose::Failure::Audience => TokenRejection::Audience,
            jose::Failure::Claims => TokenRejection::Claims,
            jose::Failure::Malformed => TokenRejection::Malformed,
        })?;
        self.check_claims(keys, presented_thumbprint, now)
    }

    /// The header checks; returns the verifying key its `kid` names (still current).
    fn check_header<'k>(&self, keys: &'k TokenKeys) -> Result<&'k [u8], TokenRejection> {
        let h = &self.header;
        if h.forbidden() {
            return Err(TokenRejection::ForbiddenHeader);
        }
        // The algorithm is pinned by the key: every vault token key is Ed25519.
        if h.alg.as_ref().and_then(Value::as_str) != Some("EdDSA") {
            return Err(TokenRejection::Algorithm);
        }
        if h.typ.as_ref().and_then(Value::as_str) != Some("at+jwt") {
            return Err(TokenRejection::Type);
        }
        let kid = h
            .kid
            .as_ref()
            .and_then(Value::as_str)
            .ok_or(TokenRejection::MissingKid)?;
        keys.verifying
            .get(kid)
            .map(<[u8; 32]>::as_slice)
            .ok_or(TokenRejection::UnknownKid)
    }

    /// Every check of the claims (issuer, audience, times, binding, authorization details).
    fn check_claims(
        self,
        keys: &TokenKeys,
        presented_thumbprint: &str,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenRejection> {
        let c = self.claims?;
        if c.iss.as_deref() != Some(keys.origin.as_str()) {
            return Err(TokenRejection::Issuer);
        }
        let aud_ok = match &c.aud {
            Some(Value::String(a)) => a == &keys.origin,
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str() == Some(keys.origin.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenRejection::Audience);
        }
        let (Some(exp), Some(nbf), Some(iat)) = (c.exp, c.nbf, c.iat) else {
            return Err(TokenRejection::Claims);
        };
        let now_s = now.as_secs();
        if now_s > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenRejection::Expired);
        }
        if nbf > now_s.saturating_add(LEEWAY_SECS) {
            return Err(TokenRejection::NotYetValid);
        }
        let sub = c.sub.ok_or(TokenRejection::Claims)?;
        if c.client_id.as_deref() != Some(sub.as_str()) {
            return Err(TokenRejection::Claims);
        }
        let thumb = c
            .cnf
            .and_then(|cnf| cnf.x5t_s256)
            .ok_or(TokenRejection::Claims)?;
        if !crypto::ct_eq(thumb.as_bytes(), presented_thumbprint.as_bytes()) {
            return Err(TokenRejection::Binding);
        }
        let details = match c.authorization_details {
            Some(list) if list.len() == 1 => list.into_iter().next(),
            _ => None,
        }
        .ok_or(TokenRejection::Claims)?;
        let kind_ok = details
            .kind
            .as_deref()
            .is_some_and(|t| t.strip_prefix(keys.origin.as_str()) == Some("/field-release"));
        if !kind_ok || details.actions.as_deref() != Some(&["read".to_owned()][..]) {
            return Err(TokenRejection::Claims);
        }
        let need = |v: Option<String>| v.ok_or(TokenRejection::Claims);
        Ok(VerifiedToken {
            claims: GrantClaims {
                agency: AgencyId::new(sub),
                official: need(c.act.and_then(|a| a.sub))?,
                iat,
                nbf,
                exp,
                jti: need(c.jti)?,
                grant_id: GrantId::new(need(c.grant_id)?),
                cert_thumbprint: thumb,
                identifier: need(details.identifier)?,
                datatypes: details.datatypes.ok_or(TokenRejection::Claims)?,
                purpose: PurposeId::new(need(details.purpose)?),
                legal_basis: need(details.legal_basis)?,
                dossier_id: DossierId::new(need(details.dossier_id)?),
            },
        })
    }
}

/// Entries a `VerifiedCache` holds before it drops expired ones (and, if still full, every
/// other one).
pub const VERIFIED_CACHE_LIMIT: usize = 100_000;

/// Signatures already checked, so a token's later uses skip the Ed25519 verification: maps
/// SHA-256 of the exact token bytes to its `exp` (40 bytes an entry, ~6 MB when full; an
/// earlier version kept the decoded claims, ~600 bytes an entry, and the server's memory
/// grew by ~60 MB as it filled). A hit still runs every other check on the re-parsed token
/// (header, a still-current `kid`, issuer, audience, times, certificate binding), so a
/// retired key or a different client certificate is refused as before.
#[derive(Debug)]
pub struct VerifiedCache {
    seen: std::sync::RwLock<std::collections::HashMap<[u8; 32], i64>>,
    limit: usize,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        Self::with_limit(VERIFIED_CACHE_LIMIT)
    }
}

impl VerifiedCache {
    /// A cache that holds at most `limit` entries.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            seen: std::sync::RwLock::default(),
            limit: limit.max(1),
        }
    }

    /// Verifies `raw`: the signature only if these exact bytes have not passed before.
    pub fn verify(
        &self,
        raw: &str,
        keys: &TokenKeys,
        presented_thumbprint: &str,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenRejection> {
        let key = crypto::sha256(raw.as_bytes());
        let known = self.seen.read().is_ok_and(|c| c.contains_key(&key));
        let token = UnverifiedToken::parse(raw)?;
        if known {
            token.check_header(keys)?;
            return token.check_claims(keys, presented_thumbprint, now);
        }
        let verified = token.verify(keys, presented_thumbprint, now)?;
        self.insert(key, verified.claims.exp, now);
        Ok(verified)
    }

    /// Signs `claims` with `keys` and remembers the token as checked: the vault's own
    /// signature needs no Ed25519 verification on the token's first use (every other check
    /// still runs then). Besides `verify`, the only way into the cache, so it holds nothing
    /// but bytes that passed `verify` or that `keys` signed.
    pub fn sign(
        &self,
        keys: &TokenKeys,
        claims: &GrantClaims,
        now: Timestamp,
    ) -> Result<String, VaultError> {
        let raw = keys.sign(claims)?;
        self.insert(crypto::sha256(raw.as_bytes()), claims.exp, now);
        Ok(raw)
    }

    fn insert(&self, key: [u8; 32], exp: i64, now: Timestamp) {
        if let Ok(mut c) = self.seen.write() {
            if c.len() >= self.limit {
                let s = now.as_secs();
                c.retain(|_, exp| exp.saturating_add(LEEWAY_SECS) >= s);
                if c.len() >= self.limit {
                    // Still full of live tokens: keep every other one (the map's order is
                    // unrelated to age). Dropping all made every live token pay its
                    // signature check again at once, each time the cache filled.
                    let mut keep = false;
                    c.retain(|_, _| {
                        keep = !keep;
                        keep
                    });
                }
            }
            c.insert(key, exp);
        }
    }

    /// Forgets every entry (after the token keys change).
    pub fn clear(&self) {
        if let Ok(mut c) = self.seen.write() {
            c.clear();
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.seen.read().map_or(0, |c| c.len())
    }

    /// No entry held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
