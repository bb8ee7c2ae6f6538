//! Secret values: opaque in memory (no `Debug`/`Display`/`Serialize` that
//! could print them) and redacted by value from any text that leaves a task.
//!
//! A secret is searched for in every form a program is likely to print it
//! in: as it is, each of its lines, and base64 (standard and URL-safe, at
//! every alignment inside a longer encoded text), hex, URL-encoded and
//! JSON-escaped. Matches may overlap; the union of every match is replaced.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

use aho_corasick::AhoCorasick;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;

/// A secret read from the environment or a file. Formatting it prints
/// `***`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Whose secrets to read: a run's, or the server's for its triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Every secret but those only triggers read (a webhook's key).
    Run,
    /// The secrets triggers read.
    Triggers,
}

/// Reads a plan's secrets from their sources: `env("VAR")` from the
/// environment, `file("path")` relative to `base_dir` (one line ending at
/// its end dropped: editors and `echo pw > file` add it). A missing one is
/// an error naming the variable or file, never a value.
pub fn read(
    plan: &kflow_compiler::ir::Plan,
    base_dir: &std::path::Path,
    readers: Readers,
) -> Result<std::collections::BTreeMap<String, Secret>, String> {
    let wanted = |s: &&kflow_compiler::ir::SecretDecl| match readers {
        Readers::Run => !s.trigger_only,
        Readers::Triggers => plan
            .triggers
            .iter()
            .any(|t| t.secret.as_deref() == Some(s.name.as_str())),
    };
    let mut out = std::collections::BTreeMap::new();
    for s in plan.secrets.iter().filter(wanted) {
        out.insert(s.name.clone(), read_decl(s, base_dir)?);
    }
    Ok(out)
}

/// Reads one secret from its source (see [`read`]).
fn read_decl(s: &kflow_compiler::ir::SecretDecl, base_dir: &std::path::Path) -> Result<Secret, String> {
    let arg = match &s.arg {
        kflow_compiler::ir::Expr::Str { value } => value.clone(),
        _ => return Err(format!("secret `{}`: its source must be a plain string", s.name)),
    };
    let value = match s.source.as_str() {
        "env" => {
            std::env::var(&arg).map_err(|_| format!("secret `{}`: environment variable `{arg}` is not set", s.name))?
        }
        _ => {
            let path = base_dir.join(&arg);
            let mut text = std::fs::read_to_string(&path).map_err(|e| {
                // The OS's words, without its error number.
                let reason = e.to_string();
                let reason = reason.split(" (os error").next().unwrap_or_default();
                format!("secret `{}`: cannot read {}: {reason}", s.name, path.display())
            })?;
            let end = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .map(str::len);
            if let Some(end) = end {
                text.truncate(end);
            }
            text
        }
    };
    Ok(Secret::new(value))
}

/// Reads the secret a plan declares as `name` on this machine: how a
/// worker reads what a task it runs refers to.
pub fn read_named(plan: &kflow_compiler::ir::Plan, name: &str, base_dir: &std::path::Path) -> Result<Secret, String> {
    let decl = plan
        .secrets
        .iter()
        .find(|s| s.name == name && !s.trigger_only)
        .ok_or_else(|| format!("the flow declares no secret `{name}`"))?;
    read_decl(decl, base_dir)
}

/// What stands for a plan's secrets where they are not read (a server whose
/// tasks run on workers): a reference per secret, which the worker running
/// a task replaces by the value it reads itself. Random, so no text can
/// forge one, and never a value.
pub fn references(plan: &kflow_compiler::ir::Plan) -> std::collections::BTreeMap<String, Secret> {
    use rand_core::RngCore;
    let nonce = rand_core::OsRng.next_u64();
    plan.secrets
        .iter()
        .filter(|s| !s.trigger_only)
        .map(|s| {
            (
                s.name.clone(),
                Secret::new(format!("{REFERENCE}{nonce:016x}:{}", s.name)),
            )
        })
        .collect()
}

