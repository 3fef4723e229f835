//! Image references, with transports named as skopeo and containers-image name them.
//!
//! | form | meaning |
//! |---|---|
//! | `scratch` | the empty image (run images only) |
//! | `oci:DIR[:NAME]` | an OCI image layout directory; `NAME` is the `org.opencontainers.image.ref.name` |
//! | `oci-archive:FILE[:NAME]` | a tar of an OCI image layout |
//! | `docker-archive:FILE[:NAME]` | a `docker save` tarball (`NAME` picks one of its tags) |
//! | `docker-daemon:NAME` | an image in the Docker Engine at `DOCKER_HOST` |
//! | `docker://NAME`, `HOST/REPO[:TAG][@DIGEST]` | an image in a registry (a first component with a `.` or `:`, or `localhost`, is a registry host; `docker://` without one means Docker Hub) |
//! | `NAME[:TAG]` | an image in kiln's local store |
//!
//! As in containers-image, the path ends at the first `:` after the transport prefix, so
//! paths containing `:` cannot be written this way.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Errors in an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("empty image reference")]
    Empty,
    /// The transport exists but kiln does not support it yet.
    #[error(
        "the {transport}: transport is not supported; use oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE[:NAME], docker-daemon:NAME, a registry reference (HOST/REPO:TAG, docker://NAME) or a name in kiln's local store"
    )]
    UnsupportedTransport {
        /// The transport prefix.
        transport: String,
    },
    /// `oci:` / `oci-archive:` without a path.
    #[error("{reference:?} names no path; write {transport}:PATH[:NAME]")]
    MissingPath {
        /// The reference as given.
        reference: String,
        /// The transport prefix.
        transport: &'static str,
    },
    /// An image name that is not a valid `[registry/]repository[:tag][@digest]`.
    #[error("{name:?} is not a valid image name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageReference {
    /// The empty image. Valid only as a run image.
    Scratch,
    /// An OCI image layout directory, optionally naming one of its images.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image.
        name: Option<String>,
    },
    /// A tar archive of an OCI image layout.
    Archive {
        /// The archive file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the image.
        name: Option<String>,
    },
    /// A `docker save` tarball.
    DockerArchive {
        /// The archive file.
        path: PathBuf,
        /// The tag of the image in it (`RepoTags`).
        name: Option<String>,
    },
    /// An image in the Docker Engine (or podman's Docker API) at `DOCKER_HOST`.
    DockerDaemon(ImageName),
    /// An image in a registry.
    Registry(ImageName),
    /// An image in kiln's local store.
    Named(ImageName),
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s == "scratch" {
            return Ok(Self::Scratch);
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, name) = split_path_and_name(s, rest, "oci")?;
            return Ok(Self::Layout { path, name });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, name) = split_path_and_name(s, rest, "oci-archive")?;
            return Ok(Self::Archive { path, name });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, name) = split_path_and_name(s, rest, "docker-archive")?;
            return Ok(Self::DockerArchive { path, name });
        }
        if let Some(rest) = s.strip_prefix("docker-daemon:") {
            return Ok(Self::DockerDaemon(rest.parse()?));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Self::Registry(ImageName::docker_hub(rest)?));
        }
        for transport in ["containers-storage", "dir", "ostree", "sif"] {
            if s.starts_with(&format!("{transport}:")) {
                return Err(ReferenceError::UnsupportedTransport {
                    transport: transport.to_string(),
                });
            }
        }
        let name: ImageName = s.parse()?;
        if name.registry().is_some() {
            return Ok(Self::Registry(name));
        }
        Ok(Self::Named(s.parse()?))
    }
}

