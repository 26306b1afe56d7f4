//! Idempotency keys: a request retried with the caller's `Idempotency-Key` answers what the
//! first one answered, without running again (concurrent retries wait for the first); the
//! same key with another request is refused (`idempotency_conflict`, audited). The request
//! is remembered as an HMAC under the answer key, not a plain hash of values. Keys are stored by name only (an HMAC of the caller
//! and the key: a key that holds an identifier never reaches the disk), answers sealed
//! (AES-256-GCM under a key derived from the root key) and deleted by the retention sweep
//! once older than the retention. A grant request's key remembers its grant, deleted with it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Vault;
use super::refusal::{Attempt, Caller};
use crate::clock::Timestamp;
use crate::crypto;
use crate::error::VaultError;
use crate::store::{Remembered, RememberedAnswer, VaultStore};

/// A caller's `Idempotency-Key`: 1–128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key, if `s` is 1–128 visible ASCII characters.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(s.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An answer, and whether it was remembered from an earlier request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered<T> {
    /// Made by this request.
    Fresh(T),
    /// The first request's answer, replayed.
    Replayed(T),
}

impl<T> Answered<T> {
    /// The answer, whichever it is.
    pub fn into_inner(self) -> T {
        match self {
            Self::Fresh(t) | Self::Replayed(t) => t,
        }
    }

    /// Whether it was replayed.
    pub fn replayed(&self) -> bool {
        matches!(self, Self::Replayed(_))
    }
}

/// An idempotent call: who asks, what they try (for the audit of a conflict), their key and
/// the request's bytes (hashed: the same key must come with the same request).
#[derive(Debug, Clone, Copy)]
pub struct Once<'a> {
    /// The caller, as authenticated.
    pub caller: Caller<'a>,
    /// What they try; a named citizen also scopes the key (one key cannot replay onto
    /// another citizen's record).
    pub attempt: Attempt<'a>,
    /// Their key; without one the call simply runs.
    pub key: Option<&'a IdempotencyKey>,
    /// Everything that makes the request what it is (method, ids, body).
    pub request: &'a [u8],
}

impl<S: VaultStore> Vault<S> {
    /// Runs `run` once per caller and key (`Once`): a retry with the same request answers
    /// the first successful answer again (`Answered::Replayed`) without running; another
    /// request under the key is refused with `IdempotencyConflict`, audited. A failed
    /// `run` is not remembered (a retry runs again).
    pub fn once<T, F>(
        &self,
        call: Once<'_>,
        now: Timestamp,
        run: F,
    ) -> Result<Answered<T>, VaultError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, VaultError>,
    {
        let Some(key) = call.key else {
            return run().map(Answered::Fresh);
        };
        let name = self.answer_name(call.caller, call.attempt, key);
        let hash = crypto::request_mac(self.keyring().answer_key(), call.request);
        // One call per name at a time: a concurrent retry waits and then replays what the
        // first answered, instead of running the change a second time.
        let _one = self.answer_order.lock(&hex::encode(name))?;
        if let Some(r) = self.store.remembered(&name)? {
            return self.replay(&call, &name, &r, &hash, now);
        }
        let answer = run()?;
        let text = serde_json::to_vec(&answer)
            .map_err(|_| VaultError::StoreCorrupt("answer unencodable".into()))?;
        let sealed = crypto::seal_answer(self.keyring().answer_key(), &name, &text)?;
        let remembered = Remembered {
            request_hash: hash,
            created: now,
            answer: RememberedAnswer::Sealed(sealed),
        };
        if self.store.remember(&name, &remembered)? {
            return Ok(Answered::Fresh(answer));
        }
        // Another process's call remembered its answer first (one process holds the store
        // today; a shared store may not): answer what it answered.
        match self.store.remembered(&name)? {
            Some(r) => self.replay(&call, &name, &r, &hash, now),
            None => Ok(Answered::Fresh(answer)),
        }
    }

    /// The stored name of `key` for this caller (and the citizen the attempt names).
    fn answer_name(
        &self,
        caller: Caller<'_>,
        attempt: Attempt<'_>,
        key: &IdempotencyKey,
    ) -> [u8; 32] {
        let scope = match (caller, attempt.citizen) {
            (Caller::Agency(a), None) => format!("agency:{a}"),
            (Caller::Agency(a), Some(c)) => format!("agency:{a}:{c}"),
            (Caller::Citizen(c), _) => format!("citizen:{}", self.keyring().blind(c)),
            (Caller::Auditor(a), _) => format!("auditor:{a}"),
        };
        crypto::answer_name(self.keyring().answer_key(), &scope, key.as_str())
    }

    /// The name of a grant request's key (its own scope: a grant request and another call
    /// under one key never meet).
    pub(super) fn grant_answer_name(&self, agency: &str, key: &IdempotencyKey) -> [u8; 32] {
        crypto::answer_name(
            self.keyring().answer_key(),
            &format!("grants:{agency}"),
            key.as_str(),
        )
    }

    fn replay<T: DeserializeOwned>(
        &self,
        call: &Once<'_>,
        name: &[u8; 32],
        r: &Remembered,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Answered<T>, VaultError> {
        let RememberedAnswer::Sealed(sealed) = &r.answer else {
            return Err(VaultError::StoreCorrupt(
                "a grant's key under a call's name".into(),
            ));
        };
        if !crypto::ct_eq(&r.request_hash, hash) {
            return self.refused(
                call.caller,
                call.attempt,
                VaultError::IdempotencyConflict,
                now,
            );
        }
        let text = crypto::open_answer(self.keyring().answer_key(), name, sealed)?;
        serde_json::from_slice(&text)
            .map(Answered::Replayed)
            .map_err(|_| VaultError::StoreCorrupt("remembered answer unreadable".into()))
    }
}
