//! `RecordIn`: an owned copy of one consumed Kafka record, handed from the poll thread to its
//! partition actor, with the in-flight ticket that accounts for it until it is finished.
//!
//! Plain data; it must not decode or route.

use std::time::Instant;

use crate::event::SourcePos;
use crate::status::InFlight;
use crate::telemetry::trace::TracedSpan;

#[derive(Debug)]
pub struct RecordIn {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Headers in order; a header may have no value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
    pub received: Instant,
    /// Counts this record against its partition's and the process's in-flight bounds until dropped.
    pub ticket: Option<InFlight>,
    /// Its `process` span when it is traced (set by its partition actor; ends when the record
    /// is done and dropped).
    pub trace: Option<Box<TracedSpan>>,
}

impl RecordIn {
    /// Bytes this record holds, as counted against the in-flight bounds (plus a fixed overhead
    /// for the decoded copies and bookkeeping).
    pub fn accounted_bytes(
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(String, Option<Vec<u8>>)],
    ) -> usize {
        const OVERHEAD: usize = 512;
        OVERHEAD
            + key.map_or(0, <[u8]>::len)
            + payload.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    pub fn pos(&self) -> SourcePos {
        SourcePos {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The W3C `traceparent` header, if the producer set a well-formed one. A malformed value
    /// is not propagated (it would be refused by SQS or mislead a trace backend).
    pub fn traceparent(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| well_formed_traceparent(v))
    }
}

/// W3C Trace Context: `version-trace_id-parent_id-flags` in lowercase hex (2-32-16-2 digits);
/// versions after `00` may append `-` fields.
pub fn well_formed_traceparent(v: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let mut parts = v.split('-');
    let (Some(ver), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let rest_ok = ver != "00" || parts.next().is_none();
    v.len() <= 512
        && hex(ver, 2)
        && ver != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && rest_ok
}

#[cfg(test)]
mod tests {
    use super::well_formed_traceparent as ok;

    #[test]
    fn traceparent_must_be_w3c() {
        assert!(ok(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(ok(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        assert!(!ok(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        assert!(!ok(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
        assert!(!ok(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!ok("00-abc-def-01"));
        assert!(!ok(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{1}"
        ));
        assert!(!ok(""));
    }
}
