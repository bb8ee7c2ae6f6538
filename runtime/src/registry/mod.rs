//! Registries through the OCI distribution API: names, credentials, the
//! client, copying images between repositories by digest, and image indexes.

pub mod client;
pub mod copy;
pub mod credentials;
pub mod index;
pub mod name;
