//! Every limit of the cluster, named, with its default.

use std::time::Duration;

use crate::error::Error;

/// Missed heartbeats a node survives before it may be declared down: one lost to a slow
/// database round trip must not cost a node its shards.
pub const HEARTBEATS_MISSED_MAX: u32 = 3;

/// How often the cluster checks on its members and its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// How often a node writes its heartbeat (and the leader renews its lease).
    pub heartbeat_interval: Duration,
    /// How long a node may be silent before any member may declare it down. At least
    /// [`HEARTBEATS_MISSED_MAX`] heartbeat intervals.
    pub failure_timeout: Duration,
    /// How long a lease term lasts unless renewed. Longer than a heartbeat interval, so the
    /// leader renews it several times per term.
    pub lease_duration: Duration,
}

impl Default for ClusterConfig {
    /// Sized for the failover target of three seconds from a kill to serving elsewhere
    /// (BENCHMARKS.md): two seconds to notice, one to move the shards.
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(2),
            lease_duration: Duration::from_secs(2),
        }
    }
}

impl ClusterConfig {
    /// Checks the limits fit together.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Err(Error::InvalidRequest(reason.to_owned()));
        if self.heartbeat_interval < Duration::from_millis(1) {
            return invalid("heartbeat_interval must be at least a millisecond");
        }
        if self.failure_timeout < self.heartbeat_interval * HEARTBEATS_MISSED_MAX {
            return invalid("failure_timeout must cover HEARTBEATS_MISSED_MAX heartbeat intervals");
        }
        if self.lease_duration <= self.heartbeat_interval {
            return invalid("lease_duration must exceed heartbeat_interval, so renewals overlap");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ClusterConfig::default().validate().unwrap();
    }

    #[test]
    fn limits_that_do_not_fit_are_refused() {
        let short_timeout = ClusterConfig {
            failure_timeout: Duration::from_millis(1_499),
            ..ClusterConfig::default()
        };
        assert!(matches!(
            short_timeout.validate(),
            Err(Error::InvalidRequest(_))
        ));
        let short_lease = ClusterConfig {
            lease_duration: Duration::from_millis(500),
            ..ClusterConfig::default()
        };
        assert!(matches!(
            short_lease.validate(),
            Err(Error::InvalidRequest(_))
        ));
        let no_interval = ClusterConfig {
            heartbeat_interval: Duration::ZERO,
            ..ClusterConfig::default()
        };
        assert!(matches!(
            no_interval.validate(),
            Err(Error::InvalidRequest(_))
        ));
    }
}
