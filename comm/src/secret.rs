//! The cluster secret.

use rand::RngCore;
use std::fmt;

/// Shared secret of one cluster. Every connection proves knowledge of it by HMAC; it never
/// crosses the wire. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A fresh random 256-bit secret.
    pub fn random() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// Parse the hex form stored in scheduler files.
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let bytes = hex::decode(text.trim())?;
        if bytes.is_empty() {
            return Err(hex::FromHexError::InvalidStringLength);
        }
        Ok(Secret(bytes))
    }

    /// Use arbitrary bytes (for example a passphrase from the environment) as the secret.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The hex form stored in scheduler files.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}
