//! The tamper-evident audit log (SPEC §4): entries, the RFC 9162 Merkle tree, signed C2SP
//! checkpoints, the durable segment log with group commit, recovery and query indexes.

pub mod entry;
pub mod file;
pub mod index;
pub mod merkle;
pub mod note;
pub mod segment;
pub mod tree;
