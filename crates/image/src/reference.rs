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
    /// Parses a user-given name (docker's grammar, distribution/reference).
    ///
    /// Hand-written rather than oci-spec's `Reference::from_str`: that compiles a regular
    /// expression of several megabytes on first use, ~30 ms on every `corral run`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bad = |reason: &str| NameError {
            name: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(bad("empty name"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("unsupported digest"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("invalid digest"));
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((d, p)) if d.contains('.') || d.contains(':') || d == "localhost" => {
                (d, p.to_owned())
            }
            _ => ("docker.io", name.to_owned()),
        };
        let domain = if domain == "index.docker.io" {
            "docker.io"
        } else {
            domain
        };
        let (host, port) = domain.split_once(':').unwrap_or((domain, ""));
        // The grammar also lets a first path component that merely contains a dot stand as the
        // registry (docker's splitDomain): accept what either rule accepts.
        let host_ok = (port.is_empty() && valid_component(host))
            || !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty()
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
        if !host_ok
            || (domain.contains(':')
                && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(bad("invalid registry host"));
        }
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.len() > 255 {
            return Err(bad("repository name must not be more than 255 characters"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad("invalid reference format"));
        }
        let reference = match (tag, digest) {
            (Some(t), Some(d)) => {
                Reference::with_tag_and_digest(domain.to_owned(), path, t.to_owned(), d)
            }
            (None, Some(d)) => Reference::with_digest(domain.to_owned(), path, d),
            (t, None) => {
                Reference::with_tag(domain.to_owned(), path, t.unwrap_or("latest").to_owned())
            }
        };
        Ok(ImageName(reference))
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

/// A path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
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

    /// The hand-written parser agrees with oci-spec's regular expression.
    #[test]
    fn parse_agrees_with_the_reference_grammar() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for s in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/x/y",
            "quay.io/team/app:v1.2-rc_3",
            "localhost/app",
            "localhost:5000/a/b/c:t",
            "127.0.0.1:5000/x",
            "a.b-c__d/e---f:x",
            &format!("busybox@{d}"),
            &format!("reg.io:443/a:t@{d}"),
            "UPPER/Case::x",
            "Busybox",
            "a//b",
            "-a/b",
            "a/b-",
            "a:",
            "a:-x",
            "a/b:c:d",
            "host:port/x",
            "a..b/c",
            "a/.b",
            ":tag",
            "reg.io:/x",
            "x@sha256:1234",
        ] {
            let ours = ImageName::parse(s).map(|n| n.full()).ok();
            let theirs = s.parse::<Reference>().map(|r| r.whole()).ok();
            assert_eq!(ours, theirs, "{s}");
        }
    }
}
