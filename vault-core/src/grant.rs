//! Grants: the lifecycle (`pending_consent`, `active`, `refused`, `revoked`, `expired`,
//! `exhausted`), verification codes, and the use-counting rule. Storage is the store's; the
//! decisions that create grants are the policy's; this module owns the grant's own rules.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::id::{AgencyId, DossierId, GrantId, PurposeId};

/// 32 characters with no 0/O, 1/I look-alikes: 8 characters carry exactly 40 bits.
pub const CODE_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// A fresh verification code: 8 characters, 40 random bits.
pub fn new_verification_code() -> Result<String, VaultError> {
    let mut b = [0u8; 5];
    crypto::random_bytes(&mut b)?;
    let bits = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    Ok((0..8)
        .rev()
        .map(|i| char::from(CODE_ALPHABET[((bits >> (i * 5)) & 31) as usize]))
        .collect())
}

/// Whether `s` looks like a verification code (without saying whether it exists).
pub fn is_code_shaped(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| CODE_ALPHABET.contains(&b))
}

/// A fresh grant id: `g-` and 32 letters encoding 128 random bits (letters only, so an id
/// never looks like a citizen id or phone number to the audit log's identifier rule).
pub fn new_grant_id() -> Result<String, VaultError> {
    random_letters_id("g-")
}

/// `prefix` and 32 letters encoding 128 random bits.
pub(crate) fn random_letters_id(prefix: &str) -> Result<String, VaultError> {
    const LETTERS: &[u8; 16] = b"abcdefghjkmnpqrs";
    let mut b = [0u8; 16];
    crypto::random_bytes(&mut b)?;
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    for x in b {
        out.push(char::from(LETTERS[usize::from(x >> 4)]));
        out.push(char::from(LETTERS[usize::from(x & 15)]));
    }
    Ok(out)
}

/// Whether `s` has the shape of a grant id (`g-` and 32 lowercase letters, either format):
/// what a refusal may record of a grant id a caller named.
pub fn is_grant_id_shaped(s: &str) -> bool {
    s.len() == 34 && s.starts_with("g-") && s.bytes().skip(2).all(|b| b.is_ascii_lowercase())
}

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Waiting for the citizen's consent (until `consent_expires_at`).
    PendingConsent,
    /// Usable.
    Active,
    /// The citizen refused.
    Refused,
    /// Revoked by the agency, or by the citizen's withdrawal of consent.
    Revoked,
    /// Past its expiry (or its consent request's).
    Expired,
    /// Every use spent.
    Exhausted,
}

impl GrantStatus {
    /// The SPEC spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingConsent => "pending_consent",
            Self::Active => "active",
            Self::Refused => "refused",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Exhausted => "exhausted",
        }
    }
}

/// A grant as stored. Holds no citizen id (only the blind id) and no value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Grant id.
    pub id: GrantId,
    /// The code the citizen can check.
    pub verification_code: String,
    /// The citizen's blind id (hex).
    pub citizen: String,
    /// The agency.
    pub agency: AgencyId,
    /// The official.
    pub official: String,
    /// The official's unit.
    pub unit: Option<String>,
    /// The purpose.
    pub purpose: PurposeId,
    /// The agency's dossier.
    pub dossier_id: DossierId,
    /// Fields and derived answers granted.
    pub fields: Vec<String>,
    /// base64url SHA-256 of the agency certificate.
    pub cert_thumbprint: String,
    /// Status.
    pub status: GrantStatus,
    /// When requested.
    pub created: Timestamp,
    /// Token validity (whole seconds): `iat`/`nbf` and `exp`, fixed when the grant becomes
    /// active.
    pub token_iat: Option<Timestamp>,
    /// Token expiry (a whole second).
    pub token_exp: Option<Timestamp>,
    /// Token lifetime asked for (seconds), applied when the grant becomes active.
    pub ttl_seconds: u32,
    /// Until when the citizen may consent.
    pub consent_expires: Option<Timestamp>,
    /// Releases allowed.
    pub max_uses: u32,
    /// Releases done.
    pub uses: u32,
    /// Emergency access.
    pub break_glass: bool,
    /// Whether an approved grant's token is still to be handed to the agency (once).
    pub token_pending_delivery: bool,
    /// For break-glass grants: the auditor's verdict once reviewed.
    #[serde(default)]
    pub review: Option<String>,
    /// When the auditor reviewed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<Timestamp>,
    /// When it was refused, revoked or used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// The standing consent it was issued under, if any (withdrawing it revokes the grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
}

impl Grant {
    /// The status as of `now`: an active grant past its expiry, or a pending one past its
    /// consent deadline, reads as expired.
    pub fn status_at(&self, now: Timestamp) -> GrantStatus {
        status_at(self.status, self.token_exp, self.consent_expires, now)
    }

