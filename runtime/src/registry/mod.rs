//! Registries through the OCI distribution API: names, credentials, the
//! client, and copying images between repositories by digest.

pub mod client;
pub mod copy;
pub mod credentials;
pub mod name;
