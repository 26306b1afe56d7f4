//! Binary encoding of `SealedRecord` values: length-prefixed, versioned, and decoded with
//! bounds checks only, so corrupt bytes become `StoreError::Corrupt`, never a panic.

use super::StoreError;
use std::collections::BTreeMap;

use super::{SealedField, SealedRecord};
use crate::id::FieldName;

const RECORD_FORMAT: u8 = 1;

pub(crate) fn encode(r: &SealedRecord) -> Vec<u8> {
    let size = 1
        + 4
        + 8
        + 32
        + 2
        + r.wrapped_dek.len()
        + 2
        + r.fields
            .iter()
            .map(|(n, f)| 1 + n.as_str().len() + 8 + 4 + f.envelope.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&r.dek_version.to_be_bytes());
    out.extend_from_slice(&r.record_version.to_be_bytes());
    out.extend_from_slice(&r.audit_salt);
    put_len16(&mut out, r.wrapped_dek.len());
    out.extend_from_slice(&r.wrapped_dek);
    put_len16(&mut out, r.fields.len());
    for (name, f) in &r.fields {
        // Field names are at most 64 bytes (FieldName::parse).
        out.push(u8::try_from(name.as_str().len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&f.version.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(f.envelope.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&f.envelope);
    }
    out
}

fn put_len16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("record truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.take(N)?
            .try_into()
            .map_err(|_| StoreError::Corrupt("record truncated".into()))
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Decodes a whole record.
pub(crate) fn decode(bytes: &[u8]) -> Result<SealedRecord, StoreError> {
    decode_fields(bytes, &|_| true)
}

/// Decodes a record keeping only the fields `keep` accepts; the others are bounds-checked
/// and skipped without a copy (the whole encoding is still checked).
pub(crate) fn decode_fields(
    bytes: &[u8],
    keep: &dyn Fn(&str) -> bool,
) -> Result<SealedRecord, StoreError> {
    let mut r = Reader(bytes);
    if r.u8()? != RECORD_FORMAT {
        return Err(StoreError::Corrupt("unknown record format".into()));
    }
    let dek_version = r.u32()?;
    let record_version = r.u64()?;
    let audit_salt = r.array::<32>()?;
    let n = usize::from(r.u16()?);
    let wrapped_dek = r.take(n)?.to_vec();
    let count = r.u16()?;
    let mut fields = BTreeMap::new();
    for _ in 0..count {
        let n = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(n)?)
            .map_err(|_| StoreError::Corrupt("bad field name".into()))?;
        let version = r.u64()?;
        let n = usize::try_from(r.u32()?).map_err(|_| StoreError::Corrupt("bad length".into()))?;
        let envelope = r.take(n)?;
        if !keep(name) {
            continue;
        }
        let name =
            FieldName::parse(name).ok_or_else(|| StoreError::Corrupt("bad field name".into()))?;
        fields.insert(
            name,
            SealedField {
                version,
                envelope: envelope.to_vec(),
            },
        );
    }
    if !r.0.is_empty() {
        return Err(StoreError::Corrupt("trailing bytes in record".into()));
    }
    Ok(SealedRecord {
        dek_version,
        wrapped_dek,
        audit_salt,
        record_version,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SealedRecord {
        SealedRecord {
            dek_version: 2,
            wrapped_dek: vec![1; 70],
            audit_salt: [7; 32],
            record_version: 9,
            fields: BTreeMap::from([
                (
                    FieldName::parse("full_name").unwrap(),
                    SealedField {
                        version: 9,
                        envelope: vec![3; 50],
                    },
                ),
                (
                    FieldName::parse("phone").unwrap(),
                    SealedField {
                        version: 4,
                        envelope: vec![4; 40],
                    },
                ),
            ]),
        }
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }

    #[test]
    fn a_filtered_decode_keeps_only_the_chosen_fields_and_still_checks_the_rest() {
        let enc = encode(&sample());
        let only = decode_fields(&enc, &|n| n == "phone").unwrap();
        let mut want = sample();
        want.fields.retain(|n, _| n.as_str() == "phone");
        assert_eq!(only, want);
        assert!(decode_fields(&enc, &|_| false).unwrap().fields.is_empty());
        // A damaged skipped field is still an error.
        let mut bad = enc.clone();
        bad.truncate(enc.len() - 1);
        assert!(decode_fields(&bad, &|n| n == "full_name").is_err());
        let mut trailing = enc;
        trailing.push(0);
        assert!(decode_fields(&trailing, &|_| false).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(cut in 0usize..200) {
            let enc = encode(&sample());
            let cut = cut.min(enc.len() - 1);
            prop_assert!(decode(&enc[..cut]).is_err());
        }
    }
}
