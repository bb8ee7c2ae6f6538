//! Compile-time validation of literals whose shape is known: digests, image
//! references, cron schedules, globs and Compose project names. Each returns
//! a message saying what is wrong, or `Ok`.

/// `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
pub fn digest(s: &str) -> Result<(), String> {
    let Some((algo, hex)) = s.split_once(':') else {
        return Err(format!("`{s}` is not a digest: expected `sha256:<64 hex digits>`"));
    };
    let want = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unknown digest algorithm `{algo}`: expected `sha256` or `sha512`"
            ))
        }
    };
    if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("`{c}` is not a lowercase hex digit in the {algo} digest"));
    }
    if hex.len() != want {
        return Err(format!(
            "a {algo} digest has {want} hex digits, this one has {}",
            hex.len()
        ));
    }
    Ok(())
}

/// The parts of `registry/repository:tag` (Docker's reference grammar).
#[derive(Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    pub registry: Option<&'a str>,
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

pub fn reference(s: &str) -> Result<Reference<'_>, String> {
    if s.is_empty() {
        return Err("an image reference cannot be empty".into());
    }
    let (name_tag, digest_part) = match s.split_once('@') {
        Some((n, d)) => {
            digest(d)?;
            (n, Some(d))
        }
        None => (s, None),
    };
    // A `:` after the last `/` starts the tag (a `:` before it is a port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].find(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!(
                "`{tag}` is not a valid tag: up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            ));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first), rest),
        _ => (None, name),
    };
    if let Some(r) = registry {
        let host = r.rsplit_once(':').map_or(r, |(h, port)| {
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
                ""
            } else {
                h
            }
        });
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(format!("`{r}` is not a valid registry host"));
        }
    }
    if repository.is_empty() {
        return Err(format!("`{s}` has no repository name"));
    }
    for component in repository.split('/') {
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("repository names must be lowercase: `{repository}`"));
        }
        let ok = !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!(
                "`{component}` is not a valid repository path component: lowercase letters and digits separated by `.`, `_` or `-`"
            ));
        }
    }
    Ok(Reference {
        registry,
        repository,
        tag,
        digest: digest_part,
    })
}

/// A `repository@sha256:…` reference.
pub fn pinned(s: &str) -> Result<(), String> {
    if !s.contains('@') {
        return Err(format!(
            "`{s}` has no digest: a pinned reference is `repository@sha256:<64 hex digits>`"
        ));
    }
    reference(s).map(|_| ())
}

/// A tag reference: no digest allowed.
pub fn tag_ref(s: &str) -> Result<(), String> {
    let r = reference(s)?;
    if r.digest.is_some() {
        return Err(format!("`{s}` carries a digest: write it as `pinned(\"{s}\")`"));
    }
    Ok(())
}

