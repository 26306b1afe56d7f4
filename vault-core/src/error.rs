//! `VaultError`: every way a core operation can fail, each with one stable snake_case code.
//! Messages are lowercase, carry no secrets and no citizen data (never a citizen id or value).

use crate::policy::{Denial, PolicyError};

/// The core's error type. `code()` is the stable machine-readable name.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A citizen id that is not exactly 12 ASCII digits.
    #[error("citizen id must be exactly 12 ASCII digits")]
    InvalidCitizenId,
    /// A field name that the catalog does not define.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A field value of the wrong type or size. The reason never quotes the value.
    #[error("invalid value for field `{field}`: {reason}")]
    InvalidFieldValue {
        /// The field's catalog name.
        field: String,
        /// What is wrong, without the value itself.
        reason: String,
    },
    /// No such citizen (never imported, or erased).
    #[error("citizen not found")]
    CitizenNotFound,
    /// The policy engine said no.
    #[error("{0}")]
    Denied(Denial),
    /// The policy files are invalid.
    #[error("{0}")]
    Policy(PolicyError),
    /// The root key does not open this vault's keyring.
    #[error("the root key does not match this vault (wrong key file?)")]
    WrongRootKey,
    /// The root key file is readable by group or others.
    #[error("root key file {path} has mode {mode:o}; it must be 0600 or stricter")]
    RootKeyPermissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The root key could not be read or parsed.
    #[error("root key unavailable: {0}")]
    RootKeyUnavailable(String),
    /// A ciphertext failed authentication or is malformed.
    #[error("ciphertext failed authentication")]
    IntegrityFailure,
    /// A ciphertext older than the stored current version was put in place.
    #[error("ciphertext version does not match the stored current version")]
    StaleCiphertext,
    /// A key version that has been retired or never existed.
    #[error("key version {0} is retired or unknown")]
    KeyRetired(u32),
    /// `init` on a directory that already holds a vault.
    #[error("a vault already exists here")]
    VaultExists,
    /// An operation on a directory that holds no vault.
    #[error("no vault here (run `vaultctl init` first)")]
    VaultNotInitialized,
    /// A key rotation is half done; finish it first.
    #[error("a key rotation is in progress; run `vaultctl keys rotate` again to finish it")]
    RotationInProgress,
    /// An identifier (dossier, official, grant, purpose) that may not be recorded.
    #[error("identifier must be 1-64 of A-Z a-z 0-9 . _ : @ - with no run of 9 digits")]
    InvalidIdentifier,
    /// An audit entry over 64 KiB.
    #[error("audit entry too large")]
    AuditEntryTooLarge,
    /// The audit log cannot take the entry durably: nothing was acknowledged or released.
    #[error("audit log unavailable")]
    AuditUnavailable,
    /// The stored audit log is inconsistent (truncated, rewritten or corrupt).
    #[error("audit log corrupt at index {index}: {reason}")]
    AuditCorrupt {
        /// The first bad index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// An audit index or tree size out of range.
    #[error("no such audit entry or tree size")]
    AuditNotFound,
    /// A token failed verification.
    #[error("{0}")]
    Token(crate::token::TokenRejection),
    /// The token expired (or its grant did).
    #[error("token expired")]
    TokenExpired,
    /// The token is for another citizen.
    #[error("token is not for this citizen")]
    TokenNotForCitizen,
    /// A requested field is outside the grant.
    #[error("token does not grant a requested field")]
    TokenNotForField,
    /// The grant was revoked or refused.
    #[error("grant revoked")]
    GrantRevoked,
    /// Every use of the grant is spent.
    #[error("grant exhausted")]
    GrantExhausted,
    /// No such grant (for this caller).
    #[error("grant not found")]
    GrantNotFound,
    /// The grant is not in a state that allows this.
    #[error("grant is not pending consent")]
    GrantNotPending,
    /// An idempotency key reused with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// No such standing consent (for this citizen).
    #[error("consent not found")]
    ConsentNotFound,
    /// The agency is not a source of truth: it may not write records.
    #[error("the agency may not write records")]
    WritesNotAllowed,
    /// The store failed (I/O, lock). The text is for operators' logs, never for clients.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// Stored bytes could not be decoded.
    #[error("store corrupt: {0}")]
    StoreCorrupt(String),
}

