//! Bytes kept on disk rather than in memory: images and build contexts can
//! be gigabytes, so they pass through temporary files, copied in chunks and
//! hashed on the way, and are sent from those files as streams.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

/// How much is read or sent at a time.
pub const CHUNK: usize = 256 * 1024;

/// A file written by [`to_file`] (or compressed from one): where it is,
/// its size and its digest.
#[derive(Clone, Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
}

/// Set when the work a blocking thread does is no longer wanted (its task
/// was cancelled or failed): the copy stops at its next chunk.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Stops the work when dropped: held by the async side, so that a
/// cancelled task also stops the blocking thread working for it.
pub struct StopOnDrop(pub Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Copies `from` into `to` chunk by chunk; returns how many bytes went
/// and the digest of them.
pub fn copy(from: &mut impl Read, to: &mut impl Write, stop: &Stop) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut size = 0u64;
    loop {
        if stop.stopped() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        size += n as u64;
    }
    to.flush()?;
    Ok((size, format!("sha256:{:x}", hasher.finalize())))
}

/// Copies `from` into a new file at `path`.
pub fn to_file(from: &mut impl Read, path: PathBuf, stop: &Stop) -> io::Result<Spooled> {
    let mut file = io::BufWriter::with_capacity(CHUNK, File::create(&path)?);
    let (size, digest) = copy(from, &mut file, stop)?;
    Ok(Spooled { path, size, digest })
}

/// A writer that counts and hashes what goes through it (the compressed
/// side of a compression, whose digest names the blob).
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The writer back, with the size and digest of what was written.
    pub fn finish(mut self) -> io::Result<(W, u64, String)> {
        self.inner.flush()?;
        Ok((self.inner, self.size, format!("sha256:{:x}", self.hasher.finalize())))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a file that must be small (metadata): at most `max` bytes.
pub fn read_small(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("{what} is larger than {} MiB", max >> 20));
    }
    Ok(bytes)
}

/// A file's bytes, from its current position, as a stream.
pub fn stream(file: File) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK)
}