    /// The latest moment (seconds) this grant can still be in force, as far as its state
    /// tells: when it was refused, revoked or used up; an active grant's token expiry; a
    /// pending grant's consent deadline plus its TTL (it may be approved until then). It only
    /// moves earlier as the grant changes. Retention counts from here.
    pub fn latest_end_secs(&self) -> i64 {
        let ttl = i64::from(self.ttl_seconds);
        let bound = self
            .consent_expires
            .unwrap_or(self.created)
            .as_secs()
            .saturating_add(1 + ttl);
        let base = self.token_exp.map_or(bound, |exp| exp.as_secs().min(bound));
        self.ended
            .map_or(base, |ended| ended.as_secs().saturating_add(1).min(base))
    }

    /// Ends the grant (`Refused`, `Revoked` or `Exhausted`) at `now`.
    pub fn end(&mut self, status: GrantStatus, now: Timestamp) {
        self.status = status;
        self.ended = Some(now);
    }

    /// Makes a pending (or new) grant active with a token valid from `now`.
    pub fn activate(&mut self, now: Timestamp) {
        self.status = GrantStatus::Active;
        let iat = now.whole_second();
        self.token_iat = Some(iat);
        self.token_exp = Some(iat.plus_secs(i64::from(self.ttl_seconds)));
    }

    /// Spends one use (the caller holds the grant under compare-and-swap).
    pub fn spend(&mut self, now: Timestamp) -> Result<(), VaultError> {
        spend(
            Uses {
                status: &mut self.status,
                uses: &mut self.uses,
                ended: &mut self.ended,
                max_uses: self.max_uses,
                token_exp: self.token_exp,
                consent_expires: self.consent_expires,
            },
            now,
        )
    }

    /// This grant's binding digest (`binding`).
    pub fn binding(&self) -> [u8; 16] {
        binding(&Bound {
            id: &self.id,
            citizen: &self.citizen,
            agency: &self.agency,
            official: &self.official,
            purpose: &self.purpose,
            dossier_id: &self.dossier_id,
            cert_thumbprint: &self.cert_thumbprint,
            fields: &self.fields,
        })
    }

    /// Counts a release found in the audit log whose spent use the store may have lost in a
    /// crash (`vault::uses`). Never refuses and never goes past `max_uses`; a grant it uses
    /// up ends as exhausted at the release's time unless it had already ended.
    pub fn replay_use(&mut self, at: Timestamp) {
        if self.uses >= self.max_uses {
            return;
        }
        self.uses += 1;
        if self.uses == self.max_uses && self.ended.is_none() {
            self.end(GrantStatus::Exhausted, at);
        }
    }
}

/// The status rule: an active grant past its token's expiry, or a pending one past its
/// consent deadline, reads as expired.
fn status_at(
    status: GrantStatus,
    token_exp: Option<Timestamp>,
    consent_expires: Option<Timestamp>,
    now: Timestamp,
) -> GrantStatus {
    match status {
        GrantStatus::Active if token_exp.is_some_and(|e| now.as_secs() > e.as_secs()) => {
            GrantStatus::Expired
        }
        GrantStatus::PendingConsent if consent_expires.is_some_and(|e| now > e) => {
            GrantStatus::Expired
        }
        s => s,
    }
}

/// What the use-counting rule reads and changes, borrowed from a `Grant` or a `GrantState`.
struct Uses<'a> {
    status: &'a mut GrantStatus,
    uses: &'a mut u32,
    ended: &'a mut Option<Timestamp>,
    max_uses: u32,
    token_exp: Option<Timestamp>,
    consent_expires: Option<Timestamp>,
}

/// The use-counting rule: only an active grant (as of `now`) with a use left gives one; the
/// last use ends it as exhausted at `now`.
fn spend(u: Uses<'_>, now: Timestamp) -> Result<(), VaultError> {
    match status_at(*u.status, u.token_exp, u.consent_expires, now) {
        GrantStatus::Active => {}
        GrantStatus::Revoked | GrantStatus::Refused => return Err(VaultError::GrantRevoked),
        GrantStatus::Exhausted => return Err(VaultError::GrantExhausted),
        GrantStatus::Expired => return Err(VaultError::TokenExpired),
        GrantStatus::PendingConsent => return Err(VaultError::GrantRevoked),
    }
    if *u.uses >= u.max_uses {
        return Err(VaultError::GrantExhausted);
    }
    *u.uses += 1;
    if *u.uses == u.max_uses {
        *u.status = GrantStatus::Exhausted;
        *u.ended = Some(now);
    }
    Ok(())
}

