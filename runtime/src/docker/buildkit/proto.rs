//! The few protobuf messages a BuildKit session exchanges, read and written
//! by hand: five small messages do not justify a code generator and the
//! gRPC stack behind it (docs/performance.md weighs that).
//!
//! Wire format: each field is a varint key `(number << 3) | wire type`,
//! then a varint, 8 or 4 bytes, or a varint length and that many bytes.

/// A message that does not parse: the engine sent something we cannot read.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// One field's value as the wire carries it.
#[derive(Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 64- and 32-bit fields: no message here uses them.
    Fixed,
}

/// The fields of one message, in order.
pub struct Fields<'a> {
    buf: &'a [u8],
}

pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn varint(buf: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(Malformed)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Field<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut read = || -> Result<(u32, Field<'a>), Malformed> {
            let key = varint(&mut self.buf)?;
            let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
            let field = match key & 7 {
                0 => Field::Varint(varint(&mut self.buf)?),
                1 | 5 => {
                    let size = if key & 7 == 1 { 8 } else { 4 };
                    self.buf = self.buf.get(size..).ok_or(Malformed)?;
                    Field::Fixed
                }
                2 => {
                    let len = usize::try_from(varint(&mut self.buf)?).map_err(|_| Malformed)?;
                    if len > self.buf.len() {
                        return Err(Malformed);
                    }
                    let (bytes, rest) = self.buf.split_at(len);
                    self.buf = rest;
                    Field::Bytes(bytes)
                }
                _ => return Err(Malformed),
            };
            Ok((number, field))
        };
        let item = read();
        if item.is_err() {
            // Nothing after a malformed field can be trusted.
            self.buf = &[];
        }
        Some(item)
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field (string, bytes or message).
pub fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, u64::from(number) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint field (enums, integers, booleans).
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_varint(out, u64::from(number) << 3);
    put_varint(out, value);
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `google.protobuf.Timestamp` as seconds since the epoch.
fn timestamp(bytes: &[u8]) -> Result<f64, Malformed> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for field in fields(bytes) {
        match field? {
            (1, Field::Varint(v)) => seconds = v as i64,
            (2, Field::Varint(v)) => nanos = v as i64,
            _ => {}
        }
    }
    Ok(seconds as f64 + nanos as f64 / 1e9)
}

/// A step of the build graph (`moby.buildkit.v1.Vertex`).
#[derive(Debug, Default, PartialEq)]
pub struct Vertex {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    pub started: Option<f64>,
    pub completed: Option<f64>,
    pub error: String,
}

/// Output a step wrote (`moby.buildkit.v1.VertexLog`).
#[derive(Debug, Default, PartialEq)]
pub struct Log {
    pub vertex: String,
    pub msg: Vec<u8>,
}

/// A warning about the Dockerfile (`moby.buildkit.v1.VertexWarning`).
#[derive(Debug, Default, PartialEq)]
pub struct Warning {
    pub vertex: String,
    pub short: String,
}

/// One progress message of a build (`moby.buildkit.v1.StatusResponse`).
/// Byte counts of pulls (`statuses`) are left out: kflow logs steps.
#[derive(Debug, Default, PartialEq)]
pub struct Status {
    pub vertexes: Vec<Vertex>,
    pub logs: Vec<Log>,
    pub warnings: Vec<Warning>,
}

impl Status {
    pub fn decode(bytes: &[u8]) -> Result<Status, Malformed> {
        let mut status = Status::default();
        for field in fields(bytes) {
            match field? {
                (1, Field::Bytes(b)) => status.vertexes.push(vertex(b)?),
                (3, Field::Bytes(b)) => status.logs.push(log(b)?),
                (4, Field::Bytes(b)) => status.warnings.push(warning(b)?),
                _ => {}
            }
        }
        Ok(status)
    }
}

