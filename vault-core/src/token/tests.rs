//! Tests of `token`.

use super::*;
use serde_json::Map;

const ORIGIN: &str = "https://vault.example";

fn key(seed: u8) -> TokenKey {
    TokenKey::from_seed(&Zeroizing::new([seed; 32])).unwrap()
}

fn claims(now: i64) -> GrantClaims {
    GrantClaims {
        agency: "ubnd-phuong-sai-gon".into(),
        official: "can-bo-01".into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "j-1".into(),
        grant_id: "g-1".into(),
        cert_thumbprint: cert_thumbprint(b"agency cert"),
        identifier: "ab".repeat(32),
        datatypes: vec!["full_name".into()],
        purpose: "construction_permit".into(),
        legal_basis: "Luật Xây dựng".into(),
        dossier_id: "HS-1".into(),
    }
}

const NOW: i64 = 1_795_395_723;

fn at(s: i64) -> Timestamp {
    Timestamp::from_millis(s * 1000)
}

/// Re-signs arbitrary header and claims with key `k` (or with HS256 when asked).
fn forge(k: &TokenKey, header: &Value, claims: &Value) -> String {
    let h = B64URL.encode(serde_json::to_vec(header).unwrap());
    let c = B64URL.encode(serde_json::to_vec(claims).unwrap());
    let input = format!("{h}.{c}");
    format!("{input}.{}", k.sign_bytes(input.as_bytes()))
}

fn good_parts(keys: &TokenKeys) -> (Value, Value) {
    (
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.current_kid()}),
        claims(NOW).to_json(ORIGIN),
    )
}

fn check(keys: &TokenKeys, token: &str) -> Result<VerifiedToken, TokenRejection> {
    UnverifiedToken::parse(token)?.verify(keys, &cert_thumbprint(b"agency cert"), at(NOW))
}

#[test]
fn a_good_token_verifies_and_round_trips_its_claims() {
    let keys = TokenKeys::new(key(1), &[], ORIGIN);
    let t = keys.sign(&claims(NOW)).unwrap();
    assert_eq!(check(&keys, &t).unwrap().claims(), &claims(NOW));
    let header: Value =
        serde_json::from_slice(&B64URL.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys.current_kid()})
    );
}

