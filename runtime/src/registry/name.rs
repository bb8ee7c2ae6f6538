//! Image references as registries see them: which host, which repository,
//! and a tag or digest.

use kflow_compiler::literals;

/// Docker Hub's name in references, and the host that serves its API.
const HUB: &str = "docker.io";
const HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// `host[:port]` as written (`docker.io` when none was).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageName {
    pub fn parse(s: &str) -> Result<ImageName, String> {
        let r = literals::reference(s)?;
        let registry = r.registry.unwrap_or(HUB).to_string();
        let repository = if registry == HUB && !r.repository.contains('/') {
            format!("library/{}", r.repository)
        } else {
            r.repository.to_string()
        };
        Ok(ImageName {
            registry,
            repository,
            tag: r.tag.map(str::to_string),
            digest: r.digest.map(str::to_string),
        })
    }

    /// The host serving the registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == HUB {
            HUB_API
        } else {
            &self.registry
        }
    }

    /// The tag, digest or `latest`, as a manifest reference.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// `registry/repository`, as written in a pinned reference.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.repo())
    }

    pub fn with_tag(&self) -> String {
        format!("{}:{}", self.repo(), self.tag.as_deref().unwrap_or("latest"))
    }
}

/// Registries spoken to over plain HTTP: loopback ones (as Docker does),
/// and those listed in `KFLOW_INSECURE_REGISTRIES` (comma-separated hosts).
pub fn plain_http(host: &str) -> bool {
    let bare = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let loopback = bare == "localhost"
        || bare.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || bare
            .trim_matches(['[', ']'])
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || std::env::var("KFLOW_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .any(|h| !h.trim().is_empty() && h.trim() == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_docker() {
        let n = ImageName::parse("busybox").unwrap();
        assert_eq!(
            (n.registry.as_str(), n.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(n.api_host(), "registry-1.docker.io");
        let n = ImageName::parse("127.0.0.1:5000/team/app:1.2").unwrap();
        assert_eq!(n.api_host(), "127.0.0.1:5000");
        assert_eq!(n.repository, "team/app");
        assert_eq!(n.reference(), "1.2");
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(n.pinned(d), format!("127.0.0.1:5000/team/app@{d}"));
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(plain_http("127.0.0.1:5000"));
        assert!(plain_http("localhost:5000"));
        assert!(plain_http("[::1]:5000"));
        assert!(!plain_http("ghcr.io"));
        assert!(!plain_http("registry.example.com:5000"));
    }
}
