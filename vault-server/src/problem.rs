//! The one exhaustive map from every error to an HTTP status and an RFC 9457 problem: stable
//! `code`s, fixed titles and details, never internal error text, secrets or citizen data.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use vault_core::VaultError;
use vault_core::policy::Denial;
use vault_core::token::TokenRejection;

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// From a core call. The core audited it if it was a refusal of an identified caller.
    Vault(VaultError),
    /// A core rule applied at the edge, before any core call (a query parameter that is not
    /// a citizen id, …): answered like `Vault`, audited by the server's middleware.
    Input(VaultError),
    /// No credentials of the kind the route needs.
    AuthenticationRequired,
    /// A bearer ID token that does not verify.
    BearerInvalid,
    /// A client certificate naming no known agency on an agency route.
    UnknownAgency,
    /// Credentials of the wrong kind or role for the route.
    Forbidden,
    /// A malformed request: what is wrong, without echoing values.
    InvalidRequest(String),
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is over the limit.
    PayloadTooLarge,
    /// Too many requests; retry after this many seconds.
    RateLimited(u64),
    /// No such route.
    NotFound,
    /// The route exists with other methods.
    /// The path exists with other methods: the `Allow` header lists them.
    MethodNotAllowed(String),
    /// The same idempotency key with another body.
    IdempotencyConflict,
    /// The server is shutting down or a worker failed.
    Unavailable,
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        Self::Vault(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Status, code and title of a core error. Exhaustive: a new core error will not compile
/// until it is placed here.
fn vault_problem(e: &VaultError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        VaultError::InvalidCitizenId => (S::BAD_REQUEST, "Invalid citizen id"),
        VaultError::UnknownField(_) => (S::BAD_REQUEST, "Unknown field"),
        VaultError::InvalidFieldValue { .. } => (S::BAD_REQUEST, "Invalid field value"),
        VaultError::CitizenNotFound => (S::NOT_FOUND, "Citizen not found"),
        VaultError::Denied(d) => match d {
            Denial::UnknownPurpose | Denial::UnknownField(_) | Denial::InvalidRequest => {
                (S::BAD_REQUEST, "Request refused")
            }
            Denial::UnknownAgency
            | Denial::PurposeNotAllowed
            | Denial::FieldNotInPurpose(_)
            | Denial::OutsideJurisdiction
            | Denial::ConsentRefused => (S::FORBIDDEN, "Access denied by policy"),
        },
        VaultError::InvalidIdentifier => (S::BAD_REQUEST, "Invalid identifier"),
        VaultError::AuditNotFound => (S::NOT_FOUND, "No such audit entry"),
        VaultError::Token(r) => match r {
            TokenRejection::Binding => (S::FORBIDDEN, "Token bound to another certificate"),
            TokenRejection::Expired => (S::UNAUTHORIZED, "Token expired"),
            TokenRejection::Malformed
            | TokenRejection::TooLarge
            | TokenRejection::Algorithm
            | TokenRejection::Type
            | TokenRejection::MissingKid
            | TokenRejection::UnknownKid
            | TokenRejection::ForbiddenHeader
            | TokenRejection::Signature
            | TokenRejection::Issuer
            | TokenRejection::Audience
            | TokenRejection::Claims
            | TokenRejection::NotYetValid => (S::UNAUTHORIZED, "Invalid token"),
        },
        VaultError::TokenExpired => (S::UNAUTHORIZED, "Token expired"),
        VaultError::TokenNotForCitizen => (S::FORBIDDEN, "Token not for this citizen"),
        VaultError::TokenNotForField => (S::FORBIDDEN, "Token not for these fields"),
        VaultError::GrantRevoked => (S::FORBIDDEN, "Grant revoked"),
        VaultError::GrantExhausted => (S::FORBIDDEN, "Grant exhausted"),
        VaultError::GrantNotFound => (S::NOT_FOUND, "Grant not found"),
        VaultError::GrantNotPending => (S::CONFLICT, "Grant is not waiting for consent"),
        VaultError::IdempotencyConflict => (
            S::UNPROCESSABLE_ENTITY,
            "Idempotency key reused with another request",
        ),
        VaultError::ConsentNotFound => (S::NOT_FOUND, "Consent not found"),
        VaultError::WritesNotAllowed => (S::FORBIDDEN, "Agency is not a source of truth"),
        VaultError::CaseNotFound => (S::NOT_FOUND, "No such complaint, correction or request"),
        VaultError::CaseClosed => (S::CONFLICT, "Already answered or closed"),
        VaultError::CorrectionOpen => (S::CONFLICT, "This field already has an open correction"),
        VaultError::NoSourceOfTruth => {
            (S::UNPROCESSABLE_ENTITY, "No agency can correct this field")
        }
        VaultError::CalendarGap(_) => (
            S::SERVICE_UNAVAILABLE,
            "Legal deadlines cannot be computed now",
        ),
        VaultError::AuditUnavailable
        | VaultError::AuditEntryTooLarge
        | VaultError::StoreUnavailable(_)
        | VaultError::RotationInProgress => (S::SERVICE_UNAVAILABLE, "Service unavailable"),
        VaultError::Policy(_)
        | VaultError::WrongRootKey
        | VaultError::RootKeyPermissions { .. }
        | VaultError::RootKeyUnavailable(_)
        | VaultError::IntegrityFailure
        | VaultError::StaleCiphertext
        | VaultError::KeyRetired(_)
        | VaultError::VaultExists
        | VaultError::VaultNotInitialized
        | VaultError::AuditCorrupt { .. }
        | VaultError::StoreCorrupt(_) => (S::INTERNAL_SERVER_ERROR, "Internal error"),
    }
}