/// Where an execution's secrets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sourcing {
    /// Read here, where the tasks run.
    Read,
    /// References (see [`references`]): each task's worker reads its own.
    Refer,
}

/// An execution's secrets, as `sourcing` says.
pub fn for_run(
    plan: &kflow_compiler::ir::Plan,
    base_dir: &std::path::Path,
    sourcing: Sourcing,
) -> Result<std::collections::BTreeMap<String, Secret>, String> {
    match sourcing {
        Sourcing::Read => read(plan, base_dir, Readers::Run),
        Sourcing::Refer => Ok(references(plan)),
    }
}

/// How a reference (see [`references`]) begins.
const REFERENCE: &str = "kflow-secret-ref:";

/// The name a reference stands for; `None` for a secret's own value.
pub fn reference_name(secret: &Secret) -> Option<&str> {
    let rest = secret.expose().strip_prefix(REFERENCE)?;
    let (nonce, name) = rest.split_once(':')?;
    (nonce.len() == 16 && nonce.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// Where a secret a task produced on a worker stays (a token, a minted
/// login): that worker keeps it for the later tasks of the same execution,
/// which run there; no other process ever holds its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    pub worker: String,
    pub task: String,
    pub output: String,
}

/// How a held secret's stand-in begins (see [`held`]).
const HELD: &str = "kflow-held-ref:";

/// This process's nonce for held stand-ins: no text can forge one.
fn held_nonce() -> u64 {
    use rand_core::RngCore;
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| rand_core::OsRng.next_u64())
}

/// The stand-in for a held secret in the process that runs the execution:
/// it travels back to the worker that holds the value, never a value.
pub fn held(h: &Held) -> Secret {
    let json = serde_json::to_string(h).unwrap_or_default();
    Secret::new(format!("{HELD}{:016x}:{json}", held_nonce()))
}

