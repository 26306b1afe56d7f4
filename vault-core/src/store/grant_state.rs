//! Binary encoding of a grant's state record: what changes (status, uses, token times,
//! delivery flag, end time, review) and the fixed facts a release needs without the grant
//! (`max_uses`, consent deadline, break-glass, unit, the binding digest): under a hundred
//! bytes that a release reads and compare-and-swaps instead of the grant. Decoded with
//! bounds checks only, so corrupt bytes become `StoreError::Corrupt`.

use super::StoreError;
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::grant::{Grant, GrantState, GrantStatus};

/// The record's first byte: 2 (a review carries its time). Records of format 1 (a review
/// without its time) are still read; any other byte is refused.
const FORMAT: u8 = 2;
const FORMAT_UNTIMED_REVIEW: u8 = 1;

const PENDING_DELIVERY: u8 = 1;
const HAS_IAT: u8 = 1 << 1;
const HAS_EXP: u8 = 1 << 2;
const HAS_ENDED: u8 = 1 << 3;
const HAS_REVIEW: u8 = 1 << 4;
const BREAK_GLASS: u8 = 1 << 5;
const HAS_CONSENT: u8 = 1 << 6;
const HAS_UNIT: u8 = 1 << 7;

/// The stored byte of a status. An exhaustive match (not a table) so a new status cannot be
/// stored without a byte of its own; `status_of` is its inverse (tested by the round trip).
fn status_byte(s: GrantStatus) -> u8 {
    match s {
        GrantStatus::PendingConsent => 0,
        GrantStatus::Active => 1,
        GrantStatus::Refused => 2,
        GrantStatus::Revoked => 3,
        GrantStatus::Expired => 4,
        GrantStatus::Exhausted => 5,
    }
}

fn status_of(b: u8) -> Option<GrantStatus> {
    Some(match b {
        0 => GrantStatus::PendingConsent,
        1 => GrantStatus::Active,
        2 => GrantStatus::Refused,
        3 => GrantStatus::Revoked,
        4 => GrantStatus::Expired,
        5 => GrantStatus::Exhausted,
        _ => return None,
    })
}

/// The state record of `g`.
pub(crate) fn encode(g: &Grant) -> Vec<u8> {
    encode_state(&GrantState::of(g))
}

/// Format, status, flags, uses, max_uses, binding, then the present optional
/// values (iat, exp, ended, consent deadline, unit with a 2-byte length, review to the end).
pub(crate) fn encode_state(st: &GrantState) -> Vec<u8> {
    let mut flags = 0;
    let mut tail = Vec::with_capacity(48);
    if st.token_pending_delivery {
        flags |= PENDING_DELIVERY;
    }
    if st.break_glass {
        flags |= BREAK_GLASS;
    }
    for (bit, value) in [
        (HAS_IAT, st.token_iat),
        (HAS_EXP, st.token_exp),
        (HAS_ENDED, st.ended),
        (HAS_CONSENT, st.consent_expires),
    ] {
        if let Some(v) = value {
            flags |= bit;
            tail.extend_from_slice(&v.as_millis().to_be_bytes());
        }
    }
    if let Some(u) = &st.unit {
        flags |= HAS_UNIT;
        // Units are identifiers of at most 64 characters (SafeId).
        tail.extend_from_slice(&u16::try_from(u.len()).unwrap_or(u16::MAX).to_be_bytes());
        tail.extend_from_slice(u.as_bytes());
    }
    if let Some(r) = &st.review {
        flags |= HAS_REVIEW;
        let at = st.reviewed_at.map_or(i64::MIN, Timestamp::as_millis);
        tail.extend_from_slice(&at.to_be_bytes());
        tail.extend_from_slice(r.as_bytes());
    }
    let mut out = Vec::with_capacity(27 + tail.len());
    out.extend_from_slice(&[FORMAT, status_byte(st.status), flags]);
    out.extend_from_slice(&st.uses.to_be_bytes());
    out.extend_from_slice(&st.max_uses.to_be_bytes());
    out.extend_from_slice(&st.binding);
    out.extend_from_slice(&tail);
    out
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("grant state unreadable".into())
}

fn take<'a, const N: usize>(rest: &mut &'a [u8]) -> Result<&'a [u8; N], StoreError> {
    let (v, after) = rest.split_first_chunk::<N>().ok_or_else(corrupt)?;
    *rest = after;
    Ok(v)
}