#[test]
fn the_token_battery_is_refused_each_with_its_reason() {
    let k = key(1);
    let keys = TokenKeys::new(key(1), &[], ORIGIN);
    let (h, c) = good_parts(&keys);
    let with_h = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut h2 = h.as_object().unwrap().clone();
        f(&mut h2);
        forge(&k, &Value::Object(h2), &c)
    };
    let with_c = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut c2 = c.as_object().unwrap().clone();
        f(&mut c2);
        forge(&k, &h, &Value::Object(c2))
    };
    let none = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"at+jwt","kid":"x"}"#),
        B64URL.encode(serde_json::to_vec(&c).unwrap())
    );
    // HS256 "signed" with the EdDSA public key bytes as the HMAC secret.
    let hs_input = format!(
        "{}.{}",
        B64URL.encode(
            serde_json::to_vec(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": keys.current_kid()})
            )
            .unwrap()
        ),
        B64URL.encode(serde_json::to_vec(&c).unwrap())
    );
    let hs_sig = {
        use hmac::{Hmac, Mac};
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&k.public).unwrap();
        m.update(hs_input.as_bytes());
        m.finalize().into_bytes()
    };
    let hs = format!("{hs_input}.{}", B64URL.encode(hs_sig));
    let good = keys.sign(&claims(NOW)).unwrap();
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let retired_keys = TokenKeys::new(key(2), &[], ORIGIN); // key 1 retired
    let cases: Vec<(&str, String, &TokenKeys, TokenRejection)> = vec![
        ("alg none", none, &keys, TokenRejection::Algorithm),
        (
            "HS256 with the public key",
            hs,
            &keys,
            TokenRejection::Algorithm,
        ),
        (
            "unknown kid",
            with_h(&|m| {
                m.insert("kid".into(), json!("tk-unknown"));
            }),
            &keys,
            TokenRejection::UnknownKid,
        ),
        (
            "missing kid",
            with_h(&|m| {
                m.remove("kid");
            }),
            &keys,
            TokenRejection::MissingKid,
        ),
        (
            "typ JWT",
            with_h(&|m| {
                m.insert("typ".into(), json!("JWT"));
            }),
            &keys,
            TokenRejection::Type,
        ),
        (
            "crit",
            with_h(&|m| {
                m.insert("crit".into(), json!(["exp"]));
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "jku",
            with_h(&|m| {
                m.insert("jku".into(), json!("https://evil"));
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "x5u",
            with_h(&|m| {
                m.insert("x5u".into(), json!("https://evil"));
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "jwk",
            with_h(&|m| {
                m.insert("jwk".into(), json!({"kty": "OKP"}));
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "x5c",
            with_h(&|m| {
                m.insert("x5c".into(), json!(["MIIB"]));
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "wrong iss",
            with_c(&|m| {
                m.insert("iss".into(), json!("https://evil"));
            }),
            &keys,
            TokenRejection::Issuer,
        ),
        (
            "wrong aud",
            with_c(&|m| {
                m.insert("aud".into(), json!("https://other"));
            }),
            &keys,
            TokenRejection::Audience,
        ),
        (
            "missing aud",
            with_c(&|m| {
                m.remove("aud");
            }),
            &keys,
            TokenRejection::Audience,
        ),
        (
            "expired",
            with_c(&|m| {
                m.insert("exp".into(), json!(NOW - 31));
            }),
            &keys,
            TokenRejection::Expired,
        ),
        (
            "nbf in the future",
            with_c(&|m| {
                m.insert("nbf".into(), json!(NOW + 31));
            }),
            &keys,
            TokenRejection::NotYetValid,
        ),
        (
            "exp as a string",
            with_c(&|m| {
                m.insert("exp".into(), json!((NOW + 300).to_string()));
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "exp as a float",
            with_c(&|m| {
                m.insert("exp".into(), json!((NOW + 300) as f64 + 0.5));
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "nbf as a string",
            with_c(&|m| {
                m.insert("nbf".into(), json!(NOW.to_string()));
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "nbf as a float",
            with_c(&|m| {
                m.insert("nbf".into(), json!(NOW as f64 + 0.5));
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "over 8 KiB",
            with_c(&|m| {
                m.insert("pad".into(), json!("x".repeat(9000)));
            }),
            &keys,
            TokenRejection::TooLarge,
        ),
        (
            "bad base64",
            good.replacen('.', ".*", 1),
            &keys,
            TokenRejection::Malformed,
        ),
        (
            "bad JSON",
            format!(
                "{}.{}.AAAA",
                B64URL.encode(b"{not json"),
                B64URL.encode(b"{}")
            ),
            &keys,
            TokenRejection::Malformed,
        ),
        ("two parts", "a.b".into(), &keys, TokenRejection::Malformed),
        (
            "claims as an array",
            forge(&k, &h, &json!([ORIGIN, ORIGIN])),
            &keys,
            TokenRejection::Malformed,
        ),
        (
            "crit as null",
            with_h(&|m| {
                m.insert("crit".into(), Value::Null);
            }),
            &keys,
            TokenRejection::ForbiddenHeader,
        ),
        (
            "datatypes holding a number",
            with_c(&|m| {
                m["authorization_details"][0]["datatypes"] = json!(["full_name", 7]);
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "act without sub",
            with_c(&|m| {
                m.insert("act".into(), json!({"name": "x"}));
            }),
            &keys,
            TokenRejection::Claims,
        ),
        (
            "a duplicated claim",
            {
                let body = serde_json::to_string(&c).unwrap();
                let dup = format!("{{\"exp\":1,{}", &body[1..]);
                let input = format!(
                    "{}.{}",
                    B64URL.encode(serde_json::to_vec(&h).unwrap()),
                    B64URL.encode(dup)
                );
                format!("{input}.{}", k.sign_bytes(input.as_bytes()))
            },
            &keys,
            TokenRejection::Claims,
        ),
        (
            // The claims' shape is reported only after the header passed.
            "a wrong-typed exp under an unknown kid",
            forge(
                &k,
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "tk-unknown"}),
                &{
                    let mut c2 = c.clone();
                    c2["exp"] = json!("soon");
                    c2
                },
            ),
            &keys,
            TokenRejection::UnknownKid,
        ),
        (
            "flipped signature",
            String::from_utf8(flipped).unwrap(),
            &keys,
            TokenRejection::Signature,
        ),
        (
            "retired key",
            good.clone(),
            &retired_keys,
            TokenRejection::UnknownKid,
        ),
    ];
    for (name, token, ks, expected) in cases {
        assert_eq!(check(ks, &token).unwrap_err(), expected, "{name}");
    }
    // The right token over another certificate.
    let other = UnverifiedToken::parse(&good).unwrap().verify(
        &keys,
        &cert_thumbprint(b"other cert"),
        at(NOW),
    );
    assert_eq!(other.unwrap_err(), TokenRejection::Binding);
    assert_eq!(TokenRejection::Binding.code(), "token_binding_mismatch");
    assert_eq!(TokenRejection::Expired.code(), "token_expired");
    assert_eq!(TokenRejection::Algorithm.code(), "token_invalid");
}

#[test]
fn leeway_is_thirty_seconds_and_an_old_key_verifies_until_retired() {
    let old = key(1);
    let old_pub = (old.kid().to_owned(), old.public());
    let keys_old = TokenKeys::new(old, &[], ORIGIN);
    let t = keys_old.sign(&claims(NOW)).unwrap();
    let v = |now: i64, ks: &TokenKeys| {
        UnverifiedToken::parse(&t)
            .unwrap()
            .verify(ks, &cert_thumbprint(b"agency cert"), at(now))
    };
    assert!(v(NOW + 300 + 30, &keys_old).is_ok());
    assert_eq!(
        v(NOW + 300 + 31, &keys_old).unwrap_err(),
        TokenRejection::Expired
    );
    assert!(v(NOW - 30, &keys_old).is_ok());
    assert_eq!(
        v(NOW - 31, &keys_old).unwrap_err(),
        TokenRejection::NotYetValid
    );
    // Rotated: key 2 signs, key 1 still verifies; then retired.
    let rotated = TokenKeys::new(key(2), &[old_pub], ORIGIN);
    assert!(v(NOW, &rotated).is_ok());
    assert_ne!(rotated.current_kid(), keys_old.current_kid());
    let retired = TokenKeys::new(key(2), &[], ORIGIN);
    assert_eq!(v(NOW, &retired).unwrap_err(), TokenRejection::UnknownKid);
}

#[test]
fn a_cached_token_skips_only_the_signature() {
    let keys = TokenKeys::new(key(1), &[], ORIGIN);
    let cache = VerifiedCache::with_limit(4);
    let thumb = cert_thumbprint(b"agency cert");
    let t = keys.sign(&claims(NOW)).unwrap();
    let first = cache.verify(&t, &keys, &thumb, at(NOW)).unwrap();
    assert_eq!(cache.len(), 1);
    // A hit returns the same claims.
    assert_eq!(cache.verify(&t, &keys, &thumb, at(NOW)).unwrap(), first);
    // Every other check still runs on a hit.
    let other = cert_thumbprint(b"someone else");
    assert_eq!(
        cache.verify(&t, &keys, &other, at(NOW)).unwrap_err(),
        TokenRejection::Binding
    );
    assert_eq!(
        cache.verify(&t, &keys, &thumb, at(NOW + 331)).unwrap_err(),
        TokenRejection::Expired
    );
    let retired = TokenKeys::new(key(2), &[], ORIGIN);
    assert_eq!(
        cache.verify(&t, &retired, &thumb, at(NOW)).unwrap_err(),
        TokenRejection::UnknownKid
    );
    let other_origin = TokenKeys::new(key(1), &[], "https://elsewhere.example");
    assert_eq!(
        cache
            .verify(&t, &other_origin, &thumb, at(NOW))
            .unwrap_err(),
        TokenRejection::Issuer
    );
    // A token differing from a cached one in any byte is not a hit: its signature is checked.
    let (h, c) = good_parts(&keys);
    let mut forged_claims = c.clone();
    forged_claims["authorization_details"][0]["datatypes"] = json!(["full_name", "ethnicity"]);
    let forged = forge(&key(9), &h, &forged_claims);
    assert_eq!(
        cache.verify(&forged, &keys, &thumb, at(NOW)).unwrap_err(),
        TokenRejection::Signature
    );
    let good_sig = t.rsplit('.').next().unwrap();
    let (hh, cc) = (
        B64URL.encode(serde_json::to_vec(&h).unwrap()),
        B64URL.encode(serde_json::to_vec(&forged_claims).unwrap()),
    );
    let spliced = format!("{hh}.{cc}.{good_sig}");
    assert_eq!(
        cache.verify(&spliced, &keys, &thumb, at(NOW)).unwrap_err(),
        TokenRejection::Signature
    );
    assert_eq!(cache.len(), 1, "refused tokens are never cached");
}

#[test]
fn a_token_the_cache_signed_is_known_on_its_first_use_and_still_fully_checked() {
    let keys = TokenKeys::new(key(1), &[], ORIGIN);
    let cache = VerifiedCache::with_limit(4);
    let thumb = cert_thumbprint(b"agency cert");
    let t = cache.sign(&keys, &claims(NOW), at(NOW)).unwrap();
    assert_eq!(cache.len(), 1, "known before its first use");
    let direct = UnverifiedToken::parse(&t)
        .unwrap()
        .verify(&keys, &thumb, at(NOW))
        .unwrap();
    assert_eq!(cache.verify(&t, &keys, &thumb, at(NOW)).unwrap(), direct);
    assert_eq!(cache.len(), 1);
    let other = cert_thumbprint(b"someone else");
    assert_eq!(
        cache.verify(&t, &keys, &other, at(NOW)).unwrap_err(),
        TokenRejection::Binding
    );
    let retired = TokenKeys::new(key(2), &[], ORIGIN);
    assert_eq!(
        cache.verify(&t, &retired, &thumb, at(NOW)).unwrap_err(),
        TokenRejection::UnknownKid
    );
}

#[test]
fn the_cache_is_bounded_dropping_expired_entries_first() {
    let keys = TokenKeys::new(key(1), &[], ORIGIN);
    let cache = VerifiedCache::with_limit(4);
    let thumb = cert_thumbprint(b"agency cert");
    let token = |jti: &str, exp: i64| {
        let mut c = claims(NOW);
        c.jti = jti.into();
        c.exp = exp;
        keys.sign(&c).unwrap()
    };
    let short = token("a", NOW + 10);
    let b = token("b", NOW + 300);
    for t in [&short, &b, &token("c", NOW + 300), &token("d", NOW + 300)] {
        cache.verify(t, &keys, &thumb, at(NOW)).unwrap();
    }
    assert_eq!(cache.len(), 4);
    // Full at NOW + 60: the expired entry goes, the live ones stay.
    cache
        .verify(&token("e", NOW + 300), &keys, &thumb, at(NOW + 60))
        .unwrap();
    assert_eq!(cache.len(), 4);
    // Full of live entries: half are dropped, then the new one kept.
    cache
        .verify(&token("f", NOW + 300), &keys, &thumb, at(NOW + 60))
        .unwrap();
    assert_eq!(cache.len(), 3);
    assert!(cache.verify(&b, &keys, &thumb, at(NOW + 60)).is_ok());
    cache.clear();
    assert!(cache.is_empty());
}
