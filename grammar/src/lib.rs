//! The kflow grammar: a pest grammar (`kflow.pest`), a parser that never
//! fails, and the spanned AST it produces.

pub mod ast;
pub mod diag;
mod lower;
pub mod scan;

pub use lower::{parse_duration, MAX_EXPR_PARTS};

pub(crate) mod parser {
    #[derive(pest_derive::Parser)]
    #[grammar = "../kflow.pest"]
    pub struct KflowParser;
}

use ast::File;
use diag::{codes, Diagnostic, Span};

/// Parses a whole file. Never fails: syntax errors become diagnostics and the
/// regions around them are still parsed.
pub fn parse(src: &str) -> (File, Vec<Diagnostic>) {
    use pest::Parser;
    let scan = scan::scan(src);
    let mut lower = lower::Lower {
        src,
        comments: &scan.comments,
        masked: &scan.masked,
        diags: scan.diagnostics.clone(),
    };
    let mut file = match parser::KflowParser::parse(parser::Rule::file, &scan.text) {
        Ok(mut pairs) => {
            let pair = pairs.next().expect("grammar: the file rule");
            lower.file(pair)
        }
        // The grammar accepts every input; this is a last resort (e.g. pest's
        // own stack guard), reported rather than panicking.
        Err(e) => {
            let pos = match e.location {
                pest::error::InputLocation::Pos(p) => p,
                pest::error::InputLocation::Span((s, _)) => s,
            };
            lower.diags.push(Diagnostic::error(
                codes::SYNTAX,
                Span::new(pos, pos),
                "the file could not be parsed",
            ));
            File::default()
        }
    };
    let mut diags = lower.diags;
    // A string left open swallows the `}` after it on its line; the block
    // then reported as unclosed is a consequence, not a second mistake.
    let open_strings: Vec<usize> = diags
        .iter()
        .filter(|d| d.code == codes::UNTERMINATED_STRING)
        .map(|d| d.span.start)
        .collect();
    diags.retain(|d| d.code != codes::UNCLOSED || !open_strings.iter().any(|&s| s > d.span.start));
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    file.comments = scan.comments;
    (file, diags)
}
