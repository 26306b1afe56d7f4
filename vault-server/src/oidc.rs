//! Citizen and auditor bearer tokens: ID tokens from the configured OIDC issuer, verified
//! against its JWKS (EdDSA, ES256 or RS256 keys; the algorithm comes from the key, never from
//! the token), with `iss`, `aud`, `exp`, `nbf` and `iat` checked. The dev-mode issuer that
//! signs such tokens for local use is dev mode's (`dev::DevIssuer`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use ring::signature;
use serde_json::Value;

/// Longest bearer token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock leeway for `exp`, `nbf`, `iat`.
pub const LEEWAY_SECS: i64 = 30;

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

pub(crate) fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A verification key from a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JwkKey {
    Ed25519(Vec<u8>),
    Es256(Vec<u8>),
    Rs256 { n: Vec<u8>, e: Vec<u8> },
}

impl JwkKey {
    fn alg(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "EdDSA",
            Self::Es256(_) => "ES256",
            Self::Rs256 { .. } => "RS256",
        }
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => signature::UnparsedPublicKey::new(&signature::ED25519, k)
                .verify(msg, sig)
                .is_ok(),
            Self::Es256(k) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k)
                    .verify(msg, sig)
                    .is_ok()
            }
            Self::Rs256 { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
        }
    }
}

/// A JSON Web Key Set: keys by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: HashMap<String, JwkKey>,
}

impl Jwks {
    /// Parses a JWKS document; keys of other types or without `kid` are skipped, a set with
    /// no usable key is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let list = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let mut keys = HashMap::new();
        for k in list {
            let s = |name: &str| k.get(name).and_then(Value::as_str);
            let (Some(kid), Some(kty)) = (s("kid"), s("kty")) else {
                continue;
            };
            if s("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let key = match (kty, s("crv")) {
                ("OKP", Some("Ed25519")) => s("x").and_then(b64).map(JwkKey::Ed25519),
                ("EC", Some("P-256")) => match (s("x").and_then(b64), s("y").and_then(b64)) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut p = vec![4u8];
                        p.extend_from_slice(&x);
                        p.extend_from_slice(&y);
                        Some(JwkKey::Es256(p))
                    }
                    _ => None,
                },
                ("RSA", _) => match (s("n").and_then(b64), s("e").and_then(b64)) {
                    (Some(n), Some(e)) => Some(JwkKey::Rs256 { n, e }),
                    _ => None,
                },
                _ => None,
            };
            if let Some(key) = key {
                if s("alg").is_some_and(|a| a != key.alg()) {
                    continue;
                }
                keys.insert(kid.to_owned(), key);
            }
        }
        if keys.is_empty() {
            return Err("no usable signing key (EdDSA, ES256 or RS256 with a kid)".into());
        }
        Ok(Self { keys })
    }
}

/// Who a verified bearer token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    /// `sub`: the citizen id, or the auditor's id.
    pub sub: String,
    /// Roles from the configured claim.
    pub roles: Vec<String>,
}

/// Verifies ID tokens of one issuer.
#[derive(Debug)]
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    role_claim: String,
    jwks: RwLock<Arc<Jwks>>,
}

impl OidcVerifier {
    /// A verifier with an initial key set.
    pub fn new(issuer: &str, audience: &str, role_claim: &str, jwks: Jwks) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            role_claim: role_claim.to_owned(),
            jwks: RwLock::new(Arc::new(jwks)),
        }
    }

    /// Replaces the key set (JWKS refresh).
    pub fn set_jwks(&self, jwks: Jwks) {
        if let Ok(mut g) = self.jwks.write() {
            *g = Arc::new(jwks);
        }
    }

    fn keys(&self) -> Arc<Jwks> {
        self.jwks.read().map(|g| Arc::clone(&g)).unwrap_or_default()
    }

    /// Verifies a token at `now` (Unix seconds). Any failure is `None`: callers answer
    /// `bearer_invalid` without saying which check failed.
    pub fn verify(&self, token: &str, now: i64) -> Option<IdClaims> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&b64(h)?).ok()?;
        let header = header.as_object()?;
        for banned in ["crit", "jku", "x5u", "jwk", "x5c"] {
            if header.contains_key(banned) {
                return None;
            }
        }
        if header
            .get("typ")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
        {
            return None; // a grant (access) token is never an ID token
        }
        let kid = header.get("kid")?.as_str()?;
        let keys = self.keys();
        let key = keys.keys.get(kid)?;
        if header.get("alg")?.as_str()? != key.alg() {
            return None;
        }
        let signed_len = h.len() + 1 + c.len();
        if !key.verify(token.get(..signed_len)?.as_bytes(), &b64(s)?) {
            return None;
        }
        let claims: Value = serde_json::from_slice(&b64(c)?).ok()?;
        if claims.get("iss")?.as_str()? != self.issuer {
            return None;
        }
        let aud_ok = match claims.get("aud")? {
            Value::String(a) => *a == self.audience,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(&self.audience)),
            _ => false,
        };
        let exp = claims.get("exp")?.as_i64()?;
        let not_before = |k: &str| {
            claims
                .get(k)
                .is_none_or(|v| v.as_i64().is_some_and(|t| t <= now + LEEWAY_SECS))
        };
        if !aud_ok || exp + LEEWAY_SECS < now || !not_before("nbf") || !not_before("iat") {
            return None;
        }
        let roles = match claims.get(&self.role_claim) {
            Some(Value::String(r)) => vec![r.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Some(IdClaims {
            sub: claims.get("sub")?.as_str()?.to_owned(),
            roles,
        })
    }
}

/// The role claim (array of strings) and the auditor role.
pub const ROLE_CLAIM: &str = "roles";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_with_only_unusable_keys_is_an_error() {
        assert!(Jwks::parse(br#"{"keys":[{"kty":"oct","kid":"a","k":"AA"}]}"#).is_err());
        assert!(Jwks::parse(b"[]").is_err());
        let ok = Jwks::parse(
            br#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},{"kty":"EC","crv":"P-256","kid":"e","x":"AA","y":"AA"}]}"#,
        )
        .unwrap();
        assert_eq!(ok.keys.len(), 1);
    }
}
