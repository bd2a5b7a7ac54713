//! `RecordIn`: an owned copy of one consumed Kafka record, handed from the poll thread to its
//! partition actor, with the in-flight ticket that accounts for it until it is finished.
//!
//! Plain data; it must not decode or route.

use std::time::Instant;

use crate::event::SourcePos;
use crate::status::InFlight;

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

    /// The W3C `traceparent` header, if the producer set one.
    pub fn traceparent(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}
