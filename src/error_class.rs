//! The error classes of DESIGN §4 and what the relay does with each.
//!
//! Only the classification vocabulary lives here; each module maps its own errors onto it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The record can never succeed (bad magic, unknown schema id, Avro error, missing key,
    /// oversize item). Until the DLQ exists the partition stops at it; it is never skipped.
    Poison,
    /// Transient (throttling, 5xx, timeouts, connection refused): back off and retry forever
    /// while the partition holds its offset.
    Retryable,
    /// Table not found, access denied, bad credentials: retry slowly, `/ready` = false.
    Misconfiguration,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Poison => "poison",
            ErrorClass::Retryable => "retryable",
            ErrorClass::Misconfiguration => "misconfiguration",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