/// Where a stand-in made by [`held`] in this process points; `None` for
/// anything else (a secret's own value, whatever it looks like).
pub fn held_ref(secret: &Secret) -> Option<Held> {
    let rest = secret.expose().strip_prefix(HELD)?;
    let (nonce, json) = rest.split_once(':')?;
    if nonce != format!("{:016x}", held_nonce()) {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for handing to a process, a registry or a signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

pub const REDACTED: &str = "***";

/// Values (and lines of values) shorter than this would redact ordinary
/// text; they are still never printed by kflow itself, only not searched for.
const MIN_VALUE: usize = 3;
/// Encoded forms shorter than this are not searched for: a few base64
/// letters occur in ordinary text far too often.
const MIN_ENCODED: usize = 6;

/// Replaces every occurrence of every form of every known secret. Secrets
/// minted during a run (a registry token) are added while it runs, so the
/// forms sit behind a lock: each redaction reads one snapshot of them.
#[derive(Default)]
pub struct Redactor {
    known: RwLock<Arc<Forms>>,
}

#[derive(Default, Clone)]
struct Forms {
    forms: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Clone for Redactor {
    fn clone(&self) -> Self {
        Redactor {
            known: RwLock::new(self.snapshot()),
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} forms)", self.snapshot().forms.len())
    }
}

impl Redactor {
    pub fn new<'s>(secrets: impl IntoIterator<Item = &'s Secret>) -> Self {
        let mut forms = Forms::default();
        for s in secrets {
            forms.extend(s);
        }
        forms.build();
        Redactor {
            known: RwLock::new(Arc::new(forms)),
        }
    }

    /// Adds a secret learnt during the run: text redacted from now on
    /// hides it too.
    pub fn add(&self, secret: &Secret) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let mut forms = Forms::clone(&known);
        let before = forms.forms.len();
        forms.extend(secret);
        if forms.forms.len() != before {
            forms.build();
            *known = Arc::new(forms);
        }
    }

    fn snapshot(&self) -> Arc<Forms> {
        self.known.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().forms.is_empty()
    }

    /// The longest form searched for: a stream cut anywhere at least this
    /// many bytes before its end cannot split a secret it would have found.
    pub fn longest(&self) -> usize {
        self.snapshot().longest()
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let spans = self.snapshot().spans(text);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Redacts, then keeps at most `max` bytes (cut on a character
    /// boundary). Redacting first means a cut never leaves part of a
    /// secret behind; callers give text longer than `max` by at least
    /// [`Redactor::longest`] bytes when they cut a longer whole.
    pub fn redact_cut(&self, text: &str, max: usize) -> String {
        let mut out = self.redact(text).into_owned();
        if out.len() > max {
            out.truncate(floor_char_boundary(&out, max));
        }
        out
    }

    /// Where a growing buffer may be cut so that no secret it holds, or may
    /// yet complete, is split: at most `want` on a character boundary,
    /// moved back to the start of a match that crosses it (or, when that
    /// match starts the buffer, on to its end). Callers cut only once the
    /// buffer is [`Redactor::longest`] bytes past `want`.
    pub fn safe_cut(&self, text: &str, want: usize) -> usize {
        let forms = self.snapshot();
        let hold = forms.longest().saturating_sub(1);
        let mut cut = floor_char_boundary(text, want.min(text.len().saturating_sub(hold)));
        for (start, end) in forms.spans(text) {
            if start < cut && end > cut {
                cut = if start == 0 { end } else { start };
                break;
            }
        }
        cut
    }
}

impl Forms {
    fn extend(&mut self, secret: &Secret) {
        for form in forms(secret.expose()) {
            if !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
    }

    fn build(&mut self) {
        self.matcher = (!self.forms.is_empty())
            .then(|| AhoCorasick::new(&self.forms).expect("literal patterns of bounded size always build"));
    }

    fn longest(&self) -> usize {
        self.forms.iter().map(String::len).max().unwrap_or(0)
    }

    /// Byte ranges to replace: the union of every (overlapping) match,
    /// widened to character boundaries.
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let Some(m) = &self.matcher else { return Vec::new() };
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for found in m.find_overlapping_iter(text) {
            let (start, end) = (
                floor_char_boundary(text, found.start()),
                ceil_char_boundary(text, found.end()),
            );
            spans.push((start, end));
        }
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

/// Every form of one value that is searched for.
fn forms(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |form: String, min: usize| {
        if form.len() >= min && !out.contains(&form) {
            out.push(form);
        }
    };
    push(value.to_string(), MIN_VALUE);
    if value.contains('\n') {
        for line in value.lines() {
            push(line.trim_end_matches('\r').to_string(), MIN_VALUE);
        }
    }
    if value.len() < MIN_VALUE {
        return out;
    }
    let bytes = value.as_bytes();
    for engine in [&STANDARD, &URL_SAFE] {
        // Alone, with its padding …
        push(engine.encode(bytes), MIN_ENCODED);
        // … and inside a longer encoded text, where it starts 0, 1 or 2
        // bytes into a 3-byte group: the letters that depend on its bytes only.
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            let first = (8 * shift).div_ceil(6);
            let last = 8 * (shift + bytes.len()) / 6;
            push(encoded[first..last].to_string(), MIN_ENCODED);
        }
    }
    push(hex::encode(bytes), MIN_ENCODED);
    push(hex::encode_upper(bytes), MIN_ENCODED);
    push(percent_encode(bytes, false, false), MIN_VALUE);
    push(percent_encode(bytes, true, false), MIN_VALUE);
    push(percent_encode(bytes, false, true), MIN_VALUE);
    let json = serde_json::to_string(value).expect("a string always serialises");
    push(json[1..json.len() - 1].to_string(), MIN_VALUE);
    push(json_ascii(value), MIN_VALUE);
    out
}

/// URL encoding of every byte outside RFC 3986's unreserved set; `plus`
/// writes a space as `+` (HTML forms), `lower` writes `%2f` for `%2F`.
fn percent_encode(bytes: &[u8], plus: bool, lower: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' if plus => out.push('+'),
            _ if lower => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// JSON escaping that writes every non-ASCII character as `\uXXXX`
/// (Python's `json.dumps`, many loggers).
fn json_ascii(value: &str) -> String {
    let json = serde_json::to_string(value).expect("a string always serialises");
    let mut out = String::with_capacity(json.len());
    for c in json[1..json.len() - 1].chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        let secrets: Vec<Secret> = values.iter().map(|v| Secret::new(*v)).collect();
        Redactor::new(&secrets)
    }

    #[test]
    fn secrets_do_not_format() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn redaction_by_value() {
        let r = redactor(&["token-abc", "token-abc-long"]);
        assert_eq!(r.redact("a token-abc-long b token-abc c"), "a *** b *** c");
        assert!(matches!(r.redact("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_secrets_are_both_covered() {
        let r = redactor(&["abcdef", "defghi"]);
        assert_eq!(r.redact("xabcdefghiy"), "x***y");
    }

    #[test]
    fn every_line_of_a_multi_line_secret() {
        let pem = "-----BEGIN KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\nAwEHBG0wawIBAQQg\n-----END KEY-----";
        let r = redactor(&[pem]);
        assert_eq!(r.redact(pem), "***");
        assert_eq!(r.redact("line: AwEHBG0wawIBAQQg!"), "line: ***!");
        assert_eq!(r.redact(&pem.replace('\n', "\r\n")), "***\r\n***\r\n***\r\n***");
    }

    #[test]
    fn encoded_forms() {
        let secret = "p@ss w/rd\"é";
        let r = redactor(&[secret]);
        let b = secret.as_bytes();
        let json = serde_json::to_string(secret).unwrap();
        let encoded = [
            STANDARD.encode(b),
            URL_SAFE.encode(b),
            hex::encode(b),
            hex::encode_upper(b),
            "p%40ss%20w%2Frd%22%C3%A9".to_string(),
            "p%40ss+w%2Frd%22%C3%A9".to_string(),
            json[1..json.len() - 1].to_string(),
            "p@ss w/rd\\\"\\u00e9".to_string(),
        ];
        for e in encoded {
            assert_eq!(r.redact(&format!("<{e}>")), "<***>", "{e}");
        }
        // Inside a longer base64 text, at every alignment.
        for prefix in ["", "a", "ab", "abc"] {
            for suffix in ["", "z", "zz"] {
                let whole = STANDARD.encode(format!("{prefix}{secret}{suffix}"));
                let out = r.redact(&whole);
                assert!(out.contains(REDACTED), "{prefix}|{suffix}: {out}");
                assert!(
                    out.len() <= REDACTED.len() + 12,
                    "{prefix}|{suffix}: only a few letters stay: {out}"
                );
            }
        }
    }

    #[test]
    fn cutting_after_redaction_never_leaves_part_of_a_secret() {
        let r = redactor(&["0123456789"]);
        let text = format!("{}0123456789 tail", "x".repeat(15));
        assert_eq!(r.redact_cut(&text, 20), format!("{}*** t", "x".repeat(15)));
        let long = format!("{text}{}", "y".repeat(40));
        assert_eq!(r.safe_cut(&long, 20), 15, "moved back to the secret's start");
        let started = format!("{}012", "x".repeat(40));
        assert_eq!(
            r.safe_cut(&started, 60),
            started.len() - (r.longest() - 1),
            "what may be the start of a secret is held back"
        );
    }

    #[test]
    fn short_values_are_not_searched() {
        let r = redactor(&["ab"]);
        assert!(r.is_empty());
        assert_eq!(r.redact("about"), "about");
    }
}
