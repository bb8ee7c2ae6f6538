//! The kflow language server: `kflow lsp` speaks the Language Server
//! Protocol over stdio, on top of the compiler's analysis API. This crate is
//! the only one that knows LSP types.

mod at;
mod completion;
mod context;
mod convert;
mod document;
mod framing;
mod hover;
mod lexer;
mod navigate;
mod outline;
mod position;
mod server;
mod tokens;

pub use server::DEBOUNCE;

/// Serves one client on stdin/stdout until it exits.
pub fn serve_stdio() -> std::io::Result<()> {
    // Panics are caught per request and reported to the client; stderr (the
    // editor's log) gets one line each instead of a backtrace.
    // Only where: the message may quote the document being analysed.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("kflow lsp: internal error{at}");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (service, socket) = tower_lsp_server::LspService::new(server::Backend::new);
        // stdin → checked frames → server → frames (and error answers) → stdout.
        let (to_server, server_reads) = tokio::io::duplex(1 << 16);
        let (server_writes, from_server) = tokio::io::duplex(1 << 16);
        // Bounded: a flood of malformed messages waits for stdout.
        let (errors_tx, errors_rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(framing::filter_input(tokio::io::stdin(), to_server, errors_tx));
        let output = tokio::spawn(framing::merge_output(from_server, tokio::io::stdout(), errors_rx));
        tower_lsp_server::Server::new(server_reads, server_writes, socket)
            .serve(service)
            .await;
        // What the server wrote last (the `shutdown` answer) reaches stdout;
        // its writer may outlive `serve`, so this does not wait for its end.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), output).await;
    });
    // The stdin reader is a blocking read that only the client can end.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

#[cfg(test)]
mod never_panics {
    use std::sync::Arc;

    use proptest::prelude::*;

    use crate::document::{run_analysis, Snapshot};
    use crate::position::LineIndex;

    proptest! {
        /// Any text, any cursor: every pure piece of the server answers
        /// without panicking (the handlers also catch panics, as a last
        /// resort).
        #[test]
        fn on_any_text(src in "(task |flow f |input |[a-z]{1,3}|[.:={}\\[\\](),\"$@!?<>]|\\$\\{|//|/\\*|\\*/|\"\"\"|\n| |🚀|構){0,300}", cut in any::<usize>()) {
            let mut pos = cut % (src.len() + 1);
            while !src.is_char_boundary(pos) {
                pos -= 1;
            }
            let snap = Snapshot { version: 1, index: Arc::new(LineIndex::new(&src)), text: Arc::new(src.clone()) };
            let cursor = crate::context::at(&src, pos);
            let analyzed = run_analysis(snap.clone(), &Default::default(), None).unwrap();
            crate::completion::complete(&cursor, &snap, pos, Some(&analyzed));
            crate::tokens::tokens(&snap, &analyzed.analysis);
            crate::outline::symbols(&analyzed.analysis.file, &snap);
            if let Some(target) = crate::at::at(&analyzed.analysis, pos) {
                crate::hover::markdown(&target);
                let _ = crate::navigate::rename(&target, "renamed");
            }
            let position = snap.index.position(&src, pos);
            prop_assert_eq!(snap.index.offset(&src, position), pos);
        }
    }
}
