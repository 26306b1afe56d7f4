//! vault-server: the HTTPS API (actix-web + rustls) and the operator CLI (`vaultctl`).
//! Everything here is a thin shell over `vault-core`: authenticate at the edge, make one core
//! call, map the answer.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod clock;
pub mod config;
pub mod console;
pub mod ctl;
pub mod dev;
pub mod fdlimit;
pub mod logsink;
pub mod memory;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod pkcs11;
pub mod portal;
pub mod problem;
pub mod routes;
pub mod server;
pub mod shared_limits;
pub mod state;
pub mod tls;
pub mod x509;
