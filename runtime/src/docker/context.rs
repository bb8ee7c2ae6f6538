//! The build context as the engine receives it: a tar of the context folder
//! without what `.dockerignore` excludes, with Docker's matching rules
//! (patterns relative to the context root, `*`, `?`, `[…]`, `**`, `!`
//! exceptions, the last matching pattern wins, a matched folder excludes what
//! it holds). The Dockerfile and `.dockerignore` are always sent, as the
//! Docker CLI does.

use std::path::{Path, PathBuf};

/// One `.dockerignore` line.
#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exclusion: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// Lexically cleans a path: no `.`, resolved `..`, no leading or doubled `/`.
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other.to_string()),
        }
    }
    out
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let parts = clean(pat);
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, exclusion });
        }
        Ignore { patterns }
    }

    pub fn read(context: &Path) -> std::io::Result<Ignore> {
        match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(t) => Ok(Ignore::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(e),
        }
    }

    /// Whether a path relative to the context (`a/b/c`) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // A pattern matching the path or any folder above it.
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some exception pattern could re-include something under the
    /// folder `rel` (then the folder must still be walked).
    fn may_reinclude_under(&self, rel: &str) -> bool {
        let depth = rel.split('/').filter(|p| !p.is_empty()).count();
        self.patterns.iter().any(|p| p.exclusion && p.parts.len() > depth)
    }
}

/// `**` matches any number of segments; other segments match one segment.
/// No pattern makes it exponential (`a/**/b/**/c/…` on a deep path included).
fn match_parts(pat: &[String], path: &[&str]) -> bool {
    wildcard(pat, path, |p| p == "**", |p, seg| glob(p.as_bytes(), seg.as_bytes()))
}

/// Matches `s` against `pat`, where `star(p)` elements take any run of `s`
/// and the others one element each (`one`): greedy, backtracking only to
/// the last star, so time is at most `pat.len() × s.len()` steps of `one`.
fn wildcard<P, S>(pat: &[P], s: &[S], star: impl Fn(&P) -> bool, one: impl Fn(&P, &S) -> bool) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pat.get(pi) {
            Some(p) if star(p) => {
                last_star = Some((pi, si));
                pi += 1;
            }
            Some(p) if one(p, &s[si]) => {
                pi += 1;
                si += 1;
            }
            _ => match last_star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    last_star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pat[pi..].iter().all(star)
}

/// One element of a segment pattern.
#[derive(Debug, PartialEq)]
enum Tok {
    Byte(u8),
    Any,
    Star,
    /// `[…]`: ranges (a single byte is `(b, b)`), negated or not.
    Class(Vec<(u8, u8)>, bool),
}