/// The detail of a core error that says more than its title (naming a field only when its
/// name is safe to echo).
fn core_detail(e: &VaultError) -> Option<String> {
    Some(match e {
        VaultError::UnknownField(f)
        | VaultError::Denied(Denial::UnknownField(f))
        | VaultError::Denied(Denial::FieldNotInPurpose(f)) => match safe_name(f) {
            Some(f) => format!("field `{f}` is not allowed here"),
            None => "a requested field is not allowed here".into(),
        },
        VaultError::InvalidFieldValue { field, .. } => match safe_name(field) {
            Some(f) => format!("the value of `{f}` does not match its type"),
            None => "a field value does not match its type".into(),
        },
        VaultError::Denied(Denial::InvalidRequest) => {
            "the request is not valid (each field once and at least one; remember_days 1-365)"
                .into()
        }
        _ => return None,
    })
}

/// A safe identifier to name in a detail (field names): anything else is not echoed.
fn safe_name(s: &str) -> Option<&str> {
    (!s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !vault_core::id::has_long_digit_run(s))
    .then_some(s)
}

vault_core::coded! {
    ApiError {
        Self::Vault(e) = VaultError::samples().into_iter().map(Self::Vault) => public_code(e),
        Self::Input(e) = VaultError::samples().into_iter().map(Self::Input) => public_code(e),
        Self::AuthenticationRequired = [Self::AuthenticationRequired] => "authentication_required",
        Self::BearerInvalid = [Self::BearerInvalid] => "bearer_invalid",
        Self::UnknownAgency = [Self::UnknownAgency] => "unknown_agency",
        Self::Forbidden = [Self::Forbidden] => "forbidden",
        Self::InvalidRequest(_) = [Self::InvalidRequest("x".into())] => "invalid_request",
        Self::UnsupportedMediaType = [Self::UnsupportedMediaType] => "unsupported_media_type",
        Self::PayloadTooLarge = [Self::PayloadTooLarge] => "payload_too_large",
        Self::RateLimited(_) = [Self::RateLimited(1)] => "rate_limited",
        Self::NotFound = [Self::NotFound] => "not_found",
        Self::MethodNotAllowed(_) = [Self::MethodNotAllowed("GET".into())] => "method_not_allowed",
        Self::IdempotencyConflict = [Self::IdempotencyConflict] => "idempotency_conflict",
        Self::Unavailable = [Self::Unavailable] => "service_unavailable",
    }
}

/// The code a core error answers with: internal failures all look the same from outside,
/// and a store or rotation that cannot serve is the audit path being unavailable.
fn public_code(e: &VaultError) -> &'static str {
    match e {
        e if vault_problem(e).0 == StatusCode::INTERNAL_SERVER_ERROR => "internal_error",
        VaultError::StoreUnavailable(_)
        | VaultError::AuditEntryTooLarge
        | VaultError::RotationInProgress => "audit_unavailable",
        e => e.code(),
    }
}

