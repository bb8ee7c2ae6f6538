//! The kflow language server over `kflow_compiler::analysis`.
