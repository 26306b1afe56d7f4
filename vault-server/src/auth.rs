//! Who is calling: the extractors `Agency` (verified client certificate naming a known
//! agency), `Citizen` (bearer ID token whose subject is a citizen id) and `Auditor` (bearer
//! with the auditor role, or a certificate naming an auditor). Each route asks for exactly
//! one; they run before any body is read.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use vault_core::CitizenId;
use vault_core::audit::SafeId;
use vault_core::vault::AgencyCaller;

use crate::oidc::IdClaims;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::tls::PeerCert;
use crate::x509::CertIdentity;

fn state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref())
        .ok_or(ApiError::Unavailable)
}

/// The raw bearer token of the request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

fn id_claims(req: &HttpRequest, st: &AppState) -> Result<Option<IdClaims>, ApiError> {
    let Some(token) = bearer(req) else {
        return Ok(None);
    };
    st.oidc
        .verify(token, st.now().as_secs())
        .map(Some)
        .ok_or(ApiError::BearerInvalid)
}

/// An agency system, authenticated by its client certificate.
#[derive(Debug, Clone)]
pub struct Agency(pub AgencyCaller);

fn agency(req: &HttpRequest) -> Result<Agency, ApiError> {
    let st = state(req)?;
    let Some(peer) = req.conn_data::<PeerCert>() else {
        return Err(ApiError::AuthenticationRequired);
    };
    let id = match &peer.identity {
        Some(CertIdentity::Agency(id)) => id,
        Some(CertIdentity::Auditor(_)) => return Err(ApiError::Forbidden),
        None => return Err(ApiError::UnknownAgency),
    };
    if st.vault.policy().agency(id).is_none() {
        return Err(ApiError::UnknownAgency);
    }
    st.agency_limiter.check(id).map_err(ApiError::RateLimited)?;
    Ok(Agency(AgencyCaller {
        agency: id.clone(),
        cert_thumbprint: peer.thumbprint.clone(),
    }))
}

impl FromRequest for Agency {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(agency(req))
    }
}

/// A citizen, authenticated by an ID token whose subject is their citizen id.
#[derive(Debug)]
pub struct Citizen(pub CitizenId);

fn citizen(req: &HttpRequest) -> Result<Citizen, ApiError> {
    let st = state(req)?;
    let claims = id_claims(req, st)?.ok_or(ApiError::AuthenticationRequired)?;
    CitizenId::parse(&claims.sub)
        .map(Citizen)
        .map_err(|_| ApiError::Forbidden)
}

impl FromRequest for Citizen {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(citizen(req))
    }
}

/// An auditor: a bearer token with the auditor role, or a certificate naming an auditor.
#[derive(Debug)]
pub struct Auditor(pub SafeId);

fn auditor(req: &HttpRequest) -> Result<Auditor, ApiError> {
    let st = state(req)?;
    if let Some(claims) = id_claims(req, st)? {
        if !claims.roles.contains(&st.auditor_role) {
            return Err(ApiError::Forbidden);
        }
        return SafeId::parse(&claims.sub)
            .map(Auditor)
            .map_err(|_| ApiError::Forbidden);
    }
    match req.conn_data::<PeerCert>().map(|p| &p.identity) {
        Some(Some(CertIdentity::Auditor(id))) => SafeId::parse(id)
            .map(Auditor)
            .map_err(|_| ApiError::Forbidden),
        Some(_) => Err(ApiError::Forbidden),
        None => Err(ApiError::AuthenticationRequired),
    }
}

impl FromRequest for Auditor {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(auditor(req))
    }
}
