//! Binary encoding of a grant's mutable state (status, uses, token times, delivery flag,
//! end time, review): a few dozen bytes that a release compare-and-swaps instead of the whole
//! grant. Decoded with bounds checks only, so corrupt bytes become `StoreCorrupt`.

use crate::error::VaultError;
use crate::grant::{Grant, GrantStatus};

const STATE_FORMAT: u8 = 1;

const PENDING_DELIVERY: u8 = 1;
const HAS_IAT: u8 = 1 << 1;
const HAS_EXP: u8 = 1 << 2;
const HAS_ENDED: u8 = 1 << 3;
const HAS_REVIEW: u8 = 1 << 4;

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

/// The mutable part of `g`: format, status, flags, uses, then the present optional values.
pub(super) fn encode(g: &Grant) -> Vec<u8> {
    let mut flags = 0;
    let mut tail = Vec::with_capacity(24);
    if g.token_pending_delivery {
        flags |= PENDING_DELIVERY;
    }
    for (bit, value) in [
        (HAS_IAT, g.token_iat),
        (HAS_EXP, g.token_exp),
        (HAS_ENDED, g.ended_ms),
    ] {
        if let Some(v) = value {
            flags |= bit;
            tail.extend_from_slice(&v.to_be_bytes());
        }
    }
    if let Some(r) = &g.review {
        flags |= HAS_REVIEW;
        tail.extend_from_slice(r.as_bytes());
    }
    let mut out = Vec::with_capacity(7 + tail.len());
    out.extend_from_slice(&[STATE_FORMAT, status_byte(g.status), flags]);
    out.extend_from_slice(&g.uses.to_be_bytes());
    out.extend_from_slice(&tail);
    out
}

/// Overwrites `g`'s mutable fields with the encoded state.
pub(super) fn apply(bytes: &[u8], g: &mut Grant) -> Result<(), VaultError> {
    let corrupt = || VaultError::StoreCorrupt("grant state unreadable".into());
    let (head, mut rest) = bytes.split_at_checked(7).ok_or_else(corrupt)?;
    if head[0] != STATE_FORMAT {
        return Err(corrupt());
    }
    let status = status_of(head[1]).ok_or_else(corrupt)?;
    let flags = head[2];
    if flags & !(PENDING_DELIVERY | HAS_IAT | HAS_EXP | HAS_ENDED | HAS_REVIEW) != 0 {
        return Err(corrupt());
    }
    let uses = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    let mut take = |bit: u8| -> Result<Option<i64>, VaultError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        let (v, after) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
        rest = after;
        Ok(Some(i64::from_be_bytes(*v)))
    };
    let (iat, exp, ended) = (take(HAS_IAT)?, take(HAS_EXP)?, take(HAS_ENDED)?);
    let review = if flags & HAS_REVIEW != 0 {
        Some(String::from_utf8(rest.to_vec()).map_err(|_| corrupt())?)
    } else if rest.is_empty() {
        None
    } else {
        return Err(corrupt());
    };
    g.status = status;
    g.uses = uses;
    g.token_pending_delivery = flags & PENDING_DELIVERY != 0;
    g.token_iat = iat;
    g.token_exp = exp;
    g.ended_ms = ended;
    g.review = review;
    Ok(())
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
            pending in any::<bool>(),
            iat in proptest::option::of(any::<i64>()),
            exp in proptest::option::of(any::<i64>()),
            ended in proptest::option::of(any::<i64>()),
            review in proptest::option::of(".{0,40}"),
        ) {
            let mut g = sample();
            (g.status, g.uses, g.token_pending_delivery) = (st, uses, pending);
            (g.token_iat, g.token_exp, g.ended_ms, g.review) = (iat, exp, ended, review);
            let bytes = encode(&g);
            let mut back = sample();
            apply(&bytes, &mut back).unwrap();
            prop_assert_eq!(&back, &g);
        }

        #[test]
        fn corrupt_state_is_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut g = sample();
            let _ = apply(&bytes, &mut g);
        }
    }

    #[test]
    fn truncated_or_unknown_states_are_refused() {
        let mut g = sample();
        g.ended_ms = Some(5);
        g.review = Some("justified".into());
        let bytes = encode(&g);
        assert_eq!(bytes.len(), 7 + 24 + 9, "a few dozen bytes");
        for cut in 0..7 + 24 {
            assert!(apply(&bytes[..cut], &mut sample()).is_err(), "cut at {cut}");
        }
        for (at, value) in [(0, 2), (1, 9), (2, 0x80)] {
            let mut bad = bytes.clone();
            bad[at] = value;
            assert!(apply(&bad, &mut sample()).is_err(), "byte {at} = {value}");
        }
        let mut trailing = encode(&sample());
        trailing.push(0);
        assert!(apply(&trailing, &mut sample()).is_err());
    }
}
