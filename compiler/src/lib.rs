//! The kflow compiler: names → types → checks → IR, the task catalog,
//! diagnostics and their renderings, the formatter, and the analysis API the
//! language server builds on.

mod allow;
pub mod analysis;
pub mod catalog;
pub mod check;
pub mod codes;
pub mod cron;
pub mod docs;
pub mod format;
pub mod functions;
pub mod graph;
pub mod ir;
pub mod literals;
pub mod render;
pub mod suggest;
pub mod triggers;
pub mod types;

pub use kflow_grammar as grammar;
pub use kflow_grammar::diag::{Diagnostic, Label, Severity, Span};
