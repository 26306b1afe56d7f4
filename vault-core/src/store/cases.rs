//! The stored form of a citizen's case: what the store may see in the clear to file and find
//! it (its kind, id, owner's blind id, whether it is open, when it was filed, the field a
//! correction is about) and the body the vault sealed under the citizen's key.

use super::StoreError;
use crate::case::CaseKind;
use crate::clock::Timestamp;
use crate::id::BlindId;

/// Encoding version of a case row.
const ROW_V1: u8 = 1;

/// A case at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct CaseRow {
    /// Complaint, correction or request.
    pub kind: CaseKind,
    /// Its id (`CaseKind::id_prefix` and 32 letters).
    pub id: String,
    /// Its citizen's blind id.
    pub citizen: BlindId,
    /// Still waiting for an answer, a decision or completion.
    pub open: bool,
    /// When it was filed.
    pub created: Timestamp,
    /// The catalog field a correction is about (empty for other kinds): the source-of-truth
    /// agency's queue and the disputed mark are found by it without opening the body.
    pub topic: String,
    /// The body, sealed by the vault (`crypto::FieldSealer::seal_case`).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for CaseRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRow")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("open", &self.open)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

pub(crate) fn kind_tag(kind: CaseKind) -> u8 {
    match kind {
        CaseKind::Complaint => b'c',
        CaseKind::Correction => b'f',
        CaseKind::Request => b'r',
        CaseKind::Review => b'v',
    }
}

fn kind_of_tag(tag: u8) -> Option<CaseKind> {
    CaseKind::ALL.into_iter().find(|k| kind_tag(*k) == tag)
}

/// `kind tag || id`: the key of a case.
pub(crate) fn case_key(kind: CaseKind, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(kind_tag(kind));
    k.extend_from_slice(id.as_bytes());
    k
}

/// `blind id || kind tag || id`: a citizen's index row of a case.
pub(crate) fn citizen_key(citizen: &BlindId, kind: CaseKind, id: &str) -> Vec<u8> {
    let mut k = citizen.as_bytes().to_vec();
    k.extend_from_slice(&case_key(kind, id));
    k
}

/// Encodes a row: version, kind, open, created, blind id, topic and id (each length-prefixed),
/// then the sealed body.
pub(crate) fn encode(row: &CaseRow) -> Result<Vec<u8>, StoreError> {
    let too_long = || StoreError::Corrupt("case id or topic too long".into());
    let id_len = u16::try_from(row.id.len()).map_err(|_| too_long())?;
    let topic_len = u16::try_from(row.topic.len()).map_err(|_| too_long())?;
    let mut out = Vec::with_capacity(48 + row.id.len() + row.topic.len() + row.body.len());
    out.push(ROW_V1);
    out.push(kind_tag(row.kind));
    out.push(u8::from(row.open));
    out.extend_from_slice(&row.created.as_millis().to_be_bytes());
    out.extend_from_slice(row.citizen.as_bytes());
    out.extend_from_slice(&id_len.to_be_bytes());
    out.extend_from_slice(row.id.as_bytes());
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(row.topic.as_bytes());
    out.extend_from_slice(&row.body);
    Ok(out)
}

/// Decodes `encode`'s bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<CaseRow, StoreError> {
    let bad = || StoreError::Corrupt("case row unreadable".into());
    let mut r = Reader(bytes);
    if r.take(1)? != [ROW_V1] {
        return Err(bad());
    }
    let kind = kind_of_tag(r.byte()?).ok_or_else(bad)?;
    let open = match r.byte()? {
        0 => false,
        1 => true,
        _ => return Err(bad()),
    };
    let created = Timestamp::from_millis(i64::from_be_bytes(
        r.take(8)?.try_into().map_err(|_| bad())?,
    ));
    let citizen = BlindId::from_bytes(r.take(32)?.try_into().map_err(|_| bad())?);
    let id = r.string()?;
    let topic = r.string()?;
    Ok(CaseRow {
        kind,
        id,
        citizen,
        open,
        created,
        topic,
        body: r.0.to_vec(),
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("case row truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }
    fn string(&mut self) -> Result<String, StoreError> {
        let len = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([len[0], len[1]]));
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| StoreError::Corrupt("case row unreadable".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_truncations_are_refused() {
        let row = CaseRow {
            kind: CaseKind::Correction,
            id: "dc-abc".into(),
            citizen: BlindId::from_bytes([9; 32]),
            open: true,
            created: Timestamp::from_millis(1_800_000_000_123),
            topic: "full_name".into(),
            body: vec![1, 2, 3],
        };
        let bytes = encode(&row).unwrap();
        assert_eq!(decode(&bytes).unwrap(), row);
        for cut in 0..bytes.len() - 3 {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
