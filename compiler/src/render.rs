//! Renderings of diagnostics: human (miette), JSON, SARIF 2.1.0 and GitHub
//! workflow commands. All read the same [`Diagnostic`] data.

use std::fmt;

use kflow_grammar::diag::{Diagnostic, Fix, Label, Severity, Span};
use serde_json::{json, Value};

use crate::codes;

/// Lines longer than this are not quoted in human output (a 50 MB line
/// would drown the terminal); the location is printed instead.
const MAX_QUOTED_LINE: usize = 4_000;

/// Byte offset ↔ 1-based line and column (in characters).
pub struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl<'a> LineIndex<'a> {
    pub fn new(src: &'a str) -> Self {
        LineIndex {
            src,
            starts: crate::check::line_starts(src),
        }
    }

    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let column = self.src[start..floor_char(self.src, offset)].chars().count() + 1;
        LineCol { line: line + 1, column }
    }

    /// Length in bytes of the line holding `offset`.
    pub fn line_len(&self, offset: usize) -> usize {
        let line = self.starts.partition_point(|&s| s <= offset.min(self.src.len())) - 1;
        let end = self.starts.get(line + 1).map_or(self.src.len(), |e| e - 1);
        end - self.starts[line]
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One file's diagnostics, for renderers that need the source.
pub struct FileReport<'a> {
    pub path: &'a str,
    pub src: &'a str,
    pub diagnostics: &'a [Diagnostic],
}

// ------------------------------------------------------------------ human

/// Secondary labels further than this many lines from the primary span are
/// shown as separate notes: miette quotes every line between two labels.
const MAX_LABEL_DISTANCE: usize = 6;

struct Miette<'a> {
    d: &'a Diagnostic,
    source: Option<&'a miette::NamedSource<String>>,
    location: Option<String>,
    /// Secondary labels quoted with the primary one.
    near: Vec<&'a Label>,
    /// Secondary labels far away, each rendered as a note of its own.
    far: Vec<Note<'a>>,
}

/// A far-away secondary label, rendered as a related report.
struct Note<'a> {
    label: &'a Label,
    source: Option<&'a miette::NamedSource<String>>,
}

impl fmt::Debug for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label.message)
    }
}

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label.message)
    }
}

impl std::error::Error for Note<'_> {}

impl miette::Diagnostic for Note<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.source?;
        Some(Box::new(std::iter::once(miette::LabeledSpan::new_primary_with_span(
            None,
            source_span(self.label.span),
        ))))
    }
}

impl fmt::Debug for Miette<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl fmt::Display for Miette<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{} (at {loc})", self.d.message),
            None => f.write_str(&self.d.message),
        }
    }
}

impl std::error::Error for Miette<'_> {}

fn source_span(s: Span) -> miette::SourceSpan {
    (s.start, s.len()).into()
}

impl miette::Diagnostic for Miette<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.d.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.d.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let primary = miette::LabeledSpan::new_primary_with_span(self.d.label.clone(), source_span(self.d.span));
        let rest = self
            .near
            .iter()
            .map(|l| miette::LabeledSpan::new_with_span(Some(l.message.clone()), source_span(l.span)));
        Some(Box::new(std::iter::once(primary).chain(rest)))
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.far.is_empty() {
            return None;
        }
        Some(Box::new(self.far.iter().map(|n| n as &dyn miette::Diagnostic)))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HumanStyle {
    pub color: bool,
    pub width: usize,
}

/// Renders diagnostics the way a terminal user reads them.
pub fn human(report: &FileReport, style: HumanStyle) -> String {
    let theme = if style.color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(style.width)
        .with_links(false)
        .with_context_lines(1);
    let mut out = String::new();
    if report.diagnostics.is_empty() {
        return out;
    }
    let index = LineIndex::new(report.src);
    let named = miette::NamedSource::new(report.path, report.src.to_string());
    for d in report.diagnostics {
        let long = std::iter::once(d.span)
            .chain(d.secondary.iter().map(|l| l.span))
            .any(|s| index.line_len(s.start) > MAX_QUOTED_LINE);
        let lc = index.line_col(d.span.start);
        let source = (!long).then_some(&named);
        let (near, far): (Vec<&Label>, Vec<&Label>) = d
            .secondary
            .iter()
            .partition(|l| index.line_col(l.span.start).line.abs_diff(lc.line) <= MAX_LABEL_DISTANCE);
        let m = Miette {
            d,
            source,
            location: long.then(|| format!("{}:{}:{}", report.path, lc.line, lc.column)),
            near,
            far: far.into_iter().map(|label| Note { label, source }).collect(),
        };
        let _ = handler.render_report(&mut out, &m);
        out.push('\n');
    }
    out
}

/// `2 errors, 1 warning` and the like.
pub fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(errors, "error"), plural(warnings, "warning"))
}

// ------------------------------------------------------------------ JSON

fn position(index: &LineIndex, offset: usize) -> Value {
    let lc = index.line_col(offset);
    json!({ "line": lc.line, "column": lc.column })
}

