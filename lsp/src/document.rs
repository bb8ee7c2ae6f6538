//! Open documents: their text at the latest version, and the analysis of
//! some version (the latest once the debounced pass has run).

use std::sync::Arc;

use kflow_compiler::analysis::{analyze, Analysis, Options};
use tower_lsp_server::ls_types::TextDocumentContentChangeEvent;

use crate::position::LineIndex;

/// One version of a document's text.
#[derive(Clone)]
pub struct Snapshot {
    pub version: i32,
    pub text: Arc<String>,
    pub index: Arc<LineIndex>,
}

/// A snapshot and what the compiler made of it.
pub struct Analyzed {
    pub snap: Snapshot,
    pub analysis: Analysis,
}

pub struct Document {
    pub snap: Snapshot,
    pub options: Options,
    pub analyzed: Option<Arc<Analyzed>>,
}

impl Document {
    pub fn new(text: String, version: i32, options: Options) -> Self {
        Document {
            snap: Snapshot {
                version,
                index: Arc::new(LineIndex::new(&text)),
                text: Arc::new(text),
            },
            options,
            analyzed: None,
        }
    }

    /// Applies the changes of one `didChange`, in order. Ranges are read
    /// against the text as the previous change left it, as the protocol says.
    pub fn apply(&mut self, changes: Vec<TextDocumentContentChangeEvent>, version: i32) {
        let mut text = self.snap.text.as_ref().clone();
        let mut index = self.snap.index.clone();
        for change in changes {
            match change.range {
                Some(range) => {
                    let span = index.span(&text, range);
                    text.replace_range(span.start..span.end, &change.text);
                }
                None => text = change.text,
            }
            index = Arc::new(LineIndex::new(&text));
        }
        self.snap = Snapshot {
            version,
            text: Arc::new(text),
            index,
        };
    }

    /// The analysis of the latest version, when there is one.
    pub fn current(&self) -> Option<Arc<Analyzed>> {
        self.analyzed.clone().filter(|a| a.snap.version == self.snap.version)
    }

    /// Keeps an analysis unless a newer one is already kept.
    pub fn keep(&mut self, analyzed: Arc<Analyzed>) {
        if self
            .analyzed
            .as_ref()
            .is_none_or(|a| a.snap.version <= analyzed.snap.version)
        {
            self.analyzed = Some(analyzed);
        }
    }
}

/// Runs the compiler on a snapshot, turning a panic into an error message
/// (the server must outlive a compiler bug). `fault` is a test hook: text
/// containing it makes the analysis panic.
pub fn run_analysis(snap: Snapshot, options: &Options, fault: Option<&str>) -> Result<Analyzed, String> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if fault.is_some_and(|f| snap.text.contains(f)) {
            panic!("injected fault (KFLOW_LSP_FAULT)");
        }
        analyze(&snap.text, options)
    }));
    match result {
        Ok(analysis) => Ok(Analyzed { snap, analysis }),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
