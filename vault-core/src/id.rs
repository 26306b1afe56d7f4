//! Identifier newtypes: `CitizenId` (personal data: zeroized, never printed), `BlindId`
//! (its keyed blind index, safe to store), `FieldName` (a catalog field name), `SafeId`
//! (an identifier safe to record) and the name newtypes `GrantId`, `AgencyId`, `PurposeId`,
//! `DossierId`.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::VaultError;

/// A validated 12-digit citizen id (CCCD). Personal data: `Debug` is redacted and there is
/// no `Display`; it only ever leaves the core as a `BlindId` or an audit pseudonym.
#[derive(Zeroize, ZeroizeOnDrop, PartialEq, Eq, Clone)]
pub struct CitizenId([u8; 12]);

impl CitizenId {
    /// Parses exactly 12 ASCII digits; anything else is `InvalidCitizenId`.
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let bytes: [u8; 12] = s
            .as_bytes()
            .try_into()
            .map_err(|_| VaultError::InvalidCitizenId)?;
        if bytes.iter().all(u8::is_ascii_digit) {
            Ok(Self(bytes))
        } else {
            Err(VaultError::InvalidCitizenId)
        }
    }

    /// The normalized id bytes (the 12 digits), used only as blind-index input.
    pub(crate) fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The digits, for callers that must show the citizen their own id (never logs).
    pub fn expose(&self) -> &str {
        // Parse guarantees ASCII digits, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CitizenId(<redacted>)")
    }
}

/// HMAC-SHA256 blind index of a citizen id under the vault's index key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlindId(pub(crate) [u8; 32]);

impl BlindId {
    /// From stored bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A compact 128-bit prefix, for in-memory duplicate detection.
    pub fn prefix_u128(&self) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(b)
    }
}

impl fmt::Display for BlindId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlindId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindId({self})")
    }
}

/// A field name: 1–64 characters of `a-z`, `0-9` and `_`, starting with a letter.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct FieldName(String);

/// Whether `s` holds a run of nine or more ASCII digits, as a citizen id or a phone number
/// would: such text is never echoed in a message or recorded as an identifier.
pub fn has_long_digit_run(s: &str) -> bool {
    let mut run = 0usize;
    s.bytes().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 9
    })
}

impl FieldName {
    /// Validates the syntax only; whether the catalog knows it is the policy's business.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An identifier safe to record: 1–64 of `A-Z a-z 0-9 . _ : @ -`, and never a run of nine
/// or more digits (so neither a citizen id nor a phone number fits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafeId(String);

impl SafeId {
    /// Validates `s`.
    pub fn parse(s: &str) -> Result<Self, VaultError> {
        let charset = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
        if s.is_empty() || s.len() > 64 || !charset || has_long_digit_run(s) {
            return Err(VaultError::InvalidIdentifier);
        }
        Ok(Self(s.to_owned()))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `unnamed`: recorded in place of a name that does not fit the rule.
    pub fn unnamed() -> Self {
        Self::fixed("unnamed")
    }

    /// One of the vault's own fixed names (`self`, `vault`, `unnamed`), which fit the rule.
    pub(crate) fn fixed(s: &'static str) -> Self {
        debug_assert!(Self::parse(s).is_ok(), "{s}");
        Self(s.to_owned())
    }
}

impl std::fmt::Display for SafeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_are_found_anywhere() {
        assert!(has_long_digit_run("079090000001"));
        assert!(has_long_digit_run("field_123456789"));
        assert!(!has_long_digit_run("field_12345678_9"));
        assert!(!has_long_digit_run(""));
    }

    #[test]
    fn citizen_id_accepts_exactly_twelve_digits() {
        assert!(CitizenId::parse("079203001234").is_ok());
        for bad in [
            "",
            "07920300123",
            "0792030012345",
            "07920300123a",
            " 79203001234",
            "٠٧٩٢٠٣٠٠١٢٣٤",
        ] {
            assert!(matches!(
                CitizenId::parse(bad),
                Err(VaultError::InvalidCitizenId)
            ));
        }
    }

    #[test]
    fn citizen_id_debug_is_redacted() {
        let id = CitizenId::parse("079203001234").unwrap();
        assert_eq!(format!("{id:?}"), "CitizenId(<redacted>)");
    }

    #[test]
    fn field_names_are_snake_case() {
        assert!(FieldName::parse("full_name").is_some());
        assert!(FieldName::parse("Full").is_none());
        assert!(FieldName::parse("1x").is_none());
        assert!(FieldName::parse("a-b").is_none());
        assert!(FieldName::parse(&"a".repeat(65)).is_none());
    }
}

/// A name newtype: a `String` of one kind of identifier, so a grant id, an agency, a purpose
/// and a dossier cannot be passed for one another. Reads as `&str` (`Deref`), compares with
/// strings, serializes as the string.
macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The identifier `s` (validated where it enters the vault).
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

name_id!(
    /// A grant's id (`g-t` and 31 letters for a slot grant).
    GrantId
);
name_id!(
    /// An agency of the policy set (its certificate's `urn:vault:agency:<id>`).
    AgencyId
);
name_id!(
    /// A purpose (an administrative procedure) of the policy set.
    PurposeId
);
name_id!(
    /// The agency's dossier a grant is for.
    DossierId
);
