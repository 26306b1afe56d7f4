//! Standing consents: what a citizen agreed to beyond one grant — one agency, one purpose,
//! exactly these fields, until a date. Only the citizen's explicit `remember_days` on an
//! approval creates one; withdrawal ends it and every grant resting on it. Storage is the
//! store's; the decision that a consent covers a request is made here.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::id::{AgencyId, GrantId, PurposeId};

/// The longest a standing consent may last, in days.
pub const MAX_REMEMBER_DAYS: u32 = 365;

/// A consent the citizen asked the vault to keep. Holds no citizen id (only the blind id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingConsent {
    /// Consent id (`c-` and 32 letters).
    pub id: String,
    /// The citizen's blind id (hex).
    pub citizen: String,
    /// The agency it is given to.
    pub agency: AgencyId,
    /// The purpose it is given for.
    pub purpose: PurposeId,
    /// Exactly the fields it covers.
    pub fields: Vec<String>,
    /// When the citizen gave it.
    pub created: Timestamp,
    /// When it ends.
    pub expires: Timestamp,
    /// The grant whose approval created it.
    pub grant_id: GrantId,
    /// When the citizen withdrew it: set while the withdrawal revokes the grants resting
    /// on it; it covers nothing from then on and is deleted once that is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Timestamp>,
}

impl StandingConsent {
    /// Whether it covers a request by `agency` for `purpose` and `fields` at `now`: the same
    /// agency and purpose, every field among those it names, and not yet expired.
    pub fn covers(&self, agency: &str, purpose: &str, fields: &[String], now: Timestamp) -> bool {
        self.agency == agency
            && self.purpose == purpose
            && self.is_live(now)
            && !fields.is_empty()
            && fields.iter().all(|f| self.fields.contains(f))
    }

    /// Whether it is in force at `now`: not expired, not withdrawn.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires && self.withdrawn.is_none()
    }
}

/// The number of days a `remember_days` asks for, checked (1 to `MAX_REMEMBER_DAYS`).
pub fn remember_days(days: u32) -> Result<u32, VaultError> {
    if (1..=MAX_REMEMBER_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(VaultError::Denied(crate::policy::Denial::InvalidRequest))
    }
}

/// A fresh consent id: `c-` and 32 letters (128 random bits).
pub fn new_consent_id() -> Result<String, VaultError> {
    crate::grant::random_letters_id("c-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> StandingConsent {
        StandingConsent {
            id: "c-x".into(),
            citizen: "ab".repeat(32),
            agency: "bhxh-tphcm".into(),
            purpose: "social_insurance_lookup".into(),
            fields: vec!["full_name".into(), "date_of_birth".into()],
            created: Timestamp::from_millis(0),
            expires: Timestamp::from_millis(10_000),
            grant_id: "g-x".into(),
            withdrawn: None,
        }
    }

    fn f(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_standing_consent_covers_exactly_its_agency_purpose_fields_and_time() {
        let c = consent();
        let at = Timestamp::from_millis(5_000);
        assert!(c.covers(
            "bhxh-tphcm",
            "social_insurance_lookup",
            &f(&["full_name"]),
            at
        ));
        assert!(c.covers(
            "bhxh-tphcm",
            "social_insurance_lookup",
            &f(&["date_of_birth", "full_name"]),
            at
        ));
        // One field more than it names: asks again.
        assert!(!c.covers(
            "bhxh-tphcm",
            "social_insurance_lookup",
            &f(&["full_name", "annual_income"]),
            at
        ));
        assert!(!c.covers("other", "social_insurance_lookup", &f(&["full_name"]), at));
        assert!(!c.covers("bhxh-tphcm", "other", &f(&["full_name"]), at));
        assert!(!c.covers("bhxh-tphcm", "social_insurance_lookup", &[], at));
        let after = Timestamp::from_millis(10_000);
        assert!(!c.covers(
            "bhxh-tphcm",
            "social_insurance_lookup",
            &f(&["full_name"]),
            after
        ));
        let withdrawn = StandingConsent {
            withdrawn: Some(Timestamp::from_millis(1)),
            ..c
        };
        assert!(!withdrawn.covers(
            "bhxh-tphcm",
            "social_insurance_lookup",
            &f(&["full_name"]),
            at
        ));
    }

    #[test]
    fn remember_days_is_one_to_a_year() {
        assert!(remember_days(0).is_err());
        assert_eq!(remember_days(1).ok(), Some(1));
        assert_eq!(remember_days(365).ok(), Some(365));
        assert!(remember_days(366).is_err());
    }

    #[test]
    fn consent_ids_are_letters_only() {
        let id = new_consent_id().unwrap_or_default();
        assert!(id.starts_with("c-") && id.len() == 34);
        assert!(id[2..].bytes().all(|b| b.is_ascii_lowercase()));
    }
}
