//! The dev-mode OpenID issuer: an Ed25519 key and its JWKS under `DATA/dev/issuer/`, signing
//! citizen and auditor ID tokens for local use (`vaultctl dev token`). Outside dev mode it
//! does not exist.

use std::path::{Path, PathBuf};

use ring::signature::{self, KeyPair as _};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::oidc::{Jwks, ROLE_CLAIM, enc};

/// The dev-mode issuer: an Ed25519 key and its JWKS under `DATA/dev/issuer/`. Its `Debug`
/// never shows the key.
pub struct DevIssuer {
    /// Token `iss`.
    pub issuer: String,
    /// Token `aud`.
    pub audience: String,
    kid: String,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The dev issuer's `iss`.
pub const DEV_ISSUER: &str = "https://127.0.0.1/dev-issuer";
/// The audience dev tokens are for.
pub const DEV_AUDIENCE: &str = "citizen-data-vault";

impl DevIssuer {
    /// The issuer's directory in a data directory.
    pub fn dir(data: &Path) -> PathBuf {
        data.join("dev").join("issuer")
    }

    /// Loads the dev issuer, creating its key on first use.
    pub fn load_or_create(data: &Path) -> Result<Self, String> {
        let dir = Self::dir(data);
        let key_path = dir.join("signing.pk8");
        let pkcs8 = if key_path.exists() {
            Zeroizing::new(
                std::fs::read(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?,
            )
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let doc = signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| "cannot generate the dev issuer key".to_owned())?;
            let bytes = Zeroizing::new(doc.as_ref().to_vec());
            super::write_private(&key_path, &bytes)?;
            bytes
        };
        let pair = signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| format!("{}: not an Ed25519 PKCS#8 key", key_path.display()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let kid = format!("dev-{}", hex::encode(&digest.as_ref()[..8]));
        let issuer = Self {
            issuer: DEV_ISSUER.into(),
            audience: DEV_AUDIENCE.into(),
            kid,
            pkcs8,
        };
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks_json().to_string())
            .map_err(|e| format!("{}: {e}", jwks_path.display()))?;
        Ok(issuer)
    }

    fn pair(&self) -> Result<signature::Ed25519KeyPair, String> {
        signature::Ed25519KeyPair::from_pkcs8(&self.pkcs8)
            .map_err(|_| "dev issuer key unreadable".to_owned())
    }

    /// The public key set.
    pub fn jwks_json(&self) -> Value {
        let x = self
            .pair()
            .map(|p| enc(p.public_key().as_ref()))
            .unwrap_or_default();
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                         "kid": self.kid, "x": x}]})
    }

    /// The key set, parsed.
    pub fn jwks(&self) -> Result<Jwks, String> {
        Jwks::parse(self.jwks_json().to_string().as_bytes())
    }

    /// Signs an ID token for `sub` with `roles`, valid `ttl` seconds from `now`.
    pub fn sign(&self, sub: &str, roles: &[&str], now: i64, ttl: i64) -> Result<String, String> {
        self.sign_login(sub, roles, now, ttl, None)
    }

    /// `sign` for a login: with the `nonce` the client sent.
    pub fn sign_login(
        &self,
        sub: &str,
        roles: &[&str],
        now: i64,
        ttl: i64,
        nonce: Option<&str>,
    ) -> Result<String, String> {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let mut claims = json!({"iss": self.issuer, "aud": self.audience, "sub": sub,
                                "iat": now, "nbf": now, "exp": now + ttl});
        if !roles.is_empty() {
            claims[ROLE_CLAIM] = json!(roles);
        }
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let signing = format!(
            "{}.{}",
            enc(header.to_string().as_bytes()),
            enc(claims.to_string().as_bytes())
        );
        let sig = self.pair()?.sign(signing.as_bytes());
        Ok(format!("{signing}.{}", enc(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::{MAX_TOKEN_BYTES, OidcVerifier};

    const NOW: i64 = 1_800_000_000;

    fn setup() -> (tempfile::TempDir, DevIssuer, OidcVerifier) {
        let dir = tempfile::tempdir().unwrap();
        let iss = DevIssuer::load_or_create(dir.path()).unwrap();
        let v = OidcVerifier::new(DEV_ISSUER, DEV_AUDIENCE, ROLE_CLAIM, iss.jwks().unwrap());
        (dir, iss, v)
    }

    #[test]
    fn verifies_good_tokens_and_reloads_the_same_key() {
        let (dir, iss, v) = setup();
        let t = iss.sign("079123456789", &[], NOW, 3600).unwrap();
        assert_eq!(v.verify(&t, NOW).unwrap().sub, "079123456789");
        let t = iss.sign("kt-01", &["auditor"], NOW, 3600).unwrap();
        assert_eq!(v.verify(&t, NOW).unwrap().roles, ["auditor"]);
        let again = DevIssuer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.jwks().unwrap(), iss.jwks().unwrap());
    }

    #[test]
    fn refuses_expired_future_foreign_and_tampered_tokens() {
        let (_d, iss, v) = setup();
        let (_d2, other, _) = setup();
        assert!(
            v.verify(&iss.sign("a", &[], NOW - 7200, 3600).unwrap(), NOW)
                .is_none()
        );
        assert!(
            v.verify(&iss.sign("a", &[], NOW + 600, 3600).unwrap(), NOW)
                .is_none()
        );
        assert!(
            v.verify(&other.sign("a", &[], NOW, 3600).unwrap(), NOW)
                .is_none()
        );
        let t = iss.sign("079123456789", &[], NOW, 3600).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let forged = json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": "079999999999",
                            "exp": NOW + 3600});
        parts[1] = enc(forged.to_string().as_bytes());
        assert!(v.verify(&parts.join("."), NOW).is_none());
        // alg none, wrong audience, crit header, oversize.
        let none = format!("{}.{}.", enc(br#"{"alg":"none","kid":"x"}"#), parts[1]);
        assert!(v.verify(&none, NOW).is_none());
        let wrong_aud = OidcVerifier::new(DEV_ISSUER, "other", ROLE_CLAIM, iss.jwks().unwrap());
        assert!(wrong_aud.verify(&t, NOW).is_none());
        let crit = format!(
            "{}.{}.{}",
            enc(br#"{"alg":"EdDSA","kid":"x","crit":["b"]}"#),
            parts[1],
            parts[2]
        );
        assert!(v.verify(&crit, NOW).is_none());
        assert!(v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), NOW).is_none());
        for junk in ["", ".", "..", "a.b.c", "a.b.c.d", "\u{0}.\u{0}.\u{0}"] {
            assert!(v.verify(junk, NOW).is_none());
        }
    }

    #[test]
    fn the_issuer_key_never_prints() {
        let (_d, iss, _) = setup();
        let shown = format!("{iss:?}");
        assert!(shown.contains("<redacted>"));
        for b in iss.pkcs8.chunks(4) {
            assert!(!shown.contains(&format!("{}, {}", b[0], b.get(1).unwrap_or(&0))));
        }
    }
}
