//! Leader leases on both backends: terms, renewal, expiry and release on a clock the test
//! controls, and many nodes racing for one lease.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{Backend, Random};
use tradefloor_cluster::{ClusterConfig, Error, Lease, SHARD_COORDINATOR_LEASE, Term, Timestamp};

on_both_backends!(
    terms_renewals_expiry_and_release,
    racing_holders_never_overlap_and_epochs_increase,
);

const T0: Timestamp = Timestamp::from_unix_ms(1_700_000_000_000);

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0.unix_ms() + offset_ms)
}

fn duration() -> Duration {
    ClusterConfig::default().lease_duration
}

/// Asserts `result` is a refusal naming `holder`, its epoch and the end of its term.
fn assert_held(
    result: Result<Term, Error>,
    holder: Option<&str>,
    epoch: u64,
    expires_at: Timestamp,
) {
    match result {
        Err(Error::LeaseHeld {
            holder: found,
            epoch: found_epoch,
            expires_at: found_expiry,
            ..
        }) => {
            assert_eq!(found.as_deref(), holder);
            assert_eq!(found_epoch, epoch);
            assert_eq!(found_expiry, expires_at);
        }
        other => panic!("expected the lease held by {holder:?}, got {other:?}"),
    }
}

async fn terms_renewals_expiry_and_release(backend: &Backend) {
    let lease = Lease::open(backend.database.clone(), SHARD_COORDINATOR_LEASE)
        .await
        .unwrap();
    assert_eq!(lease.name(), SHARD_COORDINATOR_LEASE);
    assert_eq!(lease.current(at(0)).await.unwrap(), None);
    assert_eq!(lease.epoch().await.unwrap(), 0);

    // Given a free lease, the first taker starts term 1.
    let a1 = lease.try_acquire("a", at(0), duration()).await.unwrap();
    assert_eq!(
        a1,
        Term {
            holder: "a".to_owned(),
            epoch: 1,
            acquired_at: at(0),
            expires_at: at(2_000),
        }
    );
    assert_held(
        lease.try_acquire("b", at(1), duration()).await,
        Some("a"),
        1,
        at(2_000),
    );

    // Renewal keeps the epoch and the start, and extends the end; a renewal from a clock
    // reading earlier never shortens the term.
    let renewed = lease.try_acquire("a", at(1_000), duration()).await.unwrap();
    assert_eq!(
        (renewed.epoch, renewed.acquired_at, renewed.expires_at),
        (1, at(0), at(3_000))
    );
    let early = lease.try_acquire("a", at(500), duration()).await.unwrap();
    assert_eq!(early.expires_at, at(3_000));
    assert_eq!(lease.current(at(2_999)).await.unwrap(), Some(renewed));
    assert_eq!(lease.current(at(3_000)).await.unwrap(), None);

    // Expired: another holder starts term 2 at once, and the old holder is refused.
    let b2 = lease.try_acquire("b", at(3_000), duration()).await.unwrap();
    assert_eq!((b2.epoch, b2.acquired_at), (2, at(3_000)));
    assert_held(
        lease.try_acquire("a", at(3_001), duration()).await,
        Some("b"),
        2,
        at(5_000),
    );
    // An old term cannot be released by its former holder.
    assert!(!lease.release(&a1, at(3_002)).await.unwrap());

    // Released at 3 500: free from then on, but not for a clock reading earlier.
    assert!(lease.release(&b2, at(3_500)).await.unwrap());
    assert!(!lease.release(&b2, at(3_600)).await.unwrap());
    assert_eq!(lease.current(at(3_600)).await.unwrap(), None);
    assert_held(
        lease.try_acquire("a", at(3_400), duration()).await,
        None,
        2,
        at(3_500),
    );
    let a3 = lease.try_acquire("a", at(3_500), duration()).await.unwrap();
    assert_eq!(a3.epoch, 3);

    // A holder whose own term expired gets a new term, so it can tell it was interrupted.
    let a4 = lease
        .try_acquire("a", at(10_000), duration())
        .await
        .unwrap();
    assert_eq!((a4.epoch, a4.acquired_at), (4, at(10_000)));
    assert_eq!(lease.epoch().await.unwrap(), 4);

    // Leases are independent of each other.
    let other = Lease::open(backend.database.clone(), "another")
        .await
        .unwrap();
    assert_eq!(
        other
            .try_acquire("b", at(10_000), duration())
            .await
            .unwrap()
            .epoch,
        1
    );

    assert!(matches!(
        lease.try_acquire("", at(0), duration()).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        lease.try_acquire("a", at(0), Duration::ZERO).await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        Lease::open(backend.database.clone(), "").await,
        Err(Error::InvalidRequest(_))
    ));
}