impl VaultError {
    /// The stable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCitizenId => "invalid_citizen_id",
            Self::UnknownField(_) => "unknown_field",
            Self::InvalidFieldValue { .. } => "invalid_field_value",
            Self::CitizenNotFound => "citizen_not_found",
            Self::Denied(d) => d.code(),
            Self::Policy(_) => "policy_invalid",
            Self::WrongRootKey => "root_key_mismatch",
            Self::RootKeyPermissions { .. } => "root_key_insecure",
            Self::RootKeyUnavailable(_) => "root_key_unavailable",
            Self::IntegrityFailure => "integrity_failure",
            Self::StaleCiphertext => "stale_ciphertext",
            Self::KeyRetired(_) => "key_retired",
            Self::VaultExists => "vault_exists",
            Self::VaultNotInitialized => "vault_not_initialized",
            Self::RotationInProgress => "rotation_in_progress",
            Self::InvalidIdentifier => "invalid_identifier",
            Self::AuditEntryTooLarge => "audit_entry_too_large",
            Self::AuditUnavailable => "audit_unavailable",
            Self::AuditCorrupt { .. } => "audit_corrupt",
            Self::AuditNotFound => "audit_not_found",
            Self::Token(r) => r.code(),
            Self::TokenExpired => "token_expired",
            Self::TokenNotForCitizen => "token_not_for_citizen",
            Self::TokenNotForField => "token_not_for_field",
            Self::GrantRevoked => "grant_revoked",
            Self::GrantExhausted => "grant_exhausted",
            Self::GrantNotFound => "grant_not_found",
            Self::GrantNotPending => "grant_not_pending",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::ConsentNotFound => "consent_not_found",
            Self::WritesNotAllowed => "writes_not_allowed",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::StoreCorrupt(_) => "store_corrupt",
        }
    }
}

impl VaultError {
    /// Whether this is a refusal of the caller's request (what it asked is not allowed, not
    /// there, or not well-formed), as opposed to a failure of the vault. Refusals of an
    /// identified caller are audited. Exhaustive: a new error must be placed here.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::InvalidCitizenId
            | Self::UnknownField(_)
            | Self::InvalidFieldValue { .. }
            | Self::CitizenNotFound
            | Self::Denied(_)
            | Self::InvalidIdentifier
            | Self::AuditNotFound
            | Self::Token(_)
            | Self::TokenExpired
            | Self::TokenNotForCitizen
            | Self::TokenNotForField
            | Self::GrantRevoked
            | Self::GrantExhausted
            | Self::GrantNotFound
            | Self::GrantNotPending
            | Self::IdempotencyConflict
            | Self::ConsentNotFound
            | Self::WritesNotAllowed => true,
            Self::Policy(_)
            | Self::WrongRootKey
            | Self::RootKeyPermissions { .. }
            | Self::RootKeyUnavailable(_)
            | Self::IntegrityFailure
            | Self::StaleCiphertext
            | Self::KeyRetired(_)
            | Self::VaultExists
            | Self::VaultNotInitialized
            | Self::RotationInProgress
            | Self::AuditEntryTooLarge
            | Self::AuditUnavailable
            | Self::AuditCorrupt { .. }
            | Self::StoreUnavailable(_)
            | Self::StoreCorrupt(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_distinct() {
        let all = [
            VaultError::InvalidCitizenId,
            VaultError::UnknownField("x".into()),
            VaultError::InvalidFieldValue {
                field: "x".into(),
                reason: "y".into(),
            },
            VaultError::CitizenNotFound,
            VaultError::WrongRootKey,
            VaultError::RootKeyPermissions {
                path: "p".into(),
                mode: 0o644,
            },
            VaultError::RootKeyUnavailable("x".into()),
            VaultError::IntegrityFailure,
            VaultError::StaleCiphertext,
            VaultError::KeyRetired(1),
            VaultError::VaultExists,
            VaultError::VaultNotInitialized,
            VaultError::RotationInProgress,
            VaultError::StoreUnavailable("x".into()),
            VaultError::StoreCorrupt("x".into()),
            VaultError::InvalidIdentifier,
            VaultError::AuditEntryTooLarge,
            VaultError::AuditUnavailable,
            VaultError::AuditCorrupt {
                index: 1,
                reason: "x".into(),
            },
            VaultError::AuditNotFound,
            VaultError::ConsentNotFound,
            VaultError::WritesNotAllowed,
            VaultError::TokenExpired,
            VaultError::TokenNotForCitizen,
            VaultError::TokenNotForField,
            VaultError::GrantRevoked,
            VaultError::GrantExhausted,
            VaultError::GrantNotFound,
            VaultError::GrantNotPending,
            VaultError::IdempotencyConflict,
        ];
        let mut codes: Vec<_> = all.iter().map(VaultError::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }
}
