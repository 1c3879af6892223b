//! Errors for payloads and topics that fail decoding or validation.

/// Why a payload was refused. [`ProtocolError::reason`] gives a short stable label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// The payload is larger than [`crate::MAX_PAYLOAD_BYTES`].
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The payload is not JSON, or not the expected shape.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// `"v"` is missing or names a version this build does not speak.
    #[error("unknown protocol version {0} (this build speaks v{v})", v = crate::VERSION)]
    UnknownVersion(String),
    /// The payload parsed but a field breaks the rules (names, numbers, limits).
    #[error("invalid {field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl ProtocolError {
    /// Short stable label, used as a metric label and stored with rejected payloads.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::TooLarge { .. } => "too_large",
            ProtocolError::Malformed(_) => "malformed",
            ProtocolError::UnknownVersion(_) => "unknown_version",
            ProtocolError::Invalid { .. } => "invalid",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ProtocolError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
