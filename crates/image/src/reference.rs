//! Image names, normalized as docker does: `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;

use oci_client::Reference;

/// A name that does not parse as an image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image name {name:?}: {reason} (expected [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], lowercase)")]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// Why it is refused.
    pub reason: String,
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName(Reference);

impl ImageName {
    /// Parses a user-given name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        s.parse::<Reference>()
            .map(ImageName)
            .map_err(|e| NameError {
                name: s.to_owned(),
                reason: e.to_string(),
            })
    }

    /// The full form, the key in the store: `registry/repository:tag` (or `@digest`).
    pub fn full(&self) -> String {
        self.0.whole()
    }

    /// The registry host (and port).
    pub fn registry(&self) -> &str {
        self.0.resolve_registry()
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// The underlying registry reference.
    pub fn reference(&self) -> &Reference {
        &self.0
    }

    /// Whether the registry is this machine (plain HTTP by default, as docker does).
    pub fn is_local_registry(&self) -> bool {
        let host = self.registry();
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&short(&self.full()))
    }
}

/// The short form of a full name, as listings print it.
pub fn short(full: &str) -> String {
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(full)
        .to_owned()
}

/// Splits a full or short name into repository and tag for listings.
pub fn split_tag(name: &str) -> (String, String) {
    let s = short(name);
    if let Some((repo, digest)) = s.split_once('@') {
        return (repo.to_owned(), digest.to_owned());
    }
    match s.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (s, "<none>".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_like_docker() {
        let n = ImageName::parse("busybox").unwrap();
        assert_eq!(n.full(), "docker.io/library/busybox:latest");
        assert_eq!(n.to_string(), "busybox:latest");
        let n = ImageName::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert!(n.is_local_registry());
        assert_eq!(
            split_tag(&n.full()),
            ("127.0.0.1:5000/a/b".into(), "v1".into())
        );
        assert!(ImageName::parse("UPPER/Case::x").is_err());
        assert!(!ImageName::parse("quay.io/x").unwrap().is_local_registry());
    }
}