fn decode(bytes: &[u8]) -> Result<GrantState, StoreError> {
    let mut rest = bytes;
    let [format, status, flags] = *take::<3>(&mut rest)?;
    if format != FORMAT && format != FORMAT_UNTIMED_REVIEW {
        return Err(corrupt());
    }
    let status = status_of(status).ok_or_else(corrupt)?;
    let uses = u32::from_be_bytes(*take(&mut rest)?);
    let max_uses = u32::from_be_bytes(*take(&mut rest)?);
    let binding = *take::<16>(&mut rest)?;
    let mut opt = |bit: u8| -> Result<Option<Timestamp>, StoreError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        Ok(Some(Timestamp::from_millis(i64::from_be_bytes(*take(
            &mut rest,
        )?))))
    };
    let (iat, exp, ended) = (opt(HAS_IAT)?, opt(HAS_EXP)?, opt(HAS_ENDED)?);
    let consent = opt(HAS_CONSENT)?;
    let unit = if flags & HAS_UNIT != 0 {
        let n = usize::from(u16::from_be_bytes(*take(&mut rest)?));
        let (u, after) = rest.split_at_checked(n).ok_or_else(corrupt)?;
        rest = after;
        Some(String::from_utf8(u.to_vec()).map_err(|_| corrupt())?)
    } else {
        None
    };
    let (review, reviewed_at) = if flags & HAS_REVIEW != 0 {
        let at = if format == FORMAT {
            Some(i64::from_be_bytes(*take(&mut rest)?))
                .filter(|ms| *ms != i64::MIN)
                .map(Timestamp::from_millis)
        } else {
            None
        };
        (
            Some(String::from_utf8(rest.to_vec()).map_err(|_| corrupt())?),
            at,
        )
    } else if rest.is_empty() {
        (None, None)
    } else {
        return Err(corrupt());
    };
    Ok(GrantState {
        status,
        uses,
        max_uses,
        token_iat: iat,
        token_exp: exp,
        consent_expires: consent,
        ended,
        review,
        reviewed_at,
        token_pending_delivery: flags & PENDING_DELIVERY != 0,
        break_glass: flags & BREAK_GLASS != 0,
        unit,
        binding,
    })
}

/// Runs a grant change and returns the state record to store. A change may touch only the
/// state (the rest of a grant is written once); debug builds check it.
pub(crate) fn change_state(
    g: &mut Grant,
    change: &mut dyn FnMut(&mut Grant) -> Result<(), VaultError>,
) -> Result<Vec<u8>, StoreError> {
    #[cfg(debug_assertions)]
    let before = g.clone();
    change(g).map_err(StoreError::Refused)?;
    let state = encode(g);
    #[cfg(debug_assertions)]
    {
        let mut kept = before;
        apply(&state, &mut kept)?;
        debug_assert_eq!(&kept, g, "a grant change touched a field outside its state");
    }
    Ok(state)
}

/// Overwrites `g`'s mutable fields with the encoded state.
pub(crate) fn apply(bytes: &[u8], g: &mut Grant) -> Result<(), StoreError> {
    let d = decode(bytes)?;
    g.status = d.status;
    g.uses = d.uses;
    g.token_pending_delivery = d.token_pending_delivery;
    g.token_iat = d.token_iat;
    g.token_exp = d.token_exp;
    g.ended = d.ended;
    g.review = d.review;
    g.reviewed_at = d.reviewed_at;
    Ok(())
}

