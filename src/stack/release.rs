//! A suite's `InRelease` file: its OpenPGP signature and the SHA-256 of every index.
//!
//! Only the *signed* text is parsed, so nothing appended outside the signature can be
//! trusted by mistake. See <https://wiki.debian.org/DebianRepository/Format#A.22Release.22_files>.

use std::collections::BTreeMap;
use std::path::Path;

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};

use super::control::parse_stanzas;

/// Keyring bytes that hold no usable OpenPGP public key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The bytes are neither an armored nor a binary OpenPGP keyring.
    #[error("{problem}")]
    Unreadable {
        /// What the OpenPGP reader said (the whole message).
        problem: pgp::errors::Error,
    },
    /// The keyring parsed but holds no public key.
    #[error("no OpenPGP public keys found")]
    NoKeys,
}

/// Errors reading or verifying a Release file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The keyring could not be read.
    #[error("cannot read the archive keyring {path}")]
    Keyring {
        /// The keyring file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a clearsigned message.
    #[error("{url} is not a clearsigned InRelease file: {problem}")]
    NotSigned {
        /// Where it came from.
        url: String,
        /// The parse error.
        problem: String,
    },
    /// No key of the keyring made the signature.
    #[error(
        "the signature of {url} does not verify with the archive keyring ({keys} keys); the mirror may be compromised or the keyring out of date"
    )]
    BadSignature {
        /// Where it came from.
        url: String,
        /// How many keys were tried.
        keys: usize,
    },
    /// The content is not a valid Release file.
    #[error("{url} is not a valid Release file: {problem}")]
    Invalid {
        /// Where it came from.
        url: String,
        /// What is wrong.
        problem: String,
    },
}

