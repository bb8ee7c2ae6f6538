//! The kflow executor of compiled plans (`kflow_compiler::ir::Plan`): run-time
//! values, the evaluation of the plan's expressions, inputs from the command
//! line, and secret redaction.

pub mod eval;
pub mod inputs;
pub mod secret;
pub mod value;