fn split_path_and_name(
    whole: &str,
    rest: &str,
    transport: &'static str,
) -> Result<(PathBuf, Option<String>), ReferenceError> {
    let (path, name) = match rest.split_once(':') {
        Some((path, name)) => (path, (!name.is_empty()).then(|| name.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(ReferenceError::MissingPath {
            reference: whole.to_string(),
            transport,
        });
    }
    Ok((PathBuf::from(path), name))
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scratch => f.write_str("scratch"),
            Self::Layout { path, name } => {
                write!(f, "oci:{}", path.display())?;
                name.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
            }
            Self::Archive { path, name } => {
                write!(f, "oci-archive:{}", path.display())?;
                name.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
            }
            Self::DockerArchive { path, name } => {
                write!(f, "docker-archive:{}", path.display())?;
                name.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
            }
            Self::DockerDaemon(name) => write!(f, "docker-daemon:{name}"),
            Self::Registry(name) => {
                // A host that reads as a transport (`oci:5000/app`) is written the
                // `docker://` way, so the text parses back to this registry image.
                let plain = name.to_string();
                if plain.parse::<Self>().is_ok_and(|r| r == *self) {
                    f.write_str(&plain)
                } else {
                    write!(f, "docker://{plain}")
                }
            }
            Self::Named(name) => write!(f, "{name}"),
        }
    }
}

