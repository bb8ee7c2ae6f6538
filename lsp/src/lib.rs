//! The kflow language server: `kflow lsp` speaks the Language Server
//! Protocol over stdio, on top of the compiler's analysis API. This crate is
//! the only one that knows LSP types.

mod at;
mod completion;
mod context;
mod convert;
mod document;
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
    std::panic::set_hook(Box::new(|info| {
        eprintln!("kflow lsp: internal error: {info}");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (service, socket) = tower_lsp_server::LspService::new(server::Backend::new);
        tower_lsp_server::Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
            .serve(service)
            .await;
    });
    Ok(())
}
