//! Opaque page tokens.

use base64::Engine as _;

/// Position of the next page. Encoded as URL-safe base64 of `{"offset":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("Invalid page token `{0}`")]
pub struct PageTokenError(pub String);

impl PageToken {
    pub fn from_offset(offset: u64) -> Self {
        Self { offset }
    }

    pub fn encode(self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"offset\":{}}}", self.offset))
    }

    /// Decode a token; an empty token means the first page.
    pub fn decode(token: &str) -> Result<Self, PageTokenError> {
        if token.is_empty() {
            return Ok(Self { offset: 0 });
        }
        let bad = || PageTokenError(token.to_string());
        let trimmed = token.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| bad())?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let offset = value
            .get("offset")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(bad)?;
        Ok(Self { offset })
    }
}
