//! Standard output for every command. A reader that goes away (`| head`)
//! ends a command quietly, as it ends other Unix tools, instead of the
//! panic `println!` makes of a closed pipe; `kflow run` goes on with its
//! execution instead (a pager quitting must not stop a release half way)
//! and only stops printing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `kflow run`: an execution outlives its reader.
static OUTLIVE_READER: AtomicBool = AtomicBool::new(false);
/// Set once standard output could not be written.
static GONE: AtomicBool = AtomicBool::new(false);

/// From now on, a closed standard output stops the printing, not the
/// process.
pub fn outlive_reader() {
    OUTLIVE_READER.store(true, Ordering::Relaxed);
}

/// Writes to standard output (see the module's note on failures).
pub fn write(args: std::fmt::Arguments) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        closed(&e);
    }
}

/// Writes bytes as they are (a generated script or page).
pub fn write_bytes(bytes: &[u8]) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        closed(&e);
    }
}

/// Standard output failed with `e`.
pub fn closed(e: &std::io::Error) {
    GONE.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        // A full disk or a revoked terminal is worth a word.
        eprintln!("kflow: cannot write to standard output: {}", super::io_reason(e));
    }
    if !OUTLIVE_READER.load(Ordering::Relaxed) {
        std::process::exit(if e.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            2
        });
    }
}

/// `println!` to standard output, without the panic on a closed pipe.
macro_rules! outln {
    () => { $crate::cmd::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cmd::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use outln;