/// The state a release works on.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<GrantState, StoreError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An active grant with three uses.
    fn sample() -> Grant {
        let mut g = super::super::test_grant("g-1", 1_300);
        g.max_uses = 3;
        g
    }

    fn status() -> impl Strategy<Value = GrantStatus> {
        (0u8..6).prop_map(|b| status_of(b).unwrap())
    }

    proptest! {
        #[test]
        fn state_round_trips_and_leaves_the_rest_alone(
            st in status(),
            uses in any::<u32>(),
            max_uses in any::<u32>(),
            pending in any::<bool>(),
            glass in any::<bool>(),
            iat in proptest::option::of(any::<i64>()),
            exp in proptest::option::of(any::<i64>()),
            ended in proptest::option::of(any::<i64>()),
            consent in proptest::option::of(any::<i64>()),
            unit in proptest::option::of("[a-z0-9-]{0,64}"),
            review in proptest::option::of(".{0,40}"),
            reviewed in proptest::option::of((i64::MIN + 1)..),
        ) {
            let mut g = sample();
            (g.status, g.uses, g.max_uses, g.token_pending_delivery) = (st, uses, max_uses, pending);
            let t = |v: Option<i64>| v.map(Timestamp::from_millis);
            (g.token_iat, g.token_exp, g.ended, g.review) = (t(iat), t(exp), t(ended), review);
            (g.break_glass, g.consent_expires, g.unit) = (glass, t(consent), unit);
            g.reviewed_at = if g.review.is_some() { t(reviewed) } else { None };
            let bytes = encode(&g);
            // The whole grant's mutable part comes back onto a grant with the same facts.
            let mut back = g.clone();
            (back.status, back.uses, back.review) = (GrantStatus::Active, 0, None);
            back.reviewed_at = None;
            (back.token_iat, back.token_exp, back.ended) = (None, None, None);
            apply(&bytes, &mut back).unwrap();
            prop_assert_eq!(&back, &g);
            // The release's view is the grant's state, binding included.
            prop_assert_eq!(decode_state(&bytes).unwrap(), GrantState::of(&g));
        }

        #[test]
        fn corrupt_state_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let mut g = sample();
            let _ = apply(&bytes, &mut g);
            let _ = decode_state(&bytes);
        }
    }

    #[test]
    fn truncated_or_unknown_states_are_refused() {
        let mut g = sample();
        g.ended = Some(Timestamp::from_millis(5));
        g.review = Some("justified".into());
        g.unit = Some("phong-tn".into());
        let bytes = encode(&g);
        let fixed = 3 + 4 + 4 + 16;
        assert_eq!(
            bytes.len(),
            fixed + 24 + 2 + 8 + 8 + 9,
            "under a hundred bytes"
        );
        for cut in 0..fixed + 24 + 2 + 8 + 8 {
            assert!(apply(&bytes[..cut], &mut sample()).is_err(), "cut at {cut}");
            assert!(decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for (at, value) in [(0, 3), (0, 0), (1, 9)] {
            let mut bad = bytes.clone();
            bad[at] = value;
            assert!(apply(&bad, &mut sample()).is_err(), "byte {at} = {value}");
        }
        let mut trailing = encode(&sample());
        trailing.push(0);
        assert!(apply(&trailing, &mut sample()).is_err());
    }

    #[test]
    fn a_review_stored_before_reviews_had_a_time_still_reads() {
        let mut g = sample();
        g.review = Some("justified".into());
        g.reviewed_at = Some(Timestamp::from_millis(77));
        let mut old = encode(&g);
        // Format 1: the same record without the review's time.
        old[0] = FORMAT_UNTIMED_REVIEW;
        let at = old.len() - "justified".len() - 8;
        old.drain(at..at + 8);
        let st = decode_state(&old).unwrap();
        assert_eq!(
            (st.review.as_deref(), st.reviewed_at),
            (Some("justified"), None)
        );
        assert_eq!(
            decode_state(&encode(&g)).unwrap().reviewed_at,
            Some(Timestamp::from_millis(77))
        );
    }

    #[test]
    fn the_binding_changes_with_every_fact_a_token_carries() {
        let g = sample();
        let base = g.binding();
        let changes: [fn(&mut Grant); 8] = [
            |g| g.id = format!("{}x", g.id).into(),
            |g| g.citizen.push('x'),
            |g| g.agency = format!("{}x", g.agency).into(),
            |g| g.official.push('x'),
            |g| g.purpose = format!("{}x", g.purpose).into(),
            |g| g.dossier_id = format!("{}x", g.dossier_id).into(),
            |g| g.cert_thumbprint.push('x'),
            |g| g.fields.push("phone".into()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut h = g.clone();
            change(&mut h);
            assert_ne!(h.binding(), base, "fact {i}");
        }
        // Length prefixes: moving a character from one fact to the next changes it too.
        let mut h = g.clone();
        h.agency = format!("{}{}", h.agency, &h.official[..1]).into();
        h.official.remove(0);
        assert_ne!(h.binding(), base);
    }
}
