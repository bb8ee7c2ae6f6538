//! The kflow executor of compiled plans (`kflow_compiler::ir::Plan`): run-time
//! values, the evaluation of the plan's expressions, inputs from the command
//! line, secret redaction, and the task implementations.

pub mod docker;
pub mod eval;
pub mod executor;
pub mod inputs;
pub mod registry;
pub mod secret;
pub mod store;
pub mod tasks;
pub mod value;
