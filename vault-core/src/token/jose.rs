//! `jsonwebtoken`'s cryptography over `ring`, the one crypto stack of the workspace: EdDSA
//! signing (grant tokens), and EdDSA, ES256 and RS256 verification (grant tokens, and the ID
//! tokens of OpenID providers such as VNeID). The crate ships no `ring` backend; this is its
//! `CryptoProvider`, installed before the crate is first used (`ensure`). Anything else —
//! another algorithm, a key of another family, a malformed key — is an error, never a panic.
//!
//! The crate's own time checks read the wall clock, so callers turn them off and check
//! times against the clock they are given.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind, new_error};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, Ed25519KeyPair, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use zeroize::Zeroizing;

/// The provider.
static RING: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(new_error(ErrorKind::InvalidKeyFormat)),
        extract_ec_public_key_coordinates: |_, _| Err(new_error(ErrorKind::InvalidKeyFormat)),
        compute_digest,
    },
};

/// Installs the provider as the process's default, once. Every use of `jsonwebtoken` in the
/// workspace goes through a function that calls this first: the crate's fallback provider,
/// with neither of its own backends compiled in, panics.
pub fn ensure() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Only this crate installs a provider; a second install is refused, not a failure.
        let _ = RING.install_default();
    });
}

/// The PKCS#8 (RFC 8410) document of an Ed25519 seed, as `EncodingKey::from_ed_der` takes it.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(48));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(seed);
    der
}

/// Why `check` refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not a compact JWS, or its parts do not decode.
    Malformed,
    /// The signature does not verify with the key (or the key cannot verify `alg`).
    Signature,
    /// `iss` is not the expected issuer.
    Issuer,
    /// `aud` does not name the expected audience.
    Audience,
    /// A required claim is missing or of the wrong type, or the claims do not have the
    /// shape of claims (a member twice).
    Claims,
}

/// Checks a compact JWS with `jsonwebtoken`: the header's `alg` must be `alg` (pinned by the
/// caller from the key, never taken from the header), the signature must verify with `key`,
/// each of `required` (`iss`, `aud`, `sub`, `exp`, `nbf`) must be present, `iss` must be
/// `issuer` and `aud` must name `audience`. Times are not checked here (the crate would
/// read the wall clock): the caller checks them against its clock.
pub fn check(
    raw: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
    required: &[&str],
) -> Result<(), Failure> {
    ensure();
    let mut v = jsonwebtoken::Validation::new(alg);
    (v.validate_exp, v.validate_nbf) = (false, false);
    v.leeway = 0;
    v.set_required_spec_claims(required);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<serde::de::IgnoredAny>(raw, key, &v)
        .map(drop)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => Failure::Signature,
            ErrorKind::InvalidIssuer => Failure::Issuer,
            ErrorKind::InvalidAudience => Failure::Audience,
            // JSON that parses but has the wrong shape for the claims (a duplicated member).
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::Json(_) => Failure::Claims,
            _ => Failure::Malformed,
        })
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
    };
    ring::digest::digest(alg, data).as_ref().to_vec()
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(EdSigner(pair)))
}

struct EdSigner(Ed25519KeyPair);

impl Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let bad_key = |kind| Err(new_error(kind));
    let verifier = match (alg, key.family(), key.kind()) {
        (Algorithm::EdDSA, AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(k)) => {
            if k.len() != 32 {
                return bad_key(ErrorKind::InvalidEddsaKey);
            }
            RingVerifier::Public(Algorithm::EdDSA, k.clone())
        }
        (Algorithm::ES256, AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(k)) => {
            // An uncompressed P-256 point, as `DecodingKey::from_ec_components` makes it.
            if k.len() != 65 || k.first() != Some(&0x04) {
                return bad_key(ErrorKind::InvalidEcdsaKey);
            }
            RingVerifier::Public(Algorithm::ES256, k.clone())
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            RingVerifier::Rsa {
                n: n.clone(),
                e: e.clone(),
            }
        }
        _ => return bad_key(ErrorKind::InvalidAlgorithm),
    };
    Ok(Box::new(verifier))
}

/// A public key and the algorithm it verifies.
enum RingVerifier {
    /// Ed25519 (32 bytes) or P-256 (65 bytes, uncompressed).
    Public(Algorithm, Vec<u8>),
    /// RSA, 2048 to 8192 bits, PKCS#1 v1.5 with SHA-256.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match self {
            Self::Public(Algorithm::ES256, k) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k).verify(msg, sig)
            }
            Self::Public(_, k) => UnparsedPublicKey::new(&ED25519, k).verify(msg, sig),
            Self::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
            }
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Public(alg, _) => *alg,
            Self::Rsa { .. } => Algorithm::RS256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn claims() -> serde_json::Value {
        serde_json::json!({"sub": "a", "iss": "i", "aud": "v", "exp": 1, "nbf": 0})
    }

    /// Validation with the crate's wall-clock checks off, as every caller sets it.
    fn validation(alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        (v.validate_exp, v.validate_nbf) = (false, false);
        v.set_audience(&["v"]);
        v
    }

    #[test]
    fn eddsa_signs_and_verifies_and_a_flipped_bit_or_another_key_fails() {
        ensure();
        let seed = [7u8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let key = EncodingKey::from_ed_der(&ed25519_pkcs8(&seed));
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(), &key).unwrap();
        let public = DecodingKey::from_ed_der(pair.public_key().as_ref());
        let got = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &public,
            &validation(Algorithm::EdDSA),
        )
        .unwrap();
        assert_eq!(got.claims, claims());
        // The signature's last character changed: refused.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&bad, &public, &validation(Algorithm::EdDSA))
                .is_err()
        );
        let other = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
        let other = DecodingKey::from_ed_der(other.public_key().as_ref());
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &other,
                &validation(Algorithm::EdDSA)
            )
            .is_err()
        );
    }

    #[test]
    fn es256_verifies_and_a_key_of_another_family_or_shape_is_refused_without_panic() {
        ensure();
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let header = jsonwebtoken::crypto::sign(
            b"x",
            &EncodingKey::from_ed_der(&ed25519_pkcs8(&[1; 32])),
            Algorithm::ES256,
        );
        assert!(header.is_err(), "only EdDSA signs");
        // An ES256 token signed with ring directly.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(br#"{"alg":"ES256"}"#),
            b64.encode(claims().to_string())
        );
        let sig = pair.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", b64.encode(sig.as_ref()));
        let point = pair.public_key().as_ref();
        let key =
            DecodingKey::from_ec_components(&b64.encode(&point[1..33]), &b64.encode(&point[33..]))
                .unwrap();
        jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation(Algorithm::ES256))
            .unwrap();
        // The same token against keys that cannot verify it: errors, never panics.
        for wrong in [
            DecodingKey::from_ed_der(&[1, 2, 3]),
            DecodingKey::from_ec_der(&[4, 1]),
            DecodingKey::from_rsa_raw_components(&[1], &[1]),
            DecodingKey::from_secret(b"hmac"),
        ] {
            for alg in [
                Algorithm::ES256,
                Algorithm::EdDSA,
                Algorithm::RS256,
                Algorithm::HS256,
            ] {
                let _ = jsonwebtoken::decode::<serde_json::Value>(&token, &wrong, &validation(alg));
            }
        }
    }
}
