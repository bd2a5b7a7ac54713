//! `OffsetTracker`: per-partition bookkeeping of which offsets are done, and what may be committed.
//!
//! The only rule it enforces (DESIGN §3.1): the commit position never passes an offset that is
//! not complete. It does no I/O and never talks to Kafka; the consumer reads `committable()`.

use std::collections::VecDeque;

/// Tracks offsets of one partition from dispatch to completion.
///
/// Offsets must be `track`ed in increasing order (Kafka delivers them so); they need not be
/// contiguous (compaction and transaction markers leave gaps). Completion may come in any order.
#[derive(Debug, Clone)]
pub struct OffsetTracker {
    /// Offsets dispatched and not yet released, oldest first, with their completion flag and
    /// record timestamp.
    pending: VecDeque<(i64, bool, Option<i64>)>,
    /// The next offset to commit (Kafka convention: last processed + 1). `None` until something
    /// completes or a start position is known.
    commit_pos: Option<i64>,
    /// Timestamp (ms) of the last record released into the commit position: every record before
    /// `commit_pos` is done. The failover's third start source (DESIGN §6).
    commit_ts: Option<i64>,
    /// The highest offset ever tracked, to reject out-of-order `track` calls.
    last_tracked: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackError {
    #[error("offset {offset} tracked after {last}: offsets must be tracked in increasing order")]
    OutOfOrder { offset: i64, last: i64 },
    #[error("offset {0} completed but it was never tracked or is already released")]
    Unknown(i64),
}

impl OffsetTracker {
    /// A tracker whose partition starts at `start` (the committed position, if known).
    pub fn new(start: Option<i64>) -> Self {
        OffsetTracker {
            pending: VecDeque::new(),
            commit_pos: start,
            commit_ts: None,
            last_tracked: None,
        }
    }

    /// Registers a dispatched offset and its record's timestamp (ms), if it has one.
    pub fn track(&mut self, offset: i64, ts: Option<i64>) -> Result<(), TrackError> {
        if let Some(last) = self.last_tracked
            && offset <= last
        {
            return Err(TrackError::OutOfOrder { offset, last });
        }
        self.last_tracked = Some(offset);
        self.pending.push_back((offset, false, ts));
        Ok(())
    }

    /// Marks an offset complete (acknowledged by every required sink, stale, or DLQ'd) and
    /// advances the commit position over every completed prefix.
    pub fn complete(&mut self, offset: i64) -> Result<(), TrackError> {
        let idx = self
            .pending
            .binary_search_by_key(&offset, |(o, _, _)| *o)
            .map_err(|_| TrackError::Unknown(offset))?;
        if let Some(entry) = self.pending.get_mut(idx) {
            entry.1 = true;
        }
        while let Some(&(o, true, ts)) = self.pending.front() {
            self.commit_pos = Some(o + 1);
            if ts.is_some() {
                self.commit_ts = ts;
            }
            self.pending.pop_front();
        }
        Ok(())
    }

    /// The offset to commit (next to read), if anything may be committed.
    pub fn committable(&self) -> Option<i64> {
        self.commit_pos
    }

    /// The timestamp of the last record behind the commit position, if known.
    pub fn committable_ts(&self) -> Option<i64> {
        self.commit_ts
    }

    /// Offsets dispatched and not yet released (some may be complete but behind an incomplete one).
    pub fn in_flight(&self) -> usize {
        self.pending.iter().filter(|(_, done, _)| !done).count()
    }

    /// Whether nothing tracked is still incomplete.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest incomplete offset, if any.
    pub fn oldest_pending(&self) -> Option<i64> {
        self.pending.front().map(|(o, _, _)| *o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_contiguous_prefix() {
        let mut t = OffsetTracker::new(None);
        for o in [5, 6, 8, 9] {
            t.track(o, Some(o * 100)).unwrap();
        }
        t.complete(6).unwrap();
        assert_eq!(t.committable(), None);
        assert_eq!(t.committable_ts(), None);
        t.complete(5).unwrap();
        assert_eq!(t.committable(), Some(7));
        assert_eq!(
            t.committable_ts(),
            Some(600),
            "the last released record's timestamp"
        );
        t.complete(9).unwrap();
        assert_eq!(t.committable(), Some(7));
        assert_eq!(t.committable_ts(), Some(600));
        t.complete(8).unwrap();
        assert_eq!(t.committable(), Some(10));
        assert_eq!(t.committable_ts(), Some(900));
        assert!(t.is_drained());
    }

    #[test]
    fn rejects_out_of_order_and_unknown() {
        let mut t = OffsetTracker::new(Some(3));
        t.track(3, None).unwrap();
        assert_eq!(
            t.track(3, None),
            Err(TrackError::OutOfOrder { offset: 3, last: 3 })
        );
        assert_eq!(t.complete(4), Err(TrackError::Unknown(4)));
        assert_eq!(t.committable(), Some(3));
    }

    proptest! {
        /// Random gaps and random completion orders never commit past an incomplete offset,
        /// and once everything is complete the commit position is last + 1.
        #[test]
        fn never_commits_past_incomplete(
            gaps in prop::collection::vec(1i64..4, 1..200),
            order_seed in prop::collection::vec(any::<u32>(), 1..200),
        ) {
            let mut offsets = Vec::new();
            let mut o = 0i64;
            for g in &gaps { o += g; offsets.push(o); }
            let mut t = OffsetTracker::new(None);
            for &o in &offsets { t.track(o, Some(o)).unwrap(); }
            // A permutation of the offsets driven by the seed.
            let mut order: Vec<usize> = (0..offsets.len()).collect();
            for (i, s) in order_seed.iter().enumerate().take(offsets.len()) {
                let j = (*s as usize) % offsets.len();
                order.swap(i % offsets.len(), j);
            }
            let mut done = std::collections::BTreeSet::new();
            for &i in &order {
                t.complete(offsets[i]).unwrap();
                done.insert(offsets[i]);
                if let Some(pos) = t.committable() {
                    // Every tracked offset below the commit position is complete.
                    for &x in offsets.iter().filter(|&&x| x < pos) {
                        prop_assert!(done.contains(&x), "committed {pos} past incomplete {x}");
                    }
                }
                // And the position is as far as it may go: the first incomplete offset bounds it.
                let first_incomplete = offsets.iter().find(|x| !done.contains(x)).copied();
                if let (Some(pos), Some(fi)) = (t.committable(), first_incomplete) {
                    prop_assert!(pos <= fi);
                }
            }
            prop_assert_eq!(t.committable(), offsets.last().map(|l| l + 1));
            prop_assert_eq!(t.committable_ts(), offsets.last().copied());
            prop_assert!(t.is_drained());
        }
    }
}
