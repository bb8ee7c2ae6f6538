//! Signing images the way cosign does, and verifying such signatures.

pub mod cosign;
pub mod keys;
