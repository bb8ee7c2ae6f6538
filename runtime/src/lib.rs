//! The kflow executor of compiled plans (`kflow_compiler::ir::Plan`): run-time
//! values, the evaluation of the plan's expressions, inputs from the command
//! line, secret redaction, the execution history, the task implementations,
//! and what they drive: the Docker engine and registries.

pub mod cloud;
pub mod compose;
pub mod dispatch;
pub mod docker;
pub mod eval;
pub mod executor;
pub mod flow_files;
pub mod host;
pub mod inputs;
pub mod net;
pub mod owner;
pub mod printable;
pub mod reaper;
pub mod recorder;
pub mod registry;
pub mod resume;
pub mod scan;
pub mod schedule;
pub mod secret;
pub mod sign;
pub mod spool;
pub mod state;
pub mod store;
pub mod tasks;
pub mod trigger;
pub mod value;
pub mod webhook;
pub mod worker;
