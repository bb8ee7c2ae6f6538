//! Gzip for layers: deflate at its fastest level, except for stretches that
//! cannot compress (already compressed files, random data), which go into
//! stored blocks at the speed of a copy. Deflating incompressible bytes costs
//! the most time of a push and gains nothing (level 1 even grows them by 5%);
//! a stretch is judged by its byte entropy. The gzip framing (RFC 1952) is
//! written here, around raw deflate, since the stored blocks bypass deflate.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Names what this encoder makes of a given input. Pushes remember which
/// blob a layer became under it (`layer_cache.rs`): whatever changes the
/// output for some input (level, stretch, threshold, zlib) needs a new name,
/// and the test `the_format_is_pinned` fails until it has one.
pub const FORMAT: &str = "kflow-gzip-1";
/// How much is judged at once.
const STRETCH: usize = 256 * 1024;
/// Bits a byte above which a stretch is stored: random bytes measure 7.99,
/// compressed files about as much; binaries and text stay far below.
const STORE_ABOVE: f64 = 7.95;
/// Magic, deflate, no flags, no time, no extra flags, unknown OS: the
/// output is a function of the input alone, so the same layer is the same
/// blob every time.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A gzip encoder over `W`.
pub struct Encoder<W: Write> {
    inner: W,
    deflate: Compress,
    crc: crc32fast::Hasher,
    size: u64,
    stretch: Vec<u8>,
    out: Vec<u8>,
    /// Whether the last stretch went stored (deflate is then flushed and
    /// reset: nothing it emits later refers to bytes before).
    storing: bool,
    started: bool,
}

impl<W: Write> Encoder<W> {
    pub fn new(inner: W) -> Self {
        Encoder {
            inner,
            deflate: Compress::new(Compression::fast(), false),
            crc: crc32fast::Hasher::new(),
            size: 0,
            stretch: Vec::with_capacity(STRETCH),
            out: Vec::with_capacity(STRETCH + 4096),
            storing: false,
            started: false,
        }
    }

    /// Ends the stream; the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.stretch_done()?;
        self.start()?;
        if self.storing {
            // A last, empty stored block.
            self.inner.write_all(&[1, 0, 0, 0xff, 0xff])?;
        } else {
            self.deflate_run(&[], FlushCompress::Finish)?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&(self.size as u32).to_le_bytes())?;
        Ok(self.inner)
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.inner.write_all(&HEADER)?;
            self.started = true;
        }
        Ok(())
    }

    fn stretch_done(&mut self) -> io::Result<()> {
        if self.stretch.is_empty() {
            return Ok(());
        }
        self.start()?;
        let stretch = std::mem::take(&mut self.stretch);
        self.crc.update(&stretch);
        self.size += stretch.len() as u64;
        if entropy(&stretch) > STORE_ABOVE {
            if !self.storing {
                // Byte-aligned, and deflate forgets what it saw.
                self.deflate_run(&[], FlushCompress::Full)?;
                self.storing = true;
            }
            for block in stretch.chunks(usize::from(u16::MAX)) {
                let len = block.len() as u16;
                self.inner.write_all(&[0])?;
                self.inner.write_all(&len.to_le_bytes())?;
                self.inner.write_all(&(!len).to_le_bytes())?;
                self.inner.write_all(block)?;
            }
        } else {
            self.storing = false;
            self.deflate_run(&stretch, FlushCompress::None)?;
        }
        self.stretch = stretch;
        self.stretch.clear();
        Ok(())
    }

    /// Feeds `input` to deflate, writing what comes out, until all of it
    /// is taken, flushed as `flush` says.
    fn deflate_run(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.out.clear();
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            self.inner.write_all(&self.out)?;
            let full = self.out.len() == self.out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if matches!(flush, FlushCompress::Finish) => {}
                _ if input.is_empty() && !full => return Ok(()),
                _ => {}
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(STRETCH - self.stretch.len());
        self.stretch.extend_from_slice(&buf[..n]);
        if self.stretch.len() == STRETCH {
            self.stretch_done()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Shannon entropy of the bytes, in bits a byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(Vec::new());
        // Uneven writes, as a copy makes them.
        for piece in data.chunks(100_003) {
            enc.write_all(piece).unwrap();
        }
        let gz = enc.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        gz
    }

    /// A deterministic stand-in for random bytes (xorshift).
    fn noise(len: usize, mut x: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn mixed_stretches_decode_to_the_input_and_noise_is_stored() {
        let text: Vec<u8> = b"FROM scratch\nCOPY busybox /bin/busybox\n".repeat(20_000);
        let random = noise(1 << 20, 7);
        let mut mixed = text.clone();
        mixed.extend_from_slice(&random);
        mixed.extend_from_slice(&text);
        mixed.extend_from_slice(&random[..12_345]);
        let gz = round_trip(&mixed);
        // The text shrinks; the noise is stored (a few bytes a block).
        assert!(gz.len() < random.len() + 12_345 + 100_000, "{}", gz.len());
        let stored = round_trip(&random);
        assert!(stored.len() < random.len() + 1024, "noise grew to {}", stored.len());
        assert!(round_trip(&text).len() < text.len() / 20);
        round_trip(b"");
        // The same bytes, the same blob.
        assert_eq!(round_trip(&mixed), gz);
    }

    #[test]
    fn the_format_is_pinned() {
        let mut input: Vec<u8> = b"usr/bin/busybox\0".repeat(50_000);
        input.extend_from_slice(&noise(300_000, 3));
        let digest = crate::registry::client::sha256_digest(&round_trip(&input));
        assert_eq!(
            (FORMAT, digest.as_str()),
            (
                "kflow-gzip-1",
                "sha256:363e02f38bbb9c42237d771c38327702c811cb114594da1b3a3ce8dc0c25499c"
            ),
            "the encoder's output changed: give FORMAT a new name"
        );
    }
}
