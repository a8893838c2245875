//! Time as the cluster's decisions see it: a value passed in, never read from a clock inside
//! the decision logic, so tests run on a clock they control.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// A point in time, in milliseconds since the Unix epoch (how it is stored).
///
/// Membership and lease decisions compare timestamps written by different nodes, so their
/// clocks must agree to well within the failure timeout and the lease duration; the fenced
/// epochs of the journal keep a skewed node from doing harm, but not from being declared
/// down early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `unix_ms` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(unix_ms: i64) -> Self {
        Self(unix_ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// The system clock now: for callers to pass in, never read by the decision logic.
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    /// `self + duration`, or an error if it leaves the representable range.
    pub fn checked_add(self, duration: Duration) -> Result<Self, Error> {
        duration_ms(duration)
            .and_then(|ms| self.0.checked_add(ms))
            .map(Self)
            .ok_or_else(|| Error::InvalidRequest(format!("{self} + {duration:?} overflows")))
    }

    /// `self - duration`, or an error if it leaves the representable range.
    pub fn checked_sub(self, duration: Duration) -> Result<Self, Error> {
        duration_ms(duration)
            .and_then(|ms| self.0.checked_sub(ms))
            .map(Self)
            .ok_or_else(|| Error::InvalidRequest(format!("{self} - {duration:?} overflows")))
    }
}

/// Whole milliseconds of `duration` (the stored resolution), if they fit.
fn duration_ms(duration: Duration) -> Option<i64> {
    i64::try_from(duration.as_millis()).ok()
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_in_whole_milliseconds_and_checked() {
        let start = Timestamp::from_unix_ms(1_000);
        assert_eq!(
            start.checked_add(Duration::from_micros(2_500)).unwrap(),
            Timestamp::from_unix_ms(1_002)
        );
        assert_eq!(
            start.checked_sub(Duration::from_secs(2)).unwrap(),
            Timestamp::from_unix_ms(-1_000)
        );
        assert!(matches!(
            Timestamp::from_unix_ms(i64::MAX).checked_add(Duration::from_millis(1)),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            start.checked_sub(Duration::MAX),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(Timestamp::now() > Timestamp::from_unix_ms(1_577_836_800_000));
    }
}