/// The pattern's elements; `None` for a malformed pattern (an unterminated
/// class), which matches nothing, as in Go.
fn tokens(p: &[u8]) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
                i += 1;
            }
            b'?' => {
                out.push(Tok::Any);
                i += 1;
            }
            b'\\' if i + 1 < p.len() => {
                out.push(Tok::Byte(p[i + 1]));
                i += 2;
            }
            b'[' => {
                i += 1;
                let negate = matches!(p.get(i), Some(b'^') | Some(b'!'));
                if negate {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                while i < p.len() && (p[i] != b']' || first) {
                    first = false;
                    let lo = if p[i] == b'\\' && i + 1 < p.len() {
                        i += 1;
                        p[i]
                    } else {
                        p[i]
                    };
                    if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                        ranges.push((lo, p[i + 2]));
                        i += 3;
                    } else {
                        ranges.push((lo, lo));
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return None;
                }
                i += 1;
                out.push(Tok::Class(ranges, negate));
            }
            c => {
                out.push(Tok::Byte(c));
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go's `filepath.Match` within one segment: `*`, `?`, `[…]` (with `^`/`!`
/// negation and ranges) and `\` escapes. Greedy matching that backtracks
/// only to the last `*`: time proportional to pattern × name, whatever the
/// pattern (`*a*a*a*…b` included), instead of exponential.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let Some(p) = tokens(p) else { return false };
    let one = |t: &Tok, c: &u8| match t {
        Tok::Byte(b) => b == c,
        Tok::Any => true,
        Tok::Class(ranges, negate) => ranges.iter().any(|&(lo, hi)| lo <= *c && *c <= hi) != *negate,
        Tok::Star => false,
    };
    wildcard(&p, s, |t| *t == Tok::Star, one)
}

/// Writes the context as a tar into `out`: entries in a stable order, owners zeroed,
/// modes and times kept, symlinks as links. `always` names files sent even
/// when excluded (the Dockerfile); `extra` adds generated files.
/// `cancel` stops it between two entries (it runs on a blocking thread,
/// where the task's cancellation cannot reach otherwise).
pub fn tar<W: std::io::Write>(
    out: W,
    context: &Path,
    always: &[String],
    extra: &[(String, Vec<u8>)],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<W, String> {
    let ignore = Ignore::read(context).map_err(|e| format!("cannot read .dockerignore: {e}"))?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut always: Vec<String> = always.iter().map(|a| clean(a).join("/")).collect();
    always.push(".dockerignore".into());
    walk(context, PathBuf::new(), &ignore, &always, &mut builder, cancel)?;
    for (name, bytes) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder
            .append_data(&mut h, name, bytes.as_slice())
            .map_err(|e| format!("cannot add {name} to the build context: {e}"))?;
    }
    builder
        .into_inner()
        .map_err(|e| format!("cannot write the build context: {e}"))
}

fn walk<W: std::io::Write>(
    root: &Path,
    rel: PathBuf,
    ignore: &Ignore,
    always: &[String],
    builder: &mut tar::Builder<W>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let dir = root.join(&rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let rel_path = rel.join(entry.file_name());
        let rel_str = rel_path.to_string_lossy().replace('\\', "/");
        let file_type = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        let kept = !ignore.excludes(&rel_str) || always.contains(&rel_str);
        if file_type.is_dir() {
            if kept {
                builder
                    .append_path_with_name(entry.path(), &rel_path)
                    .map_err(|e| format!("cannot add {rel_str} to the build context: {e}"))?;
            }
            if kept || ignore.may_reinclude_under(&rel_str) {
                walk(root, rel_path, ignore, always, builder, cancel)?;
            }
        } else if kept {
            builder
                .append_path_with_name(entry.path(), &rel_path)
                .map_err(|e| format!("cannot add {rel_str} to the build context: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward recursive matcher (exponential on hostile
    /// patterns): the reference the linear one is compared with.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => (0..=s.len()).any(|i| reference(&p[1..], &s[i..])),
            Some(b'?') => !s.is_empty() && reference(&p[1..], &s[1..]),
            Some(&c) => s.first() == Some(&c) && reference(&p[1..], &s[1..]),
        }
    }

    #[test]
    fn the_linear_matcher_agrees_with_the_reference() {
        // A small deterministic generator over a tiny alphabet, where
        // stars and repeats interact the most.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let p: Vec<u8> = (0..next(7)).map(|_| b"ab*?"[next(4) as usize]).collect();
            let s: Vec<u8> = (0..next(8)).map(|_| b"ab"[next(2) as usize]).collect();
            assert_eq!(
                glob(&p, &s),
                reference(&p, &s),
                "{:?} {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&s)
            );
        }
    }

    #[test]
    fn hostile_patterns_take_no_time() {
        let started = std::time::Instant::now();
        let name = "a".repeat(200);
        assert!(!glob(b"*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name.as_bytes()));
        let ignore = Ignore::parse(&"**/a/".repeat(30));
        let deep = vec!["a"; 60].join("/") + "/x";
        let _ = ignore.excludes(&deep);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn packing_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        cancel.cancel();
        assert_eq!(tar(Vec::new(), dir.path(), &[], &[], &cancel).unwrap_err(), "cancelled");
    }

    #[test]
    fn dockerignore_follows_docker() {
        let i = Ignore::parse("# comment\n*.md\n!README.md\nbuild/\n**/*.tmp\nsecret?.txt\n/docs/[a-c]*\n");
        assert!(i.excludes("notes.md"));
        assert!(!i.excludes("README.md"));
        // Unlike .gitignore, a pattern without `/` is anchored at the root.
        assert!(!i.excludes("sub/notes.md"));
        assert!(i.excludes("build"));
        assert!(i.excludes("build/out/app"));
        assert!(i.excludes("a/b/c.tmp"));
        assert!(i.excludes("x.tmp"));
        assert!(i.excludes("secret1.txt"));
        assert!(!i.excludes("secret12.txt"));
        assert!(i.excludes("docs/api.md") && i.excludes("docs/b"));
        assert!(!i.excludes("docs/z"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn exceptions_reach_into_excluded_folders() {
        let i = Ignore::parse("vendor\n!vendor/keep.txt\n");
        assert!(i.excludes("vendor/drop.txt"));
        assert!(!i.excludes("vendor/keep.txt"));
        assert!(i.may_reinclude_under("vendor"));
    }

    #[test]
    fn the_tar_leaves_out_what_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(".dockerignore"), "*.log\nDockerfile\ncache\n").unwrap();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(d.join("app.txt"), "app").unwrap();
        std::fs::write(d.join("debug.log"), "noise").unwrap();
        std::fs::create_dir(d.join("cache")).unwrap();
        std::fs::write(d.join("cache/big"), "x").unwrap();
        let bytes = tar(Vec::new(), d, &["Dockerfile".into()], &[], &Default::default()).unwrap();
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app.txt"]);
    }
}
