//! The kflow grammar: a pest grammar (`kflow.pest`), a parser that never
//! fails, and the spanned AST it produces.

pub mod ast;
pub mod diag;
pub mod keywords;
mod lower;
pub mod scan;

pub use lower::{parse_duration, MAX_EXPR_PARTS, MAX_TREE_DEPTH};

extern crate alloc;

pub(crate) mod parser {
    #[derive(pest_derive::Parser)]
    #[grammar = "../kflow.pest"]
    pub struct KflowParser;
}

use ast::File;
use diag::{codes, Diagnostic, Span};

/// Inputs at least this large, holding one flow, are cut at item boundaries
/// and parsed on several threads (pest is the compiler's dominant cost).
const PARALLEL_MIN_BYTES: usize = 128 * 1024;
/// Smallest chunk worth a thread.
const CHUNK_MIN_BYTES: usize = 48 * 1024;

/// Parses a whole file. Never fails: syntax errors become diagnostics and the
/// regions around them are still parsed.
pub fn parse(src: &str) -> (File, Vec<Diagnostic>) {
    parse_with(src, true)
}

/// [`parse`] on one thread, whatever the input's size (to test that both
/// ways agree).
#[doc(hidden)]
pub fn parse_sequential(src: &str) -> (File, Vec<Diagnostic>) {
    parse_with(src, false)
}

/// How many pieces [`parse`] cuts this input into (1: not cut).
#[doc(hidden)]
pub fn parse_pieces(src: &str) -> usize {
    chunk_bounds(&scan::scan(src)).map_or(1, |(bounds, _)| bounds.len() + 1)
}

fn parse_with(src: &str, parallel: bool) -> (File, Vec<Diagnostic>) {
    let scan = scan::scan(src);
    let mut diags = scan.diagnostics.clone();
    let mut file = match parse_parallel(src, &scan).filter(|_| parallel) {
        Some((file, more)) => {
            diags.extend(more);
            file
        }
        None => {
            let (file, more) = parse_whole(src, &scan);
            diags.extend(more);
            file
        }
    };
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

fn lowerer<'s>(src: &'s str, scan: &'s scan::Scan, placement: lower::Placement) -> lower::Lower<'s> {
    lower::Lower {
        src,
        placement,
        comments: &scan.comments,
        masked: &scan.masked,
        diags: Vec::new(),
    }
}

fn parse_whole(src: &str, scan: &scan::Scan) -> (File, Vec<Diagnostic>) {
    use pest::Parser;
    let mut lower = lowerer(src, scan, lower::Placement::default());
    let file = match parser::KflowParser::parse(parser::Rule::file, &scan.text) {
        Ok(mut pairs) => lower.file(pairs.next().expect("grammar: the file rule")),
        // The grammar accepts every input; this is a last resort, reported
        // rather than panicking.
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
    (file, lower.diags)
}

/// Where to cut a large single-flow file: chunk starts, then the flow's `}`.
fn chunk_bounds(scan: &scan::Scan) -> Option<(Vec<usize>, usize)> {
    let len = scan.text.len();
    if len < PARALLEL_MIN_BYTES || scan.top_flows != 1 || scan.top_closes.len() != 1 || !scan.masked.is_empty() {
        return None;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let close = scan.top_closes[0];
    let starts: Vec<usize> = scan.item_starts.iter().copied().filter(|&s| s < close).collect();
    let first = *starts.first()?;
    // The main thread parses one share (the flow header, the first items and
    // the tail); each other thread one more.
    let shares = threads.min((close - first) / CHUNK_MIN_BYTES);
    if shares < 2 {
        return None;
    }
    let mut bounds: Vec<usize> = Vec::new();
    for j in 1..shares {
        let target = first + (close - first) * j / shares;
        let i = starts.partition_point(|&s| s < target);
        if let Some(&b) = starts.get(i) {
            if bounds.last().is_none_or(|&last| b > last) {
                bounds.push(b);
            }
        }
    }
    (!bounds.is_empty()).then_some((bounds, close))
}

fn parse_parallel(src: &str, scan: &scan::Scan) -> Option<(File, Vec<Diagnostic>)> {
    use pest::Parser;
    let (bounds, close) = chunk_bounds(scan)?;
    let text: &str = &scan.text;
    let head_tail = format!("{}{}", &text[..bounds[0]], &text[close..]);
    let ends: Vec<usize> = bounds.iter().skip(1).copied().chain(std::iter::once(close)).collect();
    std::thread::scope(|sc| {
        let workers: Vec<_> = bounds
            .iter()
            .zip(&ends)
            .map(|(&a, &b)| {
                sc.spawn(move || {
                    let mut pairs = parser::KflowParser::parse(parser::Rule::chunk, &text[a..b]).ok()?;
                    let mut lower = lowerer(src, scan, lower::Placement { base: a, cut: None });
                    let items = lower.chunk(pairs.next()?);
                    Some((items, lower.diags))
                })
            })
            .collect();
        let placement = lower::Placement {
            base: 0,
            cut: Some((bounds[0], close - bounds[0])),
        };
        let mut lower = lowerer(src, scan, placement);
        let mut pairs = parser::KflowParser::parse(parser::Rule::file, &head_tail).ok()?;
        let mut file = lower.file(pairs.next()?);
        let mut diags = lower.diags;
        // Any surprise (a chunk that does not parse alone): parse it whole.
        let mut ok = file.flows.len() == 1;
        for w in workers {
            match w.join().ok().flatten() {
                Some((items, d)) if ok => {
                    file.flows[0].items.extend(items);
                    diags.extend(d);
                }
                _ => ok = false,
            }
        }
        ok.then_some((file, diags))
    })
}
