//! `VaultError`: every way a core operation can fail, each with one stable snake_case code,
//! with the policy's `Denial`, a policy file's `PolicyError` and a token's `TokenRejection`
//! that it carries (defined here, re-exported by `policy` and `token`: this module imports
//! none above it). Messages are lowercase, carry no secrets and no citizen data (never a
//! citizen id or value).

use std::fmt;

/// Defines `code()` and `samples()` of an error enum from one table: for each variant its
/// pattern, sample values (an iterator of the enum) and its code. `code` is an exhaustive
/// match, so a new variant does not compile until it has a row, and with it samples: every
/// list of codes (the OpenAPI document's, the tests') comes from `samples`, never by hand.
#[macro_export]
macro_rules! coded {
    ($ty:ident { $( $pat:pat = $samples:expr => $code:expr ),* $(,)? }) => {
        impl $ty {
            /// The stable machine-readable code.
            pub fn code(&self) -> &'static str {
                match self {
                    $( $pat => $code, )*
                }
            }

            /// One value of each variant (of each nested reason, where a variant carries
            /// one), in table order.
            pub fn samples() -> Vec<Self> {
                let mut all = Vec::new();
                $( all.extend($samples); )*
                all
            }
        }
    };
}

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
    Token(TokenRejection),
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
    /// No such complaint, correction or request (for this caller).
    #[error("case not found")]
    CaseNotFound,
    /// The complaint, correction or request is closed and changes no more.
    #[error("the case is closed")]
    CaseClosed,
    /// The field already has an open correction of the citizen's.
    #[error("the field already has an open correction")]
    CorrectionOpen,
    /// The field has no source-of-truth agency that could resolve a correction.
    #[error("the field has no source of truth")]
    NoSourceOfTruth,
    /// A legal deadline needs a year the working-day calendar does not list (or the policy
    /// set has no calendar: year 0). For operators; clients get `calendar_unavailable`.
    #[error("the working-day calendar has no holidays for year {0}")]
    CalendarGap(i64),
    /// The store failed (I/O, lock). The text is for operators' logs, never for clients.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// Stored bytes could not be decoded.
    #[error("store corrupt: {0}")]
    StoreCorrupt(String),
}

