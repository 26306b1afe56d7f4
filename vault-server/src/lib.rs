//! vault-server: the operator CLI (`vaultctl`) today; the HTTPS API joins it later.
//! Everything here is a thin shell over `vault-core`: parse input, call the core, report.

pub mod ctl;
