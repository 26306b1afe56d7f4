//! A logical copy of a store: every row as the store holds it (sealed records, grants,
//! consents, cases, the keyring, the spent-use mark), one JSON line each, read back into an
//! empty store. `vaultctl backup` writes it and `restore` reads it; nothing in it is
//! plaintext (records and case bodies stay sealed, citizens are blind ids).

use base64::Engine as _;
use serde_json::{Value, json};

use super::{CaseRow, StoreError, VaultStore, cases, codec};
use crate::case::CaseKind;
use crate::consent::StandingConsent;
use crate::grant::Grant;
use crate::id::BlindId;
use crate::keyring::KeyringRecord;

/// One row of a store.
#[derive(Debug, Clone)]
pub enum Row {
    /// The keyring (wrapped KEKs and keys; the root key is never in a store).
    Keyring(KeyringRecord),
    /// A citizen's sealed record.
    Citizen(BlindId, super::SealedRecord),
    /// A grant, with its state.
    Grant(Box<Grant>),
    /// A standing consent.
    Consent(StandingConsent),
    /// A case (its body sealed).
    Case(CaseRow),
    /// How far the log's spent uses are in the store.
    ReleasedThrough(u64),
}

/// How many rows of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Citizens' records.
    pub citizens: u64,
    /// Grants.
    pub grants: u64,
    /// Standing consents.
    pub consents: u64,
    /// Cases.
    pub cases: u64,
}

impl Counts {
    fn add(&mut self, row: &Row) {
        match row {
            Row::Citizen(..) => self.citizens += 1,
            Row::Grant(_) => self.grants += 1,
            Row::Consent(_) => self.consents += 1,
            Row::Case(_) => self.cases += 1,
            Row::Keyring(_) | Row::ReleasedThrough(_) => {}
        }
    }

    /// As JSON.
    pub fn to_json(self) -> Value {
        json!({"citizens": self.citizens, "grants": self.grants,
               "consents": self.consents, "cases": self.cases})
    }

    /// From `to_json`'s form.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            citizens: v.get("citizens")?.as_u64()?,
            grants: v.get("grants")?.as_u64()?,
            consents: v.get("consents")?.as_u64()?,
            cases: v.get("cases")?.as_u64()?,
        })
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Result<Vec<u8>, StoreError> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| bad("bytes are not base64"))
}

fn bad(why: &str) -> StoreError {
    StoreError::Corrupt(format!("backup row: {why}"))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, StoreError> {
    serde_json::to_value(v).map_err(|_| bad("not encodable"))
}

fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, StoreError> {
    serde_json::from_value(v.clone()).map_err(|_| bad("not readable"))
}

impl Row {
    /// The row as one JSON object (`{"keyring": …}`, `{"citizen": …, "record": …}`, …).
    pub fn to_json(&self) -> Result<Value, StoreError> {
        Ok(match self {
            Self::Keyring(k) => json!({"keyring": to_value(k)?}),
            Self::Citizen(blind, record) => {
                json!({"citizen": blind.to_string(), "record": b64(&codec::encode(record))})
            }
            Self::Grant(g) => json!({"grant": to_value(g)?}),
            Self::Consent(c) => json!({"consent": to_value(c)?}),
            Self::Case(c) => json!({"case": b64(&cases::encode(c)?)}),
            Self::ReleasedThrough(n) => json!({"released_through": n}),
        })
    }

    /// A row from `to_json`'s form; `None` for an object that is not a store row.
    pub fn from_json(v: &Value) -> Result<Option<Self>, StoreError> {
        let Some(o) = v.as_object() else {
            return Err(bad("not an object"));
        };
        Ok(Some(if let Some(k) = o.get("keyring") {
            Self::Keyring(from_value(k)?)
        } else if let Some(c) = o.get("citizen") {
            let blind = c
                .as_str()
                .and_then(|h| {
                    let mut b = [0u8; 32];
                    hex::decode_to_slice(h, &mut b)
                        .ok()
                        .map(|()| BlindId::from_bytes(b))
                })
                .ok_or_else(|| bad("citizen is not a blind id"))?;
            let record = codec::decode(&unb64(o.get("record").unwrap_or(&Value::Null))?)?;
            Self::Citizen(blind, record)
        } else if let Some(g) = o.get("grant") {
            Self::Grant(Box::new(from_value(g)?))
        } else if let Some(c) = o.get("consent") {
            Self::Consent(from_value(c)?)
        } else if let Some(c) = o.get("case") {
            Self::Case(cases::decode(&unb64(c)?)?)
        } else if let Some(n) = o.get("released_through") {
            Self::ReleasedThrough(n.as_u64().ok_or_else(|| bad("released_through"))?)
        } else {
            return Ok(None);
        }))
    }
}

/// Rows read per page.
const PAGE: usize = 1_000;

/// Every row of `store`, handed to `emit` in an order `load` accepts (the keyring first).
/// Rows changed while it runs are seen before or after the change, each whole.
pub fn dump<S: VaultStore>(
    store: &S,
    emit: &mut dyn FnMut(&Row) -> Result<(), StoreError>,
) -> Result<Counts, StoreError> {
    let mut counts = Counts::default();
    let mut put = |row: Row, counts: &mut Counts| -> Result<(), StoreError> {
        counts.add(&row);
        emit(&row)
    };
    let keyring = store
        .keyring()?
        .ok_or_else(|| StoreError::Corrupt("the store has no keyring".into()))?;
    put(Row::Keyring(keyring), &mut counts)?;
    let mut after: Option<BlindId> = None;
    loop {
        let rows = store.citizens_after(after.as_ref(), PAGE)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(*last);
        for (blind, record) in rows {
            let consents = store.consents_of_citizen(&blind)?;
            put(Row::Citizen(blind, record), &mut counts)?;
            for c in consents {
                put(Row::Consent(c), &mut counts)?;
            }
        }
    }
    let mut cursor: Option<String> = None;
    loop {
        let (grants, next) = store.grants_after(cursor.as_deref(), PAGE)?;
        for g in grants {
            put(Row::Grant(Box::new(g)), &mut counts)?;
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    for kind in CaseKind::ALL {
        for c in store.cases_of_kind(kind)? {
            put(Row::Case(c), &mut counts)?;
        }
    }
    if let Some(n) = store.released_through()? {
        put(Row::ReleasedThrough(n), &mut counts)?;
    }
    Ok(counts)
}

/// Stores one row into `store` (an empty one, filled by `dump`'s rows in order).
pub fn load<S: VaultStore>(store: &S, row: Row) -> Result<(), StoreError> {
    match row {
        Row::Keyring(k) => store.put_keyring(&k),
        Row::Citizen(blind, record) => store.put_citizens(&[(blind, record)]),
        Row::Grant(g) => {
            if store.insert_grant(&g)? {
                Ok(())
            } else {
                Err(bad("a grant's verification code is taken twice"))
            }
        }
        Row::Consent(c) => store.put_consent(&c),
        Row::Case(c) => store.put_case(&c),
        Row::ReleasedThrough(n) => store.set_released_through(n),
    }
}
