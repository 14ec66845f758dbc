//! Real RSA signatures, so the gateway handles genuine signature bytes.
//!
//! Signatures are PKCS#1 v1.5 over SHA-256 of the message bytes, encoded as
//! base64url without padding: opaque text that the gateway must store and
//! pass on untouched, and that `/crypto/verify` (or anyone holding the public
//! key) can check. PKCS#1 v1.5 is deterministic, so a message always has the
//! same signature under one key.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rsa::{
    RsaPrivateKey,
    pkcs1::DecodeRsaPrivateKey,
    pkcs1v15::{Signature, SigningKey, VerifyingKey},
    pkcs8::DecodePrivateKey,
    signature::{Keypair as _, SignatureEncoding, Signer as _, Verifier as _},
};
use sha2::Sha256;

use crate::config::KeySource;

/// Errors obtaining the signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("reading RSA key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is neither a PKCS#8 nor a PKCS#1 PEM RSA private key.
    #[error("RSA key file {path} is not a PKCS#8 or PKCS#1 PEM private key: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// What the PKCS#8 parser said.
        reason: String,
    },
    /// Key generation failed.
    #[error("generating a {bits}-bit RSA key: {source}")]
    Generate {
        /// Requested size.
        bits: usize,
        /// Why.
        source: rsa::Error,
    },
}

/// Signing failed; with a key of at least 512 bits this does not happen.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(#[from] rsa::signature::Error);

/// Signs and verifies with one RSA key pair.
#[derive(Debug, Clone)]
pub struct MessageSigner {
    signing: SigningKey<Sha256>,
    verifying: VerifyingKey<Sha256>,
}

impl MessageSigner {
    /// Obtains the key described by `source`. Generation is CPU-heavy: call
    /// from a blocking context.
    ///
    /// # Errors
    /// [`KeyError`] if the file cannot be read or parsed, or generation fails.
    pub fn load(source: &KeySource) -> Result<Self, KeyError> {
        match source {
            KeySource::Generate { bits } => Self::generate(*bits),
            KeySource::File(path) => Self::from_pem_file(path),
        }
    }

    /// A signer with a freshly generated key.
    ///
    /// # Errors
    /// [`KeyError::Generate`] if the size is unusable.
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits)
            .map_err(|source| KeyError::Generate { bits, source })?;
        Ok(Self::from_key(key))
    }

    /// A signer with the key in a PEM file.
    ///
    /// # Errors
    /// [`KeyError::Read`] or [`KeyError::Parse`].
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let key = RsaPrivateKey::from_pkcs8_pem(&pem)
            .or_else(|pkcs8| RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|_| pkcs8))
            .map_err(|e| KeyError::Parse {
                path: shown,
                reason: e.to_string(),
            })?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: RsaPrivateKey) -> Self {
        let signing = SigningKey::<Sha256>::new(key);
        let verifying = signing.verifying_key();
        Self { signing, verifying }
    }

    /// The base64url (unpadded) PKCS#1 v1.5 SHA-256 signature of `message`.
    ///
    /// # Errors
    /// [`SignError`] if the RSA operation fails.
    pub fn sign(&self, message: &[u8]) -> Result<String, SignError> {
        let signature = self.signing.try_sign(message)?;
        Ok(URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// Whether `signature` (base64url, padding optional) is this key's
    /// signature of `message`. Anything undecodable is simply invalid.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        self.verifying.verify(message, &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    fn signer() -> MessageSigner {
        MessageSigner::generate(1024).expect("key generation")
    }

    #[test]
    fn signatures_round_trip() {
        let signer = signer();
        let signature = signer.sign(b"hello world").expect("sign");
        assert!(!signature.contains(['=', '+', '/']), "{signature}");
        assert!(signer.verify(b"hello world", &signature));
        assert!(signer.verify(b"hello world", &format!("{signature}==")));
        assert!(!signer.verify(b"hello worlds", &signature));
        assert!(!signer.verify(b"hello world", "<html>oops</html>"));
        assert!(!signer.verify(b"hello world", ""));
        // Deterministic: same message, same signature.
        assert_eq!(signer.sign(b"hello world").expect("sign"), signature);
    }

    #[test]
    fn another_key_does_not_verify() {
        let signature = signer().sign(b"m").expect("sign");
        assert!(!signer().verify(b"m", &signature));
    }

    #[test]
    fn loads_a_pkcs8_pem_file() {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("key");
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
        let path = std::env::temp_dir().join(format!("upstream-sim-{}.pem", std::process::id()));
        std::fs::write(&path, pem.as_bytes()).expect("write");
        let loaded = MessageSigner::from_pem_file(&path);
        let garbage =
            std::fs::write(&path, "not a key").map(|()| MessageSigner::from_pem_file(&path));
        let _ = std::fs::remove_file(&path);

        let loaded = loaded.expect("load");
        let from_key = MessageSigner::from_key(key);
        let signature = from_key.sign(b"stable").expect("sign");
        assert_eq!(loaded.sign(b"stable").expect("sign"), signature);
        assert!(matches!(garbage, Ok(Err(KeyError::Parse { .. }))));
    }
}