fn vertex(bytes: &[u8]) -> Result<Vertex, Malformed> {
    let mut v = Vertex::default();
    for field in fields(bytes) {
        match field? {
            (1, Field::Bytes(b)) => v.digest = text(b),
            (3, Field::Bytes(b)) => v.name = text(b),
            (4, Field::Varint(c)) => v.cached = c != 0,
            (5, Field::Bytes(b)) => v.started = Some(timestamp(b)?),
            (6, Field::Bytes(b)) => v.completed = Some(timestamp(b)?),
            (7, Field::Bytes(b)) => v.error = text(b),
            _ => {}
        }
    }
    Ok(v)
}

fn log(bytes: &[u8]) -> Result<Log, Malformed> {
    let mut l = Log::default();
    for field in fields(bytes) {
        match field? {
            (1, Field::Bytes(b)) => l.vertex = text(b),
            (4, Field::Bytes(b)) => l.msg = b.to_vec(),
            _ => {}
        }
    }
    Ok(l)
}

fn warning(bytes: &[u8]) -> Result<Warning, Malformed> {
    let mut w = Warning::default();
    for field in fields(bytes) {
        match field? {
            (1, Field::Bytes(b)) => w.vertex = text(b),
            (3, Field::Bytes(b)) => w.short = text(b),
            _ => {}
        }
    }
    Ok(w)
}

/// The `ID` of a `moby.buildkit.secrets.v1.GetSecretRequest`.
pub fn secret_id(bytes: &[u8]) -> Result<String, Malformed> {
    let mut id = String::new();
    for field in fields(bytes) {
        if let (1, Field::Bytes(b)) = field? {
            id = std::str::from_utf8(b).map_err(|_| Malformed)?.to_string();
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_back_as_written() {
        let mut ts = Vec::new();
        put_varint_field(&mut ts, 1, 1_700_000_000);
        put_varint_field(&mut ts, 2, 500_000_000);
        let mut v = Vec::new();
        put_bytes(&mut v, 1, b"sha256:abc");
        put_bytes(&mut v, 2, b"sha256:input");
        put_bytes(&mut v, 3, b"[2/2] RUN make");
        put_varint_field(&mut v, 4, 1);
        put_bytes(&mut v, 5, &ts);
        put_bytes(&mut v, 7, b"exit code: 2");
        let mut l = Vec::new();
        put_bytes(&mut l, 1, b"sha256:abc");
        put_varint_field(&mut l, 3, 1);
        put_bytes(&mut l, 4, b"hello\n");
        let mut msg = Vec::new();
        put_bytes(&mut msg, 1, &v);
        put_bytes(&mut msg, 3, &l);
        let status = Status::decode(&msg).unwrap();
        assert_eq!(
            status.vertexes,
            vec![Vertex {
                digest: "sha256:abc".into(),
                name: "[2/2] RUN make".into(),
                cached: true,
                started: Some(1_700_000_000.5),
                completed: None,
                error: "exit code: 2".into(),
            }]
        );
        assert_eq!(status.logs[0].msg, b"hello\n");
        assert_eq!(status.logs[0].vertex, "sha256:abc");
    }

    #[test]
    fn truncated_and_hostile_bytes_are_refused_not_trusted() {
        let mut v = Vec::new();
        put_bytes(&mut v, 3, b"name");
        for cut in 0..v.len() {
            let mut msg = Vec::new();
            put_bytes(&mut msg, 1, &v[..cut]);
            // A cut inner message is still a well-formed outer one; what
            // matters is that nothing panics and nothing reads past the end.
            let _ = Status::decode(&msg);
            let _ = Status::decode(&msg[..msg.len() - 1]);
        }
        // A length far beyond the buffer.
        assert_eq!(Status::decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(Malformed));
        // A varint that never ends.
        assert_eq!(
            Status::decode(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(Malformed)
        );
        // Wire types 3, 4, 6 and 7 do not exist here.
        assert_eq!(Status::decode(&[0x0b]), Err(Malformed));
    }

    #[test]
    fn a_secret_request_names_its_id() {
        let mut req = Vec::new();
        put_bytes(&mut req, 1, b"npmrc");
        let mut annotation = Vec::new();
        put_bytes(&mut annotation, 1, b"k");
        put_bytes(&mut annotation, 2, b"v");
        put_bytes(&mut req, 2, &annotation);
        assert_eq!(secret_id(&req).unwrap(), "npmrc");
    }
}