coded! {
    VaultError {
        Self::InvalidCitizenId = [Self::InvalidCitizenId] => "invalid_citizen_id",
        Self::UnknownField(_) = [Self::UnknownField("x".into())] => "unknown_field",
        Self::InvalidFieldValue { .. } = [Self::InvalidFieldValue {
            field: "x".into(),
            reason: "y".into(),
        }] => "invalid_field_value",
        Self::CitizenNotFound = [Self::CitizenNotFound] => "citizen_not_found",
        Self::Denied(d) = Denial::samples().into_iter().map(Self::Denied) => d.code(),
        Self::Policy(_) = [Self::Policy(PolicyError {
            file: "f".into(),
            line: 1,
            column: 1,
            message: "m".into(),
        })] => "policy_invalid",
        Self::WrongRootKey = [Self::WrongRootKey] => "root_key_mismatch",
        Self::RootKeyPermissions { .. } = [Self::RootKeyPermissions {
            path: "p".into(),
            mode: 0o644,
        }] => "root_key_insecure",
        Self::RootKeyUnavailable(_) = [Self::RootKeyUnavailable("x".into())] => "root_key_unavailable",
        Self::IntegrityFailure = [Self::IntegrityFailure] => "integrity_failure",
        Self::StaleCiphertext = [Self::StaleCiphertext] => "stale_ciphertext",
        Self::KeyRetired(_) = [Self::KeyRetired(1)] => "key_retired",
        Self::VaultExists = [Self::VaultExists] => "vault_exists",
        Self::VaultNotInitialized = [Self::VaultNotInitialized] => "vault_not_initialized",
        Self::RotationInProgress = [Self::RotationInProgress] => "rotation_in_progress",
        Self::InvalidIdentifier = [Self::InvalidIdentifier] => "invalid_identifier",
        Self::AuditEntryTooLarge = [Self::AuditEntryTooLarge] => "audit_entry_too_large",
        Self::AuditUnavailable = [Self::AuditUnavailable] => "audit_unavailable",
        Self::AuditCorrupt { .. } = [Self::AuditCorrupt {
            index: 1,
            reason: "x".into(),
        }] => "audit_corrupt",
        Self::AuditNotFound = [Self::AuditNotFound] => "audit_not_found",
        Self::Token(r) = TokenRejection::samples().into_iter().map(Self::Token) => r.code(),
        Self::TokenExpired = [Self::TokenExpired] => "token_expired",
        Self::TokenNotForCitizen = [Self::TokenNotForCitizen] => "token_not_for_citizen",
        Self::TokenNotForField = [Self::TokenNotForField] => "token_not_for_field",
        Self::GrantRevoked = [Self::GrantRevoked] => "grant_revoked",
        Self::GrantExhausted = [Self::GrantExhausted] => "grant_exhausted",
        Self::GrantNotFound = [Self::GrantNotFound] => "grant_not_found",
        Self::GrantNotPending = [Self::GrantNotPending] => "grant_not_pending",
        Self::IdempotencyConflict = [Self::IdempotencyConflict] => "idempotency_conflict",
        Self::ConsentNotFound = [Self::ConsentNotFound] => "consent_not_found",
        Self::WritesNotAllowed = [Self::WritesNotAllowed] => "writes_not_allowed",
        Self::CaseNotFound = [Self::CaseNotFound] => "case_not_found",
        Self::CaseClosed = [Self::CaseClosed] => "case_closed",
        Self::CorrectionOpen = [Self::CorrectionOpen] => "correction_open",
        Self::NoSourceOfTruth = [Self::NoSourceOfTruth] => "no_source_of_truth",
        Self::CalendarGap(_) = [Self::CalendarGap(2027)] => "calendar_unavailable",
        Self::StoreUnavailable(_) = [Self::StoreUnavailable("x".into())] => "store_unavailable",
        Self::StoreCorrupt(_) = [Self::StoreCorrupt("x".into())] => "store_corrupt",
    }
}

/// A no from the policy, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The agency is not in `agencies.toml`.
    #[error("unknown agency")]
    UnknownAgency,
    /// The purpose does not exist.
    #[error("unknown purpose")]
    UnknownPurpose,
    /// A requested field is not in the catalog.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// The request names no field, or a field twice.
    #[error("request must name each field once and at least one field")]
    InvalidRequest,
    /// The agency may not use this purpose.
    #[error("the agency may not use this purpose")]
    PurposeNotAllowed,
    /// A requested field is not part of the purpose.
    #[error("field `{0}` is not part of this purpose")]
    FieldNotInPurpose(String),
    /// The citizen lives outside the agency's jurisdiction.
    #[error("the citizen is outside the agency's jurisdiction")]
    OutsideJurisdiction,
    /// The citizen refused consent to this grant (an idempotent replay of the request).
    #[error("the citizen refused consent")]
    ConsentRefused,
}

coded! {
    Denial {
        Self::UnknownAgency = [Self::UnknownAgency] => "unknown_agency",
        Self::UnknownPurpose = [Self::UnknownPurpose] => "unknown_purpose",
        Self::UnknownField(_) = [Self::UnknownField("x".into())] => "unknown_field",
        Self::InvalidRequest = [Self::InvalidRequest] => "invalid_request",
        Self::PurposeNotAllowed = [Self::PurposeNotAllowed] => "purpose_not_allowed",
        Self::FieldNotInPurpose(_) = [Self::FieldNotInPurpose("x".into())] => "field_not_in_purpose",
        Self::OutsideJurisdiction = [Self::OutsideJurisdiction] => "outside_jurisdiction",
        Self::ConsentRefused = [Self::ConsentRefused] => "consent_refused",
    }
}

