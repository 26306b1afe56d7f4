//! Citizen and auditor bearer tokens: ID tokens from the configured OIDC issuer, verified
//! against its JWKS (EdDSA, ES256 or RS256 keys; the algorithm comes from the key, never from
//! the token) through `jsonwebtoken` with the vault's `ring` provider, with `iss`, `aud`,
//! `exp`, `nbf` and `iat` checked and the header held to an allow-list. The dev-mode issuer that
//! signs such tokens for local use is dev mode's (`dev::DevIssuer`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use vault_core::token::jose;

/// Longest bearer token accepted.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock leeway for `exp`, `nbf`, `iat`.
pub const LEEWAY_SECS: i64 = 30;

pub(crate) fn b64(s: &str) -> Option<Vec<u8>> {
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

    /// The key as `jsonwebtoken` verifies with it, and the one algorithm it verifies.
    fn decoding(&self) -> (Algorithm, DecodingKey) {
        match self {
            Self::Ed25519(k) => (Algorithm::EdDSA, DecodingKey::from_ed_der(k)),
            Self::Es256(point) => (Algorithm::ES256, DecodingKey::from_ec_der(point)),
            Self::Rs256 { n, e } => (Algorithm::RS256, DecodingKey::from_rsa_raw_components(n, e)),
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
    /// `nonce`, when the token has one (an ID token from a login).
    pub nonce: Option<String>,
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
        self.verify_for(token, now, &self.audience)
    }

    /// `verify` with another expected audience (the portal's OpenID client id).
    pub fn verify_for(&self, token: &str, now: i64, audience: &str) -> Option<IdClaims> {
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
        b64(s)?;
        // Signature, issuer and audience by `jsonwebtoken` (the algorithm pinned by the key);
        // every claim is checked again below, and the times against the given clock.
        let (alg, decoding) = key.decoding();
        jose::check(token, &decoding, alg, &self.issuer, audience, &[]).ok()?;
        let claims: Value = serde_json::from_slice(&b64(c)?).ok()?;
        if claims.get("iss")?.as_str()? != self.issuer {
            return None;
        }
        let aud_ok = match claims.get("aud")? {
            Value::String(a) => a == audience,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(audience)),
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
            nonce: claims
                .get("nonce")
                .and_then(Value::as_str)
                .map(str::to_owned),
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

    /// A 2048-bit RSA key for tests only (PKCS#1 DER, base64 in lines).
    const TEST_RSA_KEY: &[&str] = &[
        "MIIEowIBAAKCAQEA2O2E/+e32gz9Iz92fJCkXKnGfOsTAazdxtyZfIjuego7Cd01/VTLkdso6/e5fzrQdvgQG+Iv",
        "WsM3vLegJYFCXN5hyK29srMmPBzNxe0yS8D0Ka9XezCJQ37dirixFWuF+lOiciH6gihqSh2AkU3hZB1NL9Qcou6F",
        "ikVMMz8pQDoyKDNpZj6oYi1WN8MepTGgUK9+LFT78oxbdE1ujxO8CtyEUhk7ZYUvJjIciYH0eQK64rCBgwVSTUZg",
        "duJ4BH+cPmCmniIILaKuaw7n/Wf8yYkiqG9lU8pba9sLnDGPJlWWXKbXfxBF2Fs62I6q9qo8M0y4cSz8PG17htVZ",
        "y0P/TwIDAQABAoIBABqrMLOpUB/9gs1nivCLc7l0odNPrxmAoA9HpZL63p6gTVvMF0wataAr2l8QKHzsxR4rJwfW",
        "ic3VvC92P7j8qCT0rf7W5UBn5+ZyABY6L/nCMgJB7TZW5DkpCqF4TUT94A3DZHA1ny+LOm38LIcwlOoS9B9SK2cY",
        "fdBe7pxKQo8Dnpt4KCpU3XvIWwwhL1hp8zjokojgRPwhpt49YpMt2lfE2NptjPTzZuVS4Kdp7VEFTt1LJlsNl1hG",
        "UZqPDg0Ck7tHnguZi4vJ0uo+ZZ8wyeZEDRIHszYlygraIHSz8oCy0nyr0gcVe8MmFbS8u4Acbv8GRwwcQzeCdckF",
        "bYhHo5ECgYEA8T7S1bplj1KJfK1gdY4FSflVVwHE0zpWreo0vhn+hI/1gg0BP2XD1XAD+A75+seuagwCf9uhRLM0",
        "zYU+pN8Jxw1QSRzHaabXJDE+JfTUYDdwainCdppGc2fGkvBW06zBiS1kzCsLYGFcXQXtPJFCQPnVZAPEL5TD7nEE",
        "NMh0JdkCgYEA5jH0p0q3EwDm9gatJ4/vcFYmuq1JNodCEdIGG4xb/eL0dgtRAXrd2zKlCkGTCojMVA91bcXlKx+v",
        "+CWRoYONxDqmAjZ6AcbWw/TTNXLIYnyegjkRG2c4uVHzo7K8inWgyW12APD267xk3UnMquXmmIVleIKHazZmTww/",
        "EE3KzWcCgYEAkXQJdqfN+B4Rm0SFthsNAU79r1n3rEuuW2mspznRBWgu5Fym9eyLqLLDEdslyZh/hpz7HM/1ahCK",
        "s6e0339Cy+sxDwP1D7RyXvX5vLTjH6gNdVT8VLor5AUb6xhRoYq1ndnqvlbtowzQvZ2HLk9+nOKFUKocrXuKrsch",
        "fBmoPfECgYBIGn23qP+PREkT5yN1sPAfD90xu/WiztszGcYv+tcVv3EzSHgnLoUvk71+aOvV8OOPsQfnSoVt7I8B",
        "+0KShNJzFKvLJaUxyUacOqOtqjZ6Iu7De3yQSNTLt4/JRsMn25Bxh4fe45t0W558chFZtol0XNRb2wbv3ipNuFhI",
        "kxVjIQKBgD0uIi8zsXV0gIBJ8wtMVDymnjAH5kDCc86PEeu4TSkeTXKFUZD4qJYwnD737bmHplrh7F8+pWgmHGp6",
        "blinjxRkmvxuLuWCbfnX/11SsfzTlm7wiENuGGfo6ANU/fNPZ3dONUVojKYYBfHXAKZEeZrwG/L/ekNoMurpgBpv",
        "xFy8",
    ];

    fn b64std(lines: &[&str]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(lines.concat())
            .unwrap()
    }

    const NOW: i64 = 1_795_000_000;

    fn claims() -> Value {
        serde_json::json!({"iss": "https://id.example", "aud": "vault", "sub": "079123456789",
                           "exp": NOW + 300, "iat": NOW, "roles": ["citizen"]})
    }

    /// A compact JWS of `header` and `claims` signed by `sign`.
    fn token(header: &Value, claims: &Value, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", enc(&sig))
    }

    fn verifier(jwks: &Value) -> OidcVerifier {
        OidcVerifier::new(
            "https://id.example",
            "vault",
            ROLE_CLAIM,
            Jwks::parse(jwks.to_string().as_bytes()).unwrap(),
        )
    }

    #[test]
    fn rs256_and_es256_id_tokens_verify_and_the_algorithm_comes_from_the_key() {
        use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let rsa = RsaKeyPair::from_der(&b64std(TEST_RSA_KEY)).unwrap();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let point = ec.public_key().as_ref();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r", "use": "sig",
             "n": enc(&public.n),
             "e": enc(&public.e)},
            {"kty": "EC", "crv": "P-256", "kid": "e", "x": enc(&point[1..33]), "y": enc(&point[33..])},
        ]});
        let v = verifier(&jwks);
        let rs = |m: &[u8]| {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
                .unwrap();
            sig
        };
        let es = |m: &[u8]| ec.sign(&rng, m).unwrap().as_ref().to_vec();
        let good_rs = token(
            &serde_json::json!({"alg": "RS256", "kid": "r", "typ": "JWT"}),
            &claims(),
            &rs,
        );
        let good_es = token(
            &serde_json::json!({"alg": "ES256", "kid": "e"}),
            &claims(),
            &es,
        );
        for t in [&good_rs, &good_es] {
            let got = v.verify(t, NOW).expect("verifies");
            assert_eq!(
                (got.sub.as_str(), got.roles.clone()),
                ("079123456789", vec!["citizen".to_owned()])
            );
        }
        // The header's alg must be the key's: RS256 signature under an ES256 kid, and so on.
        let refused = |header: Value, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
            v.verify(&token(&header, &claims(), sign), NOW).is_none()
        };
        assert!(refused(
            serde_json::json!({"alg": "ES256", "kid": "r"}),
            &rs
        ));
        assert!(refused(
            serde_json::json!({"alg": "RS256", "kid": "e"}),
            &es
        ));
        assert!(refused(
            serde_json::json!({"alg": "HS256", "kid": "r"}),
            &rs
        ));
        // A signature by the other key, a wrong issuer or audience, expired, a crit header.
        assert!(
            v.verify(
                &token(
                    &serde_json::json!({"alg": "ES256", "kid": "e"}),
                    &claims(),
                    &|m| {
                        let other = EcdsaKeyPair::generate_pkcs8(
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            &rng,
                        )
                        .unwrap();
                        EcdsaKeyPair::from_pkcs8(
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            other.as_ref(),
                            &rng,
                        )
                        .unwrap()
                        .sign(&rng, m)
                        .unwrap()
                        .as_ref()
                        .to_vec()
                    }
                ),
                NOW
            )
            .is_none()
        );
        for (k, bad) in [
            ("iss", serde_json::json!("https://evil.example")),
            ("aud", serde_json::json!("other")),
            ("exp", serde_json::json!(NOW - 60)),
        ] {
            let mut c = claims();
            c[k] = bad;
            assert!(
                v.verify(
                    &token(&serde_json::json!({"alg": "RS256", "kid": "r"}), &c, &rs),
                    NOW
                )
                .is_none(),
                "{k}"
            );
        }
        assert!(
            v.verify(
                &token(
                    &serde_json::json!({"alg": "RS256", "kid": "r", "crit": ["b64"]}),
                    &claims(),
                    &rs
                ),
                NOW
            )
            .is_none()
        );
        assert!(
            v.verify(&good_rs, NOW + 400).is_none(),
            "expired by the given clock"
        );
    }
}
