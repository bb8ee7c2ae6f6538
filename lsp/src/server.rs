//! The protocol handlers. Each one takes what it needs from the document
//! store under a short lock and computes without it; every computation runs
//! under `catch_unwind`, so a bug answers one request with nothing and a log
//! message instead of taking the server down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kflow_compiler::analysis::Options;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::document::{panic_message, run_analysis, Analyzed, Document, Snapshot};
use crate::{at, completion, context, convert, hover, navigate, outline, tokens};

/// Quiet time after an edit before the file is checked: typing a word costs
/// one check, not one per key.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

pub struct Backend {
    client: Client,
    state: Arc<State>,
}

struct State {
    docs: Mutex<HashMap<Uri, Document>>,
    /// Test hook (`KFLOW_LSP_FAULT`): analysing a text holding this panics.
    fault: Option<String>,
}

impl Backend {
    pub fn new(client: Client) -> Self {
        Backend {
            client,
            state: Arc::new(State {
                docs: Mutex::new(HashMap::new()),
                fault: std::env::var("KFLOW_LSP_FAULT").ok().filter(|f| !f.is_empty()),
            }),
        }
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, HashMap<Uri, Document>> {
        // A panic while the lock was held left consistent data (every
        // mutation is one assignment): keep going.
        self.state.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f`, turning a panic into a log message and no answer.
    async fn guarded<T>(&self, what: &str, f: impl FnOnce() -> Option<T>) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(v) => v,
            Err(panic) => {
                let msg = format!("kflow: {what} failed: {}", panic_message(panic.as_ref()));
                self.client.log_message(MessageType::ERROR, msg).await;
                None
            }
        }
    }

    /// The analysis of the latest text, computed now when the debounced one
    /// has not run yet.
    async fn fresh(&self, uri: &Uri) -> Option<Arc<Analyzed>> {
        let (snap, options) = {
            let docs = self.docs();
            let doc = docs.get(uri)?;
            if let Some(a) = doc.current() {
                return Some(a);
            }
            (doc.snap.clone(), doc.options.clone())
        };
        self.analyze(uri, snap, options).await
    }

    /// The latest text and the newest analysis there is (possibly of an
    /// older text; computed when there is none).
    async fn latest(&self, uri: &Uri) -> Option<(Snapshot, Option<Arc<Analyzed>>)> {
        let (snap, analyzed) = {
            let docs = self.docs();
            let doc = docs.get(uri)?;
            (doc.snap.clone(), doc.analyzed.clone())
        };
        match analyzed {
            Some(a) => Some((snap, Some(a))),
            None => {
                let a = self.fresh(uri).await;
                Some((snap, a))
            }
        }
    }

    async fn analyze(&self, uri: &Uri, snap: Snapshot, options: Options) -> Option<Arc<Analyzed>> {
        let fault = self.state.fault.clone();
        let version = snap.version;
        let result = tokio::task::spawn_blocking(move || run_analysis(snap, &options, fault.as_deref())).await;
        match result {
            Ok(Ok(analyzed)) => {
                let analyzed = Arc::new(analyzed);
                if let Some(doc) = self.docs().get_mut(uri) {
                    doc.keep(analyzed.clone());
                }
                Some(analyzed)
            }
            Ok(Err(panic)) => {
                let msg = format!("kflow: checking {} (version {version}) failed: {panic}", uri.as_str());
                self.client.log_message(MessageType::ERROR, msg).await;
                None
            }
            Err(e) => {
                let msg = format!("kflow: checking {} failed: {e}", uri.as_str());
                self.client.log_message(MessageType::ERROR, msg).await;
                None
            }
        }
    }

    /// Checks the document at `version` and publishes its diagnostics,
    /// unless a newer version came in meanwhile (that one publishes).
    async fn publish(&self, uri: Uri, version: i32) {
        let Some(analyzed) = self.fresh(&uri).await else { return };
        if analyzed.snap.version != version {
            return;
        }
        let still_current = self.docs().get(&uri).is_some_and(|d| d.snap.version == version);
        if !still_current {
            return;
        }
        let diags = self
            .guarded("publishing diagnostics", || {
                Some(
                    analyzed
                        .analysis
                        .diagnostics
                        .iter()
                        .map(|d| convert::diagnostic(&uri, &analyzed.snap, d))
                        .collect::<Vec<_>>(),
                )
            })
            .await;
        if let Some(diags) = diags {
            self.client.publish_diagnostics(uri, diags, Some(version)).await;
        }
    }

    /// Publishes after the debounce, if no edit came in meanwhile.
    fn schedule(&self, uri: Uri, version: i32) {
        let this = Backend {
            client: self.client.clone(),
            state: self.state.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(DEBOUNCE).await;
            let current = this.docs().get(&uri).is_some_and(|d| d.snap.version == version);
            if current {
                this.publish(uri, version).await;
            }
        });
    }

    /// The snapshot, byte offset and analysis for a position request.
    async fn at_position(&self, doc: &TextDocumentPositionParams) -> Option<(Arc<Analyzed>, usize)> {
        let analyzed = self.fresh(&doc.text_document.uri).await?;
        let offset = analyzed.snap.index.offset(&analyzed.snap.text, doc.position);
        Some((analyzed, offset))
    }
}

/// Paths in a saved file resolve next to it; an unsaved buffer's are not
/// checked.
fn options_for(uri: &Uri) -> Options {
    let dir = uri
        .as_str()
        .starts_with("file:")
        .then(|| uri.to_file_path())
        .flatten()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .filter(|d| d.is_absolute());
    dir.map_or_else(Options::default, Options::in_dir)
}

fn locations(uri: &Uri, snap: &Snapshot, spans: &[kflow_compiler::Span]) -> Vec<Location> {
    spans
        .iter()
        .map(|s| Location::new(uri.clone(), snap.index.range(&snap.text, *s)))
        .collect()
}

impl LanguageServer for Backend {
    async fn initialize(&self, _: InitializeParams) -> Result<InitializeResult> {
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "kflow".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                position_encoding: Some(PositionEncodingKind::UTF16),
                text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                    open_close: Some(true),
                    change: Some(TextDocumentSyncKind::INCREMENTAL),
                    save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                    ..Default::default()
                })),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into(), ":".into(), "[".into(), "{".into()]),
                    ..Default::default()
                }),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Right(RenameOptions {
                    prepare_provider: Some(true),
                    work_done_progress_options: Default::default(),
                })),
                document_symbol_provider: Some(OneOf::Left(true)),
                document_formatting_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                    code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                    ..Default::default()
                })),
                semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
                    SemanticTokensOptions {
                        legend: tokens::legend(),
                        full: Some(SemanticTokensFullOptions::Bool(true)),
                        range: None,
                        work_done_progress_options: Default::default(),
                    },
                )),
                ..Default::default()
            },
            offset_encoding: None,
        })
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let options = options_for(&doc.uri);
        self.docs()
            .insert(doc.uri.clone(), Document::new(doc.text, doc.version, options));
        // Opening is not typing: check at once.
        self.publish(doc.uri, doc.version).await;
    }

    // Applied synchronously, under the lock and before any await: the server
    // starts handlers in the order messages arrive, so edits apply in that
    // order even though handlers run concurrently; a version that is not
    // newer than the document's is dropped rather than applied twice.
    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = params.text_document.version;
        let applied = {
            let mut docs = self.docs();
            match docs.get_mut(&uri) {
                Some(doc) if version > doc.snap.version => {
                    let changes = params.content_changes;
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.apply(changes, version))).is_ok()
                }
                _ => false,
            }
        };
        if applied {
            self.schedule(uri, version);
        }
    }

    // Saving does not change the text, but files next to it may have
    // appeared or gone (`kflow::lint::missing-path`): check again.
    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = {
            let mut docs = self.docs();
            let Some(doc) = docs.get_mut(&uri) else { return };
            doc.analyzed = None;
            doc.snap.version
        };
        self.publish(uri, version).await;
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        self.docs().remove(&uri);
        self.client.publish_diagnostics(uri, Vec::new(), None).await;
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let uri = &params.text_document_position.text_document.uri;
        let Some((snap, analyzed)) = self.latest(uri).await else {
            return Ok(None);
        };
        let position = params.text_document_position.position;
        let items = self
            .guarded("completion", || {
                let pos = snap.index.offset(&snap.text, position);
                let cursor = context::at(&snap.text, pos);
                Some(completion::complete(&cursor, &snap, pos, analyzed.as_deref()))
            })
            .await;
        Ok(items.map(|items| {
            CompletionResponse::List(CompletionList {
                is_incomplete: false,
                items,
            })
        }))
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let Some((a, offset)) = self.at_position(&params.text_document_position_params).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("hover", || {
                let target = at::at(&a.analysis, offset)?;
                let span = target.span();
                Some(Hover {
                    contents: HoverContents::Markup(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: hover::markdown(&target),
                    }),
                    range: Some(a.snap.index.range(&a.snap.text, span)),
                })
            })
            .await)
    }

    async fn goto_definition(&self, params: GotoDefinitionParams) -> Result<Option<GotoDefinitionResponse>> {
        let uri = params.text_document_position_params.text_document.uri.clone();
        let Some((a, offset)) = self.at_position(&params.text_document_position_params).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("definition", || {
                let span = navigate::definition(&at::at(&a.analysis, offset)?)?;
                Some(GotoDefinitionResponse::Scalar(Location::new(
                    uri,
                    a.snap.index.range(&a.snap.text, span),
                )))
            })
            .await)
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let uri = params.text_document_position.text_document.uri.clone();
        let Some((a, offset)) = self.at_position(&params.text_document_position).await else {
            return Ok(None);
        };
        let with_declaration = params.context.include_declaration;
        Ok(self
            .guarded("references", || {
                let spans = navigate::references(&at::at(&a.analysis, offset)?, with_declaration);
                Some(locations(&uri, &a.snap, &spans))
            })
            .await)
    }

    async fn prepare_rename(&self, params: TextDocumentPositionParams) -> Result<Option<PrepareRenameResponse>> {
        let Some((a, offset)) = self.at_position(&params).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("rename", || {
                let span = navigate::renameable(&at::at(&a.analysis, offset)?)?;
                Some(PrepareRenameResponse::Range(a.snap.index.range(&a.snap.text, span)))
            })
            .await)
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let uri = params.text_document_position.text_document.uri.clone();
        let Some((a, offset)) = self.at_position(&params.text_document_position).await else {
            return Ok(None);
        };
        let new = params.new_name;
        let result = self
            .guarded("rename", || {
                let target = at::at(&a.analysis, offset)?;
                Some(navigate::rename(&target, &new).map(|spans| {
                    let edits = spans
                        .iter()
                        .map(|s| TextEdit::new(a.snap.index.range(&a.snap.text, *s), new.clone()))
                        .collect();
                    WorkspaceEdit {
                        changes: Some(HashMap::from([(uri, edits)])),
                        ..Default::default()
                    }
                }))
            })
            .await;
        match result {
            None => Ok(None),
            Some(Ok(edit)) => Ok(Some(edit)),
            Some(Err(why)) => Err(Error::invalid_params(why)),
        }
    }

    async fn document_symbol(&self, params: DocumentSymbolParams) -> Result<Option<DocumentSymbolResponse>> {
        let Some(a) = self.fresh(&params.text_document.uri).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("document symbols", || {
                Some(DocumentSymbolResponse::Nested(outline::symbols(
                    &a.analysis.file,
                    &a.snap,
                )))
            })
            .await)
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let snap = match self.docs().get(&params.text_document.uri) {
            Some(doc) => doc.snap.clone(),
            None => return Ok(None),
        };
        let formatted = self
            .guarded("formatting", || kflow_compiler::format::format(&snap.text).ok())
            .await;
        let Some(formatted) = formatted else {
            // Syntax errors: the diagnostics say where; nothing to change.
            return Ok(None);
        };
        Ok(Some(minimal_edit(&snap, &formatted).into_iter().collect()))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri.clone();
        let Some(a) = self.fresh(&uri).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("code actions", || {
                let actions = convert::quick_fixes(&uri, &a.snap, &a.analysis.diagnostics, params.range);
                Some(actions.into_iter().map(CodeActionOrCommand::CodeAction).collect())
            })
            .await)
    }

    async fn semantic_tokens_full(&self, params: SemanticTokensParams) -> Result<Option<SemanticTokensResult>> {
        let Some(a) = self.fresh(&params.text_document.uri).await else {
            return Ok(None);
        };
        Ok(self
            .guarded("semantic tokens", || {
                Some(SemanticTokensResult::Tokens(SemanticTokens {
                    result_id: None,
                    data: tokens::tokens(&a.snap, &a.analysis),
                }))
            })
            .await)
    }
}

/// One edit replacing only what differs between the text and its
/// formatted form, so the editor keeps the cursor and folds elsewhere.
fn minimal_edit(snap: &Snapshot, formatted: &str) -> Option<TextEdit> {
    let old = snap.text.as_str();
    if old == formatted {
        return None;
    }
    let mut prefix = old.bytes().zip(formatted.bytes()).take_while(|(a, b)| a == b).count();
    while !old.is_char_boundary(prefix) || !formatted.is_char_boundary(prefix) {
        prefix -= 1;
    }
    let max_suffix = old.len().min(formatted.len()) - prefix;
    let mut suffix = old
        .bytes()
        .rev()
        .zip(formatted.bytes().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    while !old.is_char_boundary(old.len() - suffix) || !formatted.is_char_boundary(formatted.len() - suffix) {
        suffix -= 1;
    }
    let span = kflow_compiler::Span::new(prefix, old.len() - suffix);
    Some(TextEdit::new(
        snap.index.range(old, span),
        formatted[prefix..formatted.len() - suffix].to_string(),
    ))
}