/// Why a token was refused. Each maps to a SPEC code; the variant is the precise reason
/// (kept for logs and tests, never shown beyond its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not three base64url parts, or bad base64, or bad JSON.
    #[error("malformed token")]
    Malformed,
    /// Over 8 KiB.
    #[error("token too large")]
    TooLarge,
    /// `alg` other than EdDSA (including `none` and HS256).
    #[error("algorithm not allowed")]
    Algorithm,
    /// `typ` other than `at+jwt`.
    #[error("wrong token type")]
    Type,
    /// `kid` missing.
    #[error("missing key id")]
    MissingKid,
    /// `kid` unknown or retired.
    #[error("unknown key id")]
    UnknownKid,
    /// A `crit`, `jku`, `x5u`, `jwk` or `x5c` header.
    #[error("forbidden header")]
    ForbiddenHeader,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Wrong or missing `iss`.
    #[error("wrong issuer")]
    Issuer,
    /// Wrong or missing `aud`.
    #[error("wrong audience")]
    Audience,
    /// A required claim is missing or has the wrong type (e.g. `exp` as a string).
    #[error("missing or malformed claim")]
    Claims,
    /// `exp` passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The presented certificate is not the one the token is bound to.
    #[error("certificate binding mismatch")]
    Binding,
}

coded! {
    TokenRejection {
        Self::Malformed = [Self::Malformed] => "token_invalid",
        Self::TooLarge = [Self::TooLarge] => "token_invalid",
        Self::Algorithm = [Self::Algorithm] => "token_invalid",
        Self::Type = [Self::Type] => "token_invalid",
        Self::MissingKid = [Self::MissingKid] => "token_invalid",
        Self::UnknownKid = [Self::UnknownKid] => "token_invalid",
        Self::ForbiddenHeader = [Self::ForbiddenHeader] => "token_invalid",
        Self::Signature = [Self::Signature] => "token_invalid",
        Self::Issuer = [Self::Issuer] => "token_invalid",
        Self::Audience = [Self::Audience] => "token_invalid",
        Self::Claims = [Self::Claims] => "token_invalid",
        Self::Expired = [Self::Expired] => "token_expired",
        Self::NotYetValid = [Self::NotYetValid] => "token_invalid",
        Self::Binding = [Self::Binding] => "token_binding_mismatch",
    }
}

/// A policy loading error, always naming file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file, as given to the loader.
    pub file: String,
    /// 1-based line (0 when the error concerns the whole file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Lowercase description of the problem.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for PolicyError {}

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
            | Self::WritesNotAllowed
            | Self::CaseNotFound
            | Self::CaseClosed
            | Self::CorrectionOpen
            | Self::NoSourceOfTruth => true,
            Self::Policy(_)
            | Self::CalendarGap(_)
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
    fn codes_are_snake_case_and_each_variant_has_its_own() {
        let all = VaultError::samples();
        assert!(all.len() > 40, "nested reasons included");
        let codes: Vec<_> = all.iter().map(VaultError::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        // Variants that carry no nested reason each have a code no other variant has.
        let flat: Vec<_> = all
            .iter()
            .filter(|e| !matches!(e, VaultError::Denied(_) | VaultError::Token(_)))
            .map(VaultError::code)
            .collect();
        let mut distinct = flat.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), flat.len());
        // Every sample decides whether it is a refusal without panicking, and the reasons
        // carried inside are refusals.
        for e in &all {
            let _ = e.is_refusal();
        }
        assert!(
            all.iter()
                .filter(|e| matches!(e, VaultError::Denied(_) | VaultError::Token(_)))
                .all(VaultError::is_refusal)
        );
        assert_eq!(Denial::samples().len(), 8);
        assert_eq!(TokenRejection::samples().len(), 14);
    }
}