/// What one racing holder saw.
#[derive(Debug)]
enum Observation {
    Acquired(Term),
    Released { term: Term, at: Timestamp },
}

/// Holders on their own connection pools race for one lease over simulated time: each
/// reads a shared clock (slightly behind, as skewed clocks are), then tries to take or renew
/// the lease, or releases it. Afterwards: each epoch had one holder, epochs ran 1, 2, 3…
/// with starts in order, and no term's validity overlapped the next one's.
async fn racing_holders_never_overlap_and_epochs_increase(backend: &Backend) {
    const HOLDERS: u64 = 6;
    const STEPS: usize = 60;
    const CLOCK_STEP_MS_MAX: u64 = 400;
    const CLOCK_SKEW_MS_MAX: u64 = 150;
    let seed = common::seed();
    let clock = Arc::new(AtomicI64::new(T0.unix_ms()));
    let mut tasks = Vec::new();
    let mut databases = Vec::new();
    for index in 0..HOLDERS {
        let database = backend.another_node().await;
        databases.push(database.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let lease = Lease::open(database, SHARD_COORDINATOR_LEASE)
                .await
                .unwrap();
            let holder = format!("n{index}");
            let mut random = Random::new(seed.wrapping_add(index));
            let mut observations = Vec::new();
            let mut held: Option<Term> = None;
            for _ in 0..STEPS {
                let step = random.below(CLOCK_STEP_MS_MAX) as i64;
                let skew = random.below(CLOCK_SKEW_MS_MAX) as i64;
                // Monotonic per holder, as a node's own clock is.
                let now = Timestamp::from_unix_ms(clock.fetch_add(step, Ordering::SeqCst) - skew)
                    .max(
                        held.as_ref()
                            .map_or(Timestamp::from_unix_ms(0), |t| t.acquired_at),
                    );
                match held.take() {
                    Some(term) if random.below(4) == 0 => {
                        if lease.release(&term, now).await.unwrap() {
                            observations.push(Observation::Released { term, at: now });
                        }
                    }
                    _ => match lease.try_acquire(&holder, now, duration()).await {
                        Ok(term) => {
                            held = Some(term.clone());
                            observations.push(Observation::Acquired(term));
                        }
                        Err(Error::LeaseHeld { .. }) => {}
                        Err(error) => panic!("{holder}: {error}"),
                    },
                }
                tokio::task::yield_now().await;
            }
            observations
        }));
    }
    let mut observations = Vec::new();
    for task in tasks {
        observations.extend(task.await.unwrap());
    }
    for database in databases {
        database.close().await;
    }
    check_terms(&observations);
}

/// Folds the observations into one term per epoch, each ending at its last known expiry or
/// its release, and checks them against each other.
fn check_terms(observations: &[Observation]) {
    // Per epoch: holder, start, end of validity.
    let mut terms: std::collections::BTreeMap<u64, (String, Timestamp, Timestamp)> =
        Default::default();
    for observation in observations {
        if let Observation::Acquired(term) = observation {
            let entry = terms
                .entry(term.epoch)
                .or_insert_with(|| (term.holder.clone(), term.acquired_at, term.expires_at));
            assert_eq!(entry.0, term.holder, "epoch {} had two holders", term.epoch);
            assert_eq!(entry.1, term.acquired_at, "epoch {} restarted", term.epoch);
            entry.2 = entry.2.max(term.expires_at);
        }
    }
    for observation in observations {
        if let Observation::Released { term, at } = observation {
            let entry = terms
                .get_mut(&term.epoch)
                .expect("released a term never acquired");
            entry.2 = entry.2.min(*at);
        }
    }
    let epochs: Vec<u64> = terms.keys().copied().collect();
    let expected: Vec<u64> = (1..=epochs.len() as u64).collect();
    assert_eq!(epochs, expected, "epochs must run 1, 2, 3… without gaps");
    assert!(epochs.len() >= 5, "too few terms to prove much: {terms:?}");
    for (earlier, later) in terms.values().zip(terms.values().skip(1)) {
        assert!(
            earlier.1 <= later.1,
            "terms started out of epoch order: {terms:?}"
        );
        assert!(
            earlier.2 <= later.1,
            "overlapping terms {earlier:?} and {later:?}"
        );
    }
    eprintln!("{} terms, {} observations", terms.len(), observations.len());
}