/// The OpenPGP public keys an archive is verified with.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads binary (`.gpg`) or ASCII-armored (`.asc`) keyring files. The keyring is the
    /// trust anchor, so its primary keys are trusted as they are; a signing *subkey* is used
    /// only if its binding signature by the primary key verifies.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<Self, ReleaseError> {
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let bytes = std::fs::read(path).map_err(|source| ReleaseError::Keyring {
                path: path.to_path_buf(),
                source,
            })?;
            keys.extend(
                Self::parse(&bytes).map_err(|problem| ReleaseError::Keyring {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, problem),
                })?,
            );
        }
        Ok(Self { keys })
    }

    /// A keyring from in-memory keyring bytes (binary or armored).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        Ok(Self {
            keys: Self::parse(bytes)?,
        })
    }

    fn parse(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, KeyringError> {
        let unreadable = |problem| KeyringError::Unreadable { problem };
        let parsed: Vec<SignedPublicKey> = if bytes.starts_with(b"-----BEGIN") {
            let (iter, _) = SignedPublicKey::from_armor_many(bytes).map_err(unreadable)?;
            iter.filter_map(Result::ok).collect()
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(unreadable)?
                .filter_map(Result::ok)
                .collect()
        };
        if parsed.is_empty() {
            return Err(KeyringError::NoKeys);
        }
        Ok(parsed)
    }

    /// Adds the keys of `other`.
    pub fn extend(&mut self, other: Keyring) {
        self.keys.extend(other.keys);
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the keyring has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A parsed Release file.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Suite`.
    pub suite: String,
    /// `Codename`.
    pub codename: String,
    /// `SHA256`: index path (relative to `dists/<suite>/`) → (size, hex digest).
    pub sha256: BTreeMap<String, (u64, String)>,
}

impl Release {
    /// Verifies a clearsigned `InRelease` file with `keyring` (unless it is `None`, meaning
    /// the user chose to skip verification) and parses the signed text.
    pub fn from_inrelease(
        text: &str,
        keyring: Option<&Keyring>,
        url: &str,
    ) -> Result<Self, ReleaseError> {
        let (message, _) =
            CleartextSignedMessage::from_string(text).map_err(|e| ReleaseError::NotSigned {
                url: url.to_string(),
                problem: e.to_string(),
            })?;
        if let Some(keyring) = keyring {
            let verified = keyring.keys.iter().any(|key| {
                message.verify(key).is_ok()
                    || key.public_subkeys.iter().any(|sub| {
                        sub.verify_bindings(&key.primary_key).is_ok() && message.verify(sub).is_ok()
                    })
            });
            if !verified {
                return Err(ReleaseError::BadSignature {
                    url: url.to_string(),
                    keys: keyring.len(),
                });
            }
        }
        Self::parse(&message.signed_text().replace("\r\n", "\n"), url)
    }

    /// Parses Release text (already verified).
    pub fn parse(text: &str, url: &str) -> Result<Self, ReleaseError> {
        let invalid = |problem: String| ReleaseError::Invalid {
            url: url.to_string(),
            problem,
        };
        let stanzas = parse_stanzas(text).map_err(|e| invalid(e.to_string()))?;
        let stanza = stanzas
            .first()
            .ok_or_else(|| invalid("it is empty".to_string()))?;
        let mut sha256 = BTreeMap::new();
        for line in stanza.get("SHA256").unwrap_or("").lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [hex, size, path] = parts.as_slice() else {
                continue;
            };
            let size = size
                .parse()
                .map_err(|_| invalid(format!("bad size in SHA256 line {line:?}")))?;
            sha256.insert((*path).to_string(), (size, (*hex).to_ascii_lowercase()));
        }
        if sha256.is_empty() {
            return Err(invalid("it lists no SHA256 checksums".to_string()));
        }
        Ok(Self {
            suite: stanza.get("Suite").unwrap_or_default().to_string(),
            codename: stanza.get("Codename").unwrap_or_default().to_string(),
            sha256,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgp::composed::{KeyType, SecretKeyParamsBuilder, SignedSecretKey};
    use pgp::types::Password;

    /// A fresh signing key and its public half (as a keyring).
    pub(crate) fn test_key() -> (SignedSecretKey, Keyring) {
        let mut rng = rand_for_tests();
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_sign(true)
            .primary_user_id("kiln test archive <test@example.invalid>".into())
            .build()
            .unwrap();
        let secret = params.generate(&mut rng).unwrap();
        let public = secret.to_public_key();
        (secret, Keyring { keys: vec![public] })
    }

    pub(crate) fn rand_for_tests() -> impl rand::Rng + rand::CryptoRng {
        use rand::SeedableRng;
        rand::rngs::StdRng::seed_from_u64(42)
    }

    /// Clearsigns `text` with `key`.
    pub(crate) fn clearsign(text: &str, key: &SignedSecretKey) -> String {
        let message = CleartextSignedMessage::sign(
            rand_for_tests(),
            text,
            &key.primary_key,
            &Password::empty(),
        )
        .unwrap();
        message
            .to_armored_string(pgp::composed::ArmorOptions::default())
            .unwrap()
    }

    const RELEASE: &str = "Origin: Debian\nSuite: stable\nCodename: bookworm\nSHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 42 main/binary-amd64/Packages.xz\n";

    #[test]
    fn signed_release_verifies_and_parses() {
        let (secret, keyring) = test_key();
        let signed = clearsign(RELEASE, &secret);
        let release = Release::from_inrelease(&signed, Some(&keyring), "test").unwrap();
        assert_eq!(release.codename, "bookworm");
        assert_eq!(release.sha256["main/binary-amd64/Packages.xz"].0, 42);
    }

    #[test]
    fn wrong_key_or_tampering_is_refused() {
        let (secret, _) = test_key();
        let (_, other) = {
            // A different key: generated from another seed.
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let params = SecretKeyParamsBuilder::default()
                .key_type(KeyType::Ed25519Legacy)
                .can_sign(true)
                .primary_user_id("other <o@example.invalid>".into())
                .build()
                .unwrap();
            let s = params.generate(&mut rng).unwrap();
            let p = s.to_public_key();
            (s, Keyring { keys: vec![p] })
        };
        let signed = clearsign(RELEASE, &secret);
        assert!(matches!(
            Release::from_inrelease(&signed, Some(&other), "test"),
            Err(ReleaseError::BadSignature { .. })
        ));
        let tampered = signed.replace("Codename: bookworm", "Codename: evilworm");
        let (_, keyring) = test_key();
        assert!(matches!(
            Release::from_inrelease(&tampered, Some(&keyring), "test"),
            Err(ReleaseError::BadSignature { .. })
        ));
        assert!(matches!(
            Release::from_inrelease(RELEASE, Some(&keyring), "test"),
            Err(ReleaseError::NotSigned { .. })
        ));
    }
}
