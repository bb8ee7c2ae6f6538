//! The kflow executor of compiled plans (`kflow_compiler::ir::Plan`).
