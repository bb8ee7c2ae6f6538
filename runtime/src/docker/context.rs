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
fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_parts(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((seg, more)) => glob(first.as_bytes(), seg.as_bytes()) && match_parts(rest, more),
            None => false,
        },
    }
}

/// Go's `filepath.Match` within one segment: `*`, `?`, `[…]` (with `^`/`!`
/// negation and ranges) and `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
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
                    let hi = p[i + 2];
                    matched |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= p.len() {
                return false; // unterminated class: matches nothing, as in Go
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// Writes the context as a tar: entries in a stable order, owners zeroed,
/// modes and times kept, symlinks as links. `always` names files sent even
/// when excluded (the Dockerfile); `extra` adds generated files.
pub fn tar(context: &Path, always: &[String], extra: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let ignore = Ignore::read(context).map_err(|e| format!("cannot read .dockerignore: {e}"))?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut always: Vec<String> = always.iter().map(|a| clean(a).join("/")).collect();
    always.push(".dockerignore".into());
    walk(context, PathBuf::new(), &ignore, &always, &mut builder)?;
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

fn walk(
    root: &Path,
    rel: PathBuf,
    ignore: &Ignore,
    always: &[String],
    builder: &mut tar::Builder<Vec<u8>>,
) -> Result<(), String> {
    let dir = root.join(&rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
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
                walk(root, rel_path, ignore, always, builder)?;
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
        let bytes = tar(d, &["Dockerfile".into()], &[]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app.txt"]);
    }
}
