//! The built-in functions: one table read by the checker (names and
//! arity), the language server (completion, hover, highlighting) and
//! `kflow docs`. Their types and rules live in `check::expr`, their values
//! in the runtime's `eval`.

#[derive(Debug)]
pub struct Function {
    pub name: &'static str,
    /// Parameter names and type specs (as in the catalog).
    pub params: &'static [(&'static str, &'static str)],
    pub ret: &'static str,
    pub doc: &'static str,
}

impl Function {
    /// `split(text: string, separator: string) -> list<string>`
    pub fn signature(&self) -> String {
        format!(
            "{}({}) -> {}",
            self.name,
            crate::catalog::parameter_list(self.params),
            self.ret
        )
    }
}

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "env",
        params: &[("name", "string")],
        ret: "secret",
        doc: "Reads an environment variable as a secret; only in a `secret` item.",
    },
    Function {
        name: "file",
        params: &[("path", "path")],
        ret: "secret",
        doc: "Reads a file as a secret, its path relative to the flow file (one final newline dropped); only in a `secret` item.",
    },
    Function {
        name: "digest",
        params: &[("text", "string")],
        ret: "digest",
        doc: "A content digest; a literal is validated now: algorithm (`sha256`, `sha512`), lowercase hex, length.",
    },
    Function {
        name: "pinned",
        params: &[("text", "string")],
        ret: "pinned",
        doc: "An image reference pinned by digest, `registry/repository@sha256:…`; a literal is validated now.",
    },
    Function {
        name: "ref",
        params: &[("text", "string")],
        ret: "ref",
        doc: "A tag reference, `registry/repository:tag`; a literal is validated now (Docker reference grammar: lowercase repository, tag of up to 128 characters, optional `registry[:port]`); a reference carrying a digest must be written `pinned(…)`.",
    },
    Function {
        name: "docker_config",
        params: &[],
        ret: "credentials",
        doc: "Registry credentials from `~/.docker/config.json` (or `DOCKER_CONFIG`): `auths`, `credHelpers`, `credsStore`.",
    },
    Function {
        name: "helper",
        params: &[("name", "string")],
        ret: "credentials",
        doc: "Registry credentials from the helper `docker-credential-<name>`.",
    },
    Function {
        name: "lines",
        params: &[("text", "string")],
        ret: "list<string>",
        doc: "The lines of a text, without their `\\n` or `\\r\\n`; a final newline does not make an empty last line, blank lines inside are kept.",
    },
    Function {
        name: "split",
        params: &[("text", "string"), ("separator", "string")],
        ret: "list<string>",
        doc: "The pieces of a text between each occurrence of a non-empty separator, empty pieces included.",
    },
    Function {
        name: "trim",
        params: &[("text", "string")],
        ret: "string",
        doc: "The text without whitespace at its start and end.",
    },
];

/// The function named `name`, if there is one.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Every function's name, for listings.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.name)
}
