//! Citizen Data Vault core: sealing, keys, storage, policy and the `Vault` façade.
//! No HTTP, no TLS, no environment, no wall clock: time and key sources are parameters.

pub mod audit;
pub mod case;
pub mod clock;
pub mod consent;
pub mod crypto;
pub mod error;
pub mod flush;
pub mod geo;
pub mod grant;
pub mod id;
pub mod keyring;
pub mod policy;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod secret;
pub mod store;
pub mod token;
pub mod vault;

pub use clock::{Clock, FixedClock, SystemClock, Timestamp};
pub use error::VaultError;
pub use id::{BlindId, CitizenId, FieldName};
pub use vault::{Record, RecordWrite, Vault, WriteOutcome};
