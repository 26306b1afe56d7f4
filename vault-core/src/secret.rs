//! Secret key and plaintext types: they zeroize on drop, print as `<redacted>`, and
//! cannot be cloned or serialized. Nothing else in the crate holds raw key bytes.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw key bytes; the caller's copy should be a `Zeroizing` buffer.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Borrows the key bytes for a cryptographic operation.
            pub(crate) fn expose(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

secret_key!(
    /// The root key: wraps key-encryption keys and derives the index and pseudonym keys.
    RootKey
);
secret_key!(
    /// A versioned key-encryption key (KEK): wraps citizens' data keys.
    Kek
);
secret_key!(
    /// A citizen's data-encryption key (DEK): seals that citizen's fields.
    DataKey
);
secret_key!(
    /// HMAC key for blind citizen indexes.
    IndexKey
);
secret_key!(
    /// HMAC key for audit pseudonyms.
    PseudonymKey
);
secret_key!(
    /// Seals the answers remembered for idempotency keys, and names them (HMAC).
    AnswerKey
);

/// Decrypted bytes of a citizen field. Zeroized on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes ownership of decrypted or to-be-sealed bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Borrows the plaintext bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Copies the plaintext into a zeroizing string if it is UTF-8.
    pub fn to_zeroizing_string(&self) -> Option<Zeroizing<String>> {
        std::str::from_utf8(&self.0)
            .ok()
            .map(|s| Zeroizing::new(s.to_owned()))
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_plaintext_never_print_their_bytes() {
        let k = DataKey::from_bytes([0x41; 32]);
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
        assert_eq!(format!("{k}"), "<redacted>");
        let p = Plaintext::new(b"Nguyen Van A".to_vec());
        assert_eq!(format!("{p:?}"), "Plaintext(<redacted>)");
    }

    #[test]
    fn zeroize_clears_key_bytes() {
        let mut k = RootKey::from_bytes([7; 32]);
        k.zeroize();
        assert_eq!(k.expose(), &[0u8; 32]);
    }
}
