//! One entry point for everything that reads a `.kflow` file: the CLI and the
//! language server call [`analyze`] and get the AST, the diagnostics (sorted,
//! lint suppressions applied) and per-flow semantic information.

use kflow_grammar::ast;
use kflow_grammar::diag::Diagnostic;

pub use crate::check::{Files, FlowInfo, Options, Reference, SymKind, Symbol};

pub struct Analysis {
    pub file: ast::File,
    pub diagnostics: Vec<Diagnostic>,
    pub flows: Vec<FlowInfo>,
    pub timings: Timings,
}

/// Wall time of each stage (for `kflow check --timings` and benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub parse: std::time::Duration,
    /// Resolution, typing, lints and lowering to the plan.
    pub check: std::time::Duration,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

pub fn analyze(src: &str, opts: &Options) -> Analysis {
    let start = std::time::Instant::now();
    let (file, mut diagnostics) = kflow_grammar::parse(src);
    let parsed = std::time::Instant::now();
    let flows = crate::check::check_file(src, &file, opts, &mut diagnostics);
    crate::allow::apply(src, &file, &opts.allow, &mut diagnostics);
    diagnostics.sort_by(|a, b| (a.span.start, a.span.end, a.code).cmp(&(b.span.start, b.span.end, b.code)));
    diagnostics.dedup();
    let timings = Timings {
        parse: parsed - start,
        check: parsed.elapsed(),
    };
    Analysis {
        file,
        diagnostics,
        flows,
        timings,
    }
}