/// A validated image name, `[registry[:port]/]repository[:tag][@sha256:…]`, always carrying a
/// tag or a digest (`:latest` is added when neither is given).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageName {
    /// The repository part, including any registry host.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The registry host (`host[:port]`), when the first component names one: it contains a
    /// `.` or a `:`, or is `localhost` (Docker's rule).
    pub fn registry(&self) -> Option<&str> {
        let (first, rest) = self.repository.split_once('/')?;
        (!rest.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost"))
            .then_some(first)
    }

    /// A Docker Hub name as `docker://` writes it: without a registry host it is
    /// `docker.io/…`, and a single component is under `library/` (`ubuntu` →
    /// `docker.io/library/ubuntu:latest`).
    pub fn docker_hub(s: &str) -> Result<Self, ReferenceError> {
        let name: Self = s.parse()?;
        if name.registry().is_some() {
            return Ok(name);
        }
        let repository = if name.repository.contains('/') {
            format!("docker.io/{}", name.repository)
        } else {
            format!("docker.io/library/{}", name.repository)
        };
        Ok(Self { repository, ..name })
    }

    /// The same image under another tag.
    #[must_use]
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl FromStr for ImageName {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ReferenceError::InvalidName {
            name: s.to_string(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| invalid("the digest must be sha256:<64 hex digits>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid("the digest must be sha256:<64 hex digits>"));
                }
                (rest, Some(digest.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; an earlier one is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if repository.is_empty() {
            return Err(invalid("the repository is empty"));
        }
        let mut components = repository.split('/').peekable();
        let first = components.next().unwrap_or_default();
        let has_host = repository.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if has_host {
            if !first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                return Err(invalid("the registry host contains invalid characters"));
            }
        } else if !valid_path_component(first) {
            return Err(invalid(
                "repository components use lowercase letters, digits and single '.', '_' or '-' separators",
            ));
        }
        for component in components {
            if !valid_path_component(component) {
                return Err(invalid(
                    "repository components use lowercase letters, digits and single '.', '_' or '-' separators",
                ));
            }
        }
        let tag = match tag {
            Some(tag) => {
                let ok = !tag.is_empty()
                    && tag.len() <= 128
                    && tag
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && tag
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return Err(invalid(
                        "a tag is 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                    ));
                }
                Some(tag.to_string())
            }
            None if digest.is_none() => Some("latest".to_string()),
            None => None,
        };
        Ok(Self {
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

fn valid_path_component(c: &str) -> bool {
    if c.is_empty() {
        return false;
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: '.', '_', '__', or any number of '-'; never two different ones in a row.
    let mut prev_sep: Option<u8> = None;
    let mut run = 0;
    for &b in bytes {
        if alnum(b) {
            prev_sep = None;
            run = 0;
        } else if b"._-".contains(&b) {
            match prev_sep {
                Some(p) if p != b => return false,
                Some(b'.') => return false,
                Some(b'_') if run >= 2 => return false,
                _ => {}
            }
            prev_sep = Some(b);
            run += 1;
        } else {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(
            "scratch".parse::<ImageReference>().unwrap(),
            ImageReference::Scratch
        );
        assert_eq!(
            "oci:/tmp/x".parse::<ImageReference>().unwrap(),
            ImageReference::Layout {
                path: "/tmp/x".into(),
                name: None
            }
        );
        assert_eq!(
            "oci:/tmp/x:app:1".parse::<ImageReference>().unwrap(),
            ImageReference::Layout {
                path: "/tmp/x".into(),
                name: Some("app:1".into())
            }
        );
        assert_eq!(
            "oci-archive:out.tar:latest"
                .parse::<ImageReference>()
                .unwrap(),
            ImageReference::Archive {
                path: "out.tar".into(),
                name: Some("latest".into())
            }
        );
        assert_eq!(
            "oci:/tmp/x:app:1"
                .parse::<ImageReference>()
                .unwrap()
                .to_string(),
            "oci:/tmp/x:app:1"
        );
    }

    #[test]
    fn rejects_bad_references() {
        let cases = [
            ("", "empty"),
            ("oci:", "missing path"),
            ("oci-archive::x", "missing path"),
            ("containers-storage:x", "unsupported"),
            ("docker-archive:", "missing path"),
            ("MyApp", "uppercase"),
            ("app:", "empty tag"),
            ("app:-x", "tag starts with dash"),
            ("app@sha256:abc", "short digest"),
            ("a..b", "double dot"),
            ("a/", "empty component"),
        ];
        for (input, why) in cases {
            assert!(
                input.parse::<ImageReference>().is_err(),
                "{input:?} should fail ({why})"
            );
        }
    }

    #[test]
    fn registries_archives_and_daemons() {
        let parse = |s: &str| s.parse::<ImageReference>().unwrap();
        assert!(matches!(parse("myapp"), ImageReference::Named(_)));
        assert!(matches!(
            parse("kiln/stacks/bookworm-python"),
            ImageReference::Named(_)
        ));
        for registry in [
            "127.0.0.1:5000/demo:1",
            "ghcr.io/org/app",
            "localhost/app:2",
        ] {
            let r = parse(registry);
            assert!(matches!(r, ImageReference::Registry(_)), "{registry}");
        }
        assert_eq!(
            parse("docker://ubuntu:22.04").to_string(),
            "docker.io/library/ubuntu:22.04"
        );
        assert_eq!(
            parse("docker://bitnami/redis").to_string(),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(parse("docker://quay.io/a/b:1").to_string(), "quay.io/a/b:1");
        assert_eq!(
            parse("docker-archive:/tmp/x.tar:localhost/app:1"),
            ImageReference::DockerArchive {
                path: "/tmp/x.tar".into(),
                name: Some("localhost/app:1".into())
            }
        );
        assert_eq!(
            parse("docker-daemon:localhost/app:1").to_string(),
            "docker-daemon:localhost/app:1"
        );
        let n: ImageName = "127.0.0.1:5000/demo:1".parse().unwrap();
        assert_eq!(n.registry(), Some("127.0.0.1:5000"));
        let r = parse("[::1]:5000/team/demo:1");
        assert!(matches!(r, ImageReference::Registry(_)), "{r}");
        assert_eq!(r.to_string(), "[::1]:5000/team/demo:1");
        let v6: ImageName = "[::1]:5000/demo".parse().unwrap();
        assert_eq!(v6.registry(), Some("[::1]:5000"));
        assert_eq!(v6.tag(), Some("latest"));
        assert_eq!(n.with_tag("2").to_string(), "127.0.0.1:5000/demo:2");
    }

    #[test]
    fn names_get_latest_and_keep_ports() {
        let n: ImageName = "myapp".parse().unwrap();
        assert_eq!(n.to_string(), "myapp:latest");
        let n: ImageName = "127.0.0.1:5000/team/app".parse().unwrap();
        assert_eq!(n.repository(), "127.0.0.1:5000/team/app");
        assert_eq!(n.tag(), Some("latest"));
        let n: ImageName = "localhost/kiln/stacks/bookworm-python:1.2".parse().unwrap();
        assert_eq!(n.tag(), Some("1.2"));
        let d = format!("app@sha256:{}", "a".repeat(64));
        let n: ImageName = d.parse().unwrap();
        assert_eq!(n.tag(), None);
        assert_eq!(n.to_string(), d);
        assert!("my_app__x-y".parse::<ImageName>().is_ok());
    }
}