/// The fixed facts of a grant that its token also carries.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// Grant id.
    pub id: &'a str,
    /// The citizen's blind id (hex).
    pub citizen: &'a str,
    /// The agency.
    pub agency: &'a str,
    /// The official.
    pub official: &'a str,
    /// The purpose.
    pub purpose: &'a str,
    /// The dossier.
    pub dossier_id: &'a str,
    /// The agency certificate's thumbprint.
    pub cert_thumbprint: &'a str,
    /// The granted fields, in the grant's order.
    pub fields: &'a [String],
}

/// SHA-256 (first 16 bytes) over the length-prefixed fixed facts: stored with the grant's
/// state, so a release can check that its (vault-signed) token describes exactly this grant
/// without reading the grant itself.
pub fn binding(b: &Bound<'_>) -> [u8; 16] {
    let mut buf = Vec::with_capacity(512);
    let mut put = |s: &str| {
        buf.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
    };
    for s in [
        b.id,
        b.citizen,
        b.agency,
        b.official,
        b.purpose,
        b.dossier_id,
        b.cert_thumbprint,
    ] {
        put(s);
    }
    put(&b.fields.len().to_string());
    for f in b.fields {
        put(f);
    }
    let digest = crypto::sha256(&buf);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// A grant's state record as a release reads it, without the grant: what changes (status,
/// uses, times, end, review) and the few fixed facts a release needs that its token does not
/// carry (`max_uses`, consent deadline, break-glass, unit) or that bind the token to the grant
/// (`binding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantState {
    /// Status.
    pub status: GrantStatus,
    /// Releases done.
    pub uses: u32,
    /// Releases allowed.
    pub max_uses: u32,
    /// Token validity start (a whole second).
    pub token_iat: Option<Timestamp>,
    /// Token expiry (a whole second).
    pub token_exp: Option<Timestamp>,
    /// Until when the citizen may consent.
    pub consent_expires: Option<Timestamp>,
    /// When it ended.
    pub ended: Option<Timestamp>,
    /// Break-glass review verdict.
    pub review: Option<String>,
    /// When it was reviewed.
    pub reviewed_at: Option<Timestamp>,
    /// Whether an approved grant's token is still to be handed over.
    pub token_pending_delivery: bool,
    /// Emergency access.
    pub break_glass: bool,
    /// The official's unit.
    pub unit: Option<String>,
    /// `binding` of the grant's fixed facts.
    pub binding: [u8; 16],
}

impl GrantState {
    /// An upper bound of `Grant::latest_end_secs` from the state alone, when it has one: the
    /// token's expiry and the end, whichever is earlier (`None` for a grant that has neither,
    /// a pending one: its deadline needs the grant's TTL). Equal to it wherever a token was
    /// issued, since a token expires no later than the grant's consent window plus its TTL.
    pub fn end_bound_secs(&self) -> Option<i64> {
        let ended = self.ended.map(|t| t.as_secs().saturating_add(1));
        match (self.token_exp.map(Timestamp::as_secs), ended) {
            (Some(exp), Some(end)) => Some(exp.min(end)),
            (exp, end) => exp.or(end),
        }
    }

    /// The state of `g`.
    pub fn of(g: &Grant) -> Self {
        Self {
            status: g.status,
            uses: g.uses,
            max_uses: g.max_uses,
            token_iat: g.token_iat,
            token_exp: g.token_exp,
            consent_expires: g.consent_expires,
            ended: g.ended,
            review: g.review.clone(),
            reviewed_at: g.reviewed_at,
            token_pending_delivery: g.token_pending_delivery,
            break_glass: g.break_glass,
            unit: g.unit.clone(),
            binding: g.binding(),
        }
    }

    /// Spends one use, by the same rule as `Grant::spend`.
    pub fn spend(&mut self, now: Timestamp) -> Result<(), VaultError> {
        spend(
            Uses {
                status: &mut self.status,
                uses: &mut self.uses,
                ended: &mut self.ended,
                max_uses: self.max_uses,
                token_exp: self.token_exp,
                consent_expires: self.consent_expires,
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_eight_unambiguous_characters_and_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..20_000 {
            let c = new_verification_code().unwrap();
            assert!(is_code_shaped(&c), "{c}");
            assert!(!c.contains(['0', 'O', '1', 'I']));
            assert!(seen.insert(c));
        }
        assert_eq!(CODE_ALPHABET.len(), 32, "32^8 = 2^40");
        for _ in 0..1000 {
            let id = new_grant_id().unwrap();
            assert_eq!(id.len(), 34);
            assert!(crate::audit::SafeId::parse(&id).is_ok());
        }
    }
}
