//! How far behind the read replica is, measured the way a reader feels it.
//!
//! The lag is how long ago the replica *received* the WAL it has not yet
//! *replayed*: the probe samples the received position every second, and the
//! lag is the age of the oldest sample that replay has not passed. A replica
//! that keeps up with a long-running transaction on the primary (a bulk load:
//! WAL flows, no commit for minutes) therefore shows a lag of about one probe
//! interval, not the age of the last commit; a replica whose replay stands
//! still (paused, conflicting, overloaded) shows a lag that grows by a second
//! every second, from the moment the first unreplayed WAL arrived.
//!
//! Blind spot, shared with every replica-side measure: if the replica stops
//! *receiving* (primary unreachable) it has nothing to replay and reads 0.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::db::WalPositions;

/// Samples of the received WAL position, oldest first.
#[derive(Debug, Default)]
pub struct LagEstimator {
    samples: VecDeque<(f64, Instant)>,
}

/// At most this many samples are kept (one per probe): past it, the oldest
/// survives and the lag keeps growing correctly.
const MAX_SAMPLES: usize = 3600;

impl LagEstimator {
    /// A fresh estimator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one probe taken at `now` and returns the lag it implies.
    pub fn observe(&mut self, positions: Option<WalPositions>, now: Instant) -> Duration {
        let Some(WalPositions { received, replayed }) = positions else {
            self.samples.clear();
            return Duration::ZERO;
        };
        // Everything up to `replayed` is visible: those samples are done.
        while self
            .samples
            .front()
            .is_some_and(|(lsn, _)| *lsn <= replayed)
        {
            self.samples.pop_front();
        }
        if received <= replayed {
            self.samples.clear();
            return Duration::ZERO;
        }
        if self.samples.back().is_none_or(|(lsn, _)| *lsn < received)
            && self.samples.len() < MAX_SAMPLES
        {
            self.samples.push_back((received, now));
        }
        self.samples
            .front()
            .map(|(_, seen)| now.saturating_duration_since(*seen))
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    fn wal(received: f64, replayed: f64) -> Option<WalPositions> {
        Some(WalPositions { received, replayed })
    }

    #[test]
    fn a_primary_or_a_fully_replayed_replica_has_no_lag() {
        let (mut lag, t) = (LagEstimator::new(), Instant::now());
        assert_eq!(lag.observe(None, t), Duration::ZERO);
        assert_eq!(lag.observe(wal(100.0, 100.0), at(t, 1)), Duration::ZERO);
    }

    #[test]
    fn a_replica_keeping_up_with_a_long_transaction_lags_by_one_interval_at_most() {
        let (mut lag, t) = (LagEstimator::new(), Instant::now());
        // WAL keeps flowing (no commit), replay is always just behind receive.
        for second in 0..60u64 {
            let received = 1000.0 * (second + 1) as f64;
            // Replay has passed everything received up to the previous probe.
            let measured = lag.observe(wal(received, received - 500.0), at(t, second));
            assert!(
                measured <= Duration::from_secs(1),
                "second {second}: {measured:?}"
            );
        }
    }

    #[test]
    fn a_replica_whose_replay_stands_still_lags_from_the_first_unreplayed_wal() {
        let (mut lag, t) = (LagEstimator::new(), Instant::now());
        assert_eq!(lag.observe(wal(100.0, 100.0), t), Duration::ZERO);
        assert_eq!(lag.observe(wal(200.0, 100.0), at(t, 1)), Duration::ZERO);
        assert_eq!(
            lag.observe(wal(300.0, 100.0), at(t, 2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            lag.observe(wal(300.0, 100.0), at(t, 10)),
            Duration::from_secs(9)
        );
        // Replay resumes and passes the first sample: the lag drops to the next one's age.
        assert_eq!(
            lag.observe(wal(300.0, 250.0), at(t, 11)),
            Duration::from_secs(9)
        );
        assert_eq!(lag.observe(wal(300.0, 300.0), at(t, 12)), Duration::ZERO);
    }

    #[test]
    fn a_fresh_replica_that_is_behind_starts_counting_at_once() {
        let (mut lag, t) = (LagEstimator::new(), Instant::now());
        assert_eq!(lag.observe(wal(500.0, 0.0), t), Duration::ZERO);
        assert_eq!(
            lag.observe(wal(500.0, 0.0), at(t, 3)),
            Duration::from_secs(3)
        );
    }
}