impl ApiError {
    fn status_title(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::Vault(e) | Self::Input(e) => vault_problem(e),
            Self::AuthenticationRequired => (S::UNAUTHORIZED, "Authentication required"),
            Self::BearerInvalid => (S::UNAUTHORIZED, "Invalid bearer token"),
            Self::UnknownAgency => (S::FORBIDDEN, "Unknown agency"),
            Self::Forbidden => (S::FORBIDDEN, "Not allowed for these credentials"),
            Self::InvalidRequest(_) => (S::BAD_REQUEST, "Invalid request"),
            Self::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "Request body too large"),
            Self::RateLimited(_) => (S::TOO_MANY_REQUESTS, "Too many requests"),
            Self::NotFound => (S::NOT_FOUND, "Not found"),
            Self::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, "Method not allowed"),
            Self::IdempotencyConflict => (
                S::UNPROCESSABLE_ENTITY,
                "Idempotency key reused with another request",
            ),
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "Service unavailable"),
        }
    }

    /// A fixed, safe explanation.
    fn detail(&self) -> String {
        if let Self::Vault(e) | Self::Input(e) = self
            && let Some(d) = core_detail(e)
        {
            return d;
        }
        match self {
            Self::InvalidRequest(why) => why.clone(),
            Self::RateLimited(s) => format!("retry after {s} seconds"),
            Self::AuthenticationRequired => {
                "this route needs a client certificate or a bearer token of the right kind".into()
            }
            other => other.status_title().1.to_owned(),
        }
    }

    /// The problem+json body.
    pub fn body(&self) -> serde_json::Value {
        let (status, title) = self.status_title();
        json!({
            "type": format!("https://vault.hochiminhcity.gov.vn/problems/{}", self.code()),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail(),
            "code": self.code(),
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_title().0
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        r.content_type("application/problem+json");
        match self {
            Self::RateLimited(s) => {
                r.insert_header(("Retry-After", s.to_string()));
            }
            Self::AuthenticationRequired | Self::BearerInvalid => {
                r.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::MethodNotAllowed(allow) => {
                r.insert_header(("Allow", allow.as_str()));
            }
            _ => {}
        }
        r.body(self.body().to_string())
    }
}

/// Every code the API can answer with (for the OpenAPI document), from the error enums.
pub fn all_codes() -> Vec<&'static str> {
    let mut v: Vec<_> = ApiError::samples().iter().map(ApiError::code).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_show_their_text() {
        let e = ApiError::Vault(VaultError::StoreCorrupt(
            "secret path /x 079123456789".into(),
        ));
        let body = e.body().to_string();
        assert!(!body.contains("079123456789") && !body.contains("/x"));
        assert_eq!(e.code(), "internal_error");
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let e = ApiError::Vault(VaultError::StoreUnavailable("disk /dev/sda full".into()));
        assert_eq!(e.code(), "audit_unavailable");
        assert!(!e.body().to_string().contains("sda"));
    }

    #[test]
    fn unsafe_field_names_are_not_echoed() {
        let e = ApiError::Vault(VaultError::UnknownField("079123456789 <x>".into()));
        assert!(!e.body().to_string().contains("079123456789"));
        let e = ApiError::Vault(VaultError::UnknownField("blood_type".into()));
        assert!(e.body().to_string().contains("blood_type"));
    }

    #[test]
    fn the_codes_come_from_every_variant() {
        let all = all_codes();
        for e in [
            ApiError::Vault(VaultError::TokenNotForField),
            ApiError::Vault(VaultError::AuditUnavailable),
            ApiError::Vault(VaultError::StoreCorrupt("x".into())),
            ApiError::Vault(VaultError::Token(
                vault_core::token::TokenRejection::Binding,
            )),
            ApiError::Vault(VaultError::Denied(Denial::OutsideJurisdiction)),
            ApiError::RateLimited(1),
            ApiError::Unavailable,
        ] {
            assert!(all.contains(&e.code()), "{}", e.code());
        }
        // Internal codes never leave: they all answer `internal_error`.
        for internal in [
            "store_corrupt",
            "integrity_failure",
            "policy_invalid",
            "store_unavailable",
        ] {
            assert!(!all.contains(&internal), "{internal}");
        }
        // Every sample answers a problem of its own code.
        for e in ApiError::samples() {
            assert_eq!(e.body()["code"], e.code());
        }
    }
}
