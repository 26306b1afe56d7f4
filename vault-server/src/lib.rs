//! vault-server library.