pub fn json_diagnostic(path: &str, index: &LineIndex, d: &Diagnostic) -> Value {
    json!({
        "file": path,
        "code": d.code,
        "severity": d.severity,
        "message": d.message,
        "span": { "start": d.span.start, "end": d.span.end },
        "start": position(index, d.span.start),
        "end": position(index, d.span.end),
        "label": d.label,
        "labels": d.secondary.iter().map(|l| json!({
            "message": l.message,
            "span": { "start": l.span.start, "end": l.span.end },
            "start": position(index, l.span.start),
            "end": position(index, l.span.end),
        })).collect::<Vec<_>>(),
        "help": d.help,
        "fixes": d.fixes.iter().map(|f| json!({
            "title": f.title,
            "edits": f.edits.iter().map(|e| json!({
                "span": { "start": e.span.start, "end": e.span.end },
                "start": position(index, e.span.start),
                "end": position(index, e.span.end),
                "text": e.text,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `{ "diagnostics": [...], "errors": n, "warnings": n }`
pub fn json(reports: &[FileReport]) -> Value {
    let mut all = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for r in reports {
        let index = LineIndex::new(r.src);
        for d in r.diagnostics {
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            all.push(json_diagnostic(r.path, &index, d));
        }
    }
    json!({ "diagnostics": all, "errors": errors, "warnings": warnings })
}

// ------------------------------------------------------------------ SARIF

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A relative path as a URI reference (SARIF's `artifactLocation.uri`).
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            b'\\' => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn sarif_location(path: &str, index: &LineIndex, span: Span) -> Value {
    let (s, e) = (index.line_col(span.start), index.line_col(span.end));
    json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri(path) },
            "region": {
                "startLine": s.line, "startColumn": s.column,
                "endLine": e.line, "endColumn": e.column,
            }
        }
    })
}

fn sarif_fix(path: &str, index: &LineIndex, fix: &Fix) -> Value {
    let replacements: Vec<Value> = fix
        .edits
        .iter()
        .map(|e| {
            let (s, end) = (index.line_col(e.span.start), index.line_col(e.span.end));
            json!({
                "deletedRegion": {
                    "startLine": s.line, "startColumn": s.column,
                    "endLine": end.line, "endColumn": end.column,
                },
                "insertedContent": { "text": e.text },
            })
        })
        .collect();
    json!({
        "description": { "text": fix.title },
        "artifactChanges": [{ "artifactLocation": { "uri": uri(path) }, "replacements": replacements }],
    })
}

/// A SARIF 2.1.0 log with one run, for code-scanning uploads.
pub fn sarif(reports: &[FileReport]) -> Value {
    let rules: Vec<Value> = codes::CODES
        .iter()
        .map(|c| {
            json!({
                "id": c.code,
                "shortDescription": { "text": c.summary },
                "defaultConfiguration": { "level": sarif_level(c.severity) },
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in reports {
        let index = LineIndex::new(r.src);
        for d in r.diagnostics {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            let related: Vec<Value> = d
                .secondary
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let mut loc = sarif_location(r.path, &index, l.span);
                    loc["id"] = json!(i);
                    loc["message"] = json!({ "text": l.message });
                    loc
                })
                .collect();
            let mut result = json!({
                "ruleId": d.code,
                "ruleIndex": codes::CODES.iter().position(|c| c.code == d.code),
                "level": sarif_level(d.severity),
                "message": { "text": text },
                "locations": [sarif_location(r.path, &index, d.span)],
            });
            if !related.is_empty() {
                result["relatedLocations"] = json!(related);
            }
            if !d.fixes.is_empty() {
                result["fixes"] = json!(d.fixes.iter().map(|f| sarif_fix(r.path, &index, f)).collect::<Vec<_>>());
            }
            results.push(result);
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "kflow",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/kflow-dev/kflow",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

// ------------------------------------------------------------------ GitHub

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands, one line per diagnostic.
pub fn github(report: &FileReport) -> String {
    let index = LineIndex::new(report.src);
    let mut out = String::new();
    for d in report.diagnostics {
        let (s, e) = (index.line_col(d.span.start), index.line_col(d.span.end));
        let cmd = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = d.message.clone();
        if let Some(h) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(h);
        }
        out.push_str(&format!(
            "::{cmd} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            escape_property(report.path),
            s.line,
            s.column,
            e.line,
            e.column,
            escape_property(d.code),
            escape_data(&message)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        let idx = LineIndex::new("ab\n日本x\n");
        assert_eq!(idx.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(idx.line_col(3), LineCol { line: 2, column: 1 });
        assert_eq!(idx.line_col(9), LineCol { line: 2, column: 3 });
        assert_eq!(idx.line_len(4), 7);
    }

    #[test]
    fn sarif_uris_are_encoded() {
        assert_eq!(uri("pipelines/my flow.kflow"), "pipelines/my%20flow.kflow");
        assert_eq!(uri("a/b-c_d.kflow"), "a/b-c_d.kflow");
    }

    #[test]
    fn github_escapes() {
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
        assert_eq!(escape_data("x\ny"), "x%0Ay");
    }
}