/// Cron: five fields (`minute hour day month weekday`), six with seconds
/// first, or `@daily` and friends (see [`crate::cron`]).
pub fn cron(s: &str) -> Result<(), String> {
    crate::cron::Cron::parse(s).map(|_| ())
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`), as the bundled time
/// zone database knows it.
pub fn timezone(s: &str) -> Result<(), String> {
    match jiff::tz::db().get(s) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "unknown time zone `{s}`: write an IANA name such as `Europe/Berlin` or `UTC`"
        )),
    }
}

/// Balanced `[…]` and `{…}` in a glob.
pub fn glob(s: &str) -> Result<(), String> {
    let mut stack = Vec::new();
    let mut escaped = false;
    for c in s.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '[' | '{') => stack.push(c),
            (false, ']') if stack.pop() != Some('[') => return Err(format!("unbalanced `]` in glob `{s}`")),
            (false, '}') if stack.pop() != Some('{') => return Err(format!("unbalanced `}}` in glob `{s}`")),
            _ => {}
        }
    }
    match stack.last() {
        Some(c) => Err(format!("unclosed `{c}` in glob `{s}`")),
        None if s.is_empty() => Err("a glob cannot be empty".into()),
        // Relative to the flow's folder, and inside it.
        None if s.starts_with('/') || s.split('/').any(|c| c == "..") => Err(format!(
            "the glob `{s}` leaves the flow's folder: it is relative to the folder and stays in it"
        )),
        None => Ok(()),
    }
}

/// Compose project names: lowercase letters, digits, `-` and `_`, starting
/// with a letter or digit. The checker applies it to literal names and the
/// runtime to computed ones.
pub fn compose_project(s: &str) -> Result<(), String> {
    let ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid Compose project name: lowercase letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// The operating systems and architectures an image platform may name
/// (Go's, as the OCI image spec uses them): a platform outside them is a
/// typo, and BuildKit would label an image with it all the same.
const OSES: &[&str] = &["linux", "windows", "freebsd", "darwin", "wasip1"];
const ARCHITECTURES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64", "mipsle", "mips",
    "loong64", "wasm",
];

/// `os/architecture[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`.
pub fn platform(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('/').collect();
    let known = |list: &[&str], v: &str| list.contains(&v);
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if known(OSES, os) && known(ARCHITECTURES, arch) => match parts.get(2) {
            Some(v) if !(v.starts_with('v') && v.len() > 1 && v[1..].chars().all(|c| c.is_ascii_digit())) => Err(
                format!("`{s}`: the variant `{v}` is not one of `v5`, `v6`, `v7`, `v8`…"),
            ),
            _ => Ok(()),
        },
        [os, ..] if !known(OSES, os) => Err(format!(
            "`{s}` is not a platform: `os/architecture`, the os one of {}",
            OSES.join(", ")
        )),
        [_, arch, ..] if !known(ARCHITECTURES, arch) => Err(format!(
            "`{s}` is not a platform: the architecture `{arch}` is not one of {}",
            ARCHITECTURES.join(", ")
        )),
        _ => Err(format!(
            "`{s}` is not a platform: `os/architecture[/variant]`, e.g. `linux/arm64`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn platforms() {
        assert!(platform("linux/amd64").is_ok());
        assert!(platform("linux/arm/v7").is_ok());
        assert!(platform("linux/bogus").unwrap_err().contains("`bogus` is not one of"));
        assert!(platform("linux").is_err());
        assert!(platform("linux/arm64/v8/x").is_err());
        assert!(platform("linux/arm/7").is_err());
        assert!(platform("solaris/amd64").unwrap_err().contains("the os one of"));
    }

    #[test]
    fn references() {
        let r = reference("127.0.0.1:5000/app/api:1.2").unwrap();
        assert_eq!(r.registry, Some("127.0.0.1:5000"));
        assert_eq!(r.repository, "app/api");
        assert_eq!(r.tag, Some("1.2"));
        assert_eq!(reference("busybox").unwrap().tag, None);
        assert!(reference("Reg/App:1").is_err());
        assert!(reference("app:").is_err());
        assert!(pinned(&format!("localhost:5000/app@{D}")).is_ok());
        assert!(pinned("localhost:5000/app:1").is_err());
        assert!(tag_ref(&format!("app@{D}")).is_err());
    }

    #[test]
    fn digests() {
        assert!(digest(D).is_ok());
        assert!(digest("sha256:abc").is_err());
        assert!(digest(&D.to_uppercase()).is_err());
        assert!(digest(&D.replace("sha256", "md5")).is_err());
    }

    #[test]
    fn crons() {
        assert!(cron("0 3 * * *").is_ok());
        assert!(cron("*/15 0-23 1,15 jan-jun mon-fri").is_ok());
        assert!(cron("@daily").is_ok());
        assert!(cron("0 25 * * *").is_err());
        assert!(cron("0 3 * *").is_err());
        assert!(cron("*/0 * * * *").is_err());
    }

    #[test]
    fn globs_and_projects() {
        assert!(glob("src/**/*.{rs,toml}").is_ok());
        assert!(glob("src/[ab").is_err());
        assert!(glob("../up/*.tar").is_err() && glob("/etc/*").is_err() && glob("a/../../b").is_err());
        assert!(compose_project("pr-42_x").is_ok());
        assert!(compose_project("PR-42").is_err() && compose_project("-x").is_err() && compose_project("").is_err());
    }
}
