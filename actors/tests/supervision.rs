//! Supervision tests, on tokio's paused clock.
//!
//! Each test runs on a current-thread runtime, so every actor it spawns runs on the test's own
//! thread: a panic hook counting panics per thread tells each test exactly how many actor
//! panics happened in it, and each test fails on any it did not cause on purpose.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use tokio::time::{Instant, sleep};
use tradefloor_actors::{
    Backoff, ChildSpec, ChildStatus, Error, GUARDIAN_NAME, Guardian, Jitter, Strategy,
    SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage, SupervisorStats,
};

thread_local! {
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Starts counting panics on this thread; returns how many there were so far (zero).
fn count_panics() -> usize {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|panics| panics.set(panics.get() + 1));
            previous(info);
        }));
    });
    PANICS.with(|panics| panics.set(0));
    0
}

fn panics() -> usize {
    PANICS.with(Cell::get)
}

/// What the test workers report: lifecycle events with their instants, and the current
/// incarnation of each worker.
#[derive(Clone, Default)]
struct Probe {
    events: Arc<Mutex<Vec<(String, Instant)>>>,
    workers: Arc<Mutex<HashMap<String, ActorRef<WorkerMessage>>>>,
}

impl Probe {
    fn record(&self, event: String) {
        self.events.lock().unwrap().push((event, Instant::now()));
    }

    fn events(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(event, _)| event.clone())
            .collect()
    }

    /// Events since the first `from` of them.
    fn events_after(&self, from: usize) -> Vec<String> {
        self.events()[from..].to_vec()
    }

    fn start_times(&self, name: &str) -> Vec<Instant> {
        let start = format!("start:{name}");
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(event, _)| *event == start)
            .map(|(_, at)| *at)
            .collect()
    }

    fn worker(&self, name: &str) -> ActorRef<WorkerMessage> {
        self.workers.lock().unwrap()[name].clone()
    }
}

/// A test child: counts its starts, fails on command, and fails its first starts if told to.
struct Worker;

#[derive(Clone)]
struct WorkerArgs {
    name: String,
    starts: Arc<AtomicUsize>,
    probe: Probe,
    /// Starts (1-based) whose `post_start` fails: a failure right after a restart.
    fail_after_start: Vec<usize>,
    /// Starts (1-based) whose `pre_start` fails: the spawn itself fails.
    fail_to_start: Vec<usize>,
}

enum WorkerMessage {
    Panic,
    Fail,
    Quit,
}

impl ractor::Message for WorkerMessage {}

struct WorkerState {
    start: usize,
}

impl Actor for Worker {
    type Msg = WorkerMessage;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMessage>,
        arguments: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let start = arguments.starts.fetch_add(1, Ordering::SeqCst) + 1;
        if arguments.fail_to_start.contains(&start) {
            return Err(format!("{} cannot start", arguments.name).into());
        }
        arguments.probe.record(format!("start:{}", arguments.name));
        arguments
            .probe
            .workers
            .lock()
            .unwrap()
            .insert(arguments.name.clone(), myself);
        Ok(WorkerState { start })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMessage>,
        message: WorkerMessage,
        _state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::Panic => panic!("boom"),
            WorkerMessage::Fail => Err("bad input".into()),
            WorkerMessage::Quit => {
                myself.stop(Some("quit".to_string()));
                Ok(())
            }
        }
    }
}

/// The worker's arguments live in the handler so `post_stop` can report and `post_start` can
/// fail; ractor hands `post_start` only the state.
struct ReportingWorker(WorkerArgs);

impl Actor for ReportingWorker {
    type Msg = WorkerMessage;
    type State = WorkerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMessage>,
        (): (),
    ) -> Result<WorkerState, ActorProcessingErr> {
        Worker.pre_start(myself, self.0.clone()).await
    }

    async fn post_start(
        &self,
        _myself: ActorRef<WorkerMessage>,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        if self.0.fail_after_start.contains(&state.start) {
            return Err(format!("{} broke after start {}", self.0.name, state.start).into());
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMessage>,
        message: WorkerMessage,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        Worker.handle(myself, message, state).await
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkerMessage>,
        _state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        self.0.probe.record(format!("stop:{}", self.0.name));
        Ok(())
    }
}

/// A worker child spec and its start counter.
fn worker(name: &str, probe: &Probe) -> (ChildSpec, Arc<AtomicUsize>) {
    worker_failing(name, probe, &[], &[])
}

fn worker_failing(
    name: &str,
    probe: &Probe,
    fail_after_start: &[usize],
    fail_to_start: &[usize],
) -> (ChildSpec, Arc<AtomicUsize>) {
    let arguments = WorkerArgs {
        name: name.to_string(),
        starts: Arc::new(AtomicUsize::new(0)),
        probe: probe.clone(),
        fail_after_start: fail_after_start.to_vec(),
        fail_to_start: fail_to_start.to_vec(),
    };
    let starts = Arc::clone(&arguments.starts);
    let spec = ChildSpec::actor(name, "worker", move || {
        (ReportingWorker(arguments.clone()), ())
    });
    (spec, starts)
}

/// A quick, jitter-free configuration, so restart instants are exact.
fn config(strategy: Strategy) -> SupervisionConfig {
    SupervisionConfig {
        strategy,
        max_restarts: 3,
        within: Duration::from_secs(10),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        jitter: 0.0,
        ..SupervisionConfig::default()
    }
}

async fn start(config: SupervisionConfig, children: Vec<ChildSpec>) -> ActorRef<SupervisorMessage> {
    let arguments = SupervisorArgs::new("test", config, children);
    let (supervisor, _join) = Supervisor::spawn(None, Supervisor, arguments)
        .await
        .expect("supervisor starts");
    supervisor
}

async fn stats(supervisor: &ActorRef<SupervisorMessage>) -> SupervisorStats {
    Supervisor::stats(supervisor)
        .await
        .expect("supervisor answers")
}

/// Lets virtual time pass (the clock jumps straight to each due timer).
async fn settle() {
    sleep(Duration::from_secs(30)).await;
}

fn restarts(stats: &SupervisorStats) -> Vec<(String, u32, ChildStatus)> {
    stats
        .children
        .iter()
        .map(|child| (child.name.clone(), child.restarts, child.status))
        .collect()
}

fn counts(starts: &[&Arc<AtomicUsize>]) -> Vec<usize> {
    starts
        .iter()
        .map(|count| count.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    let expected_panics = count_panics() + 1;
    let probe = Probe::default();
    let (a, a_starts) = worker("a", &probe);
    let (b, b_starts) = worker("b", &probe);
    let (c, c_starts) = worker("c", &probe);
    let supervisor = start(config(Strategy::OneForOne), vec![a, b, c]).await;

    probe.worker("b").cast(WorkerMessage::Panic).unwrap();
    settle().await;

    assert_eq!(counts(&[&a_starts, &b_starts, &c_starts]), [1, 2, 1]);
    let stats = stats(&supervisor).await;
    assert_eq!(stats.restarts_total, 1);
    assert_eq!(
        restarts(&stats),
        [
            ("a".to_string(), 0, ChildStatus::Running),
            ("b".to_string(), 1, ChildStatus::Running),
            ("c".to_string(), 0, ChildStatus::Running),
        ]
    );
    assert_eq!(stats.children[1].path, "test/b");
    assert_eq!(stats.children[1].kind, "worker");
    let reason = stats.children[1].last_failure.as_deref().unwrap();
    assert!(reason.contains("boom"), "{reason}");
    assert_eq!(
        supervisor.get_status(),
        ActorStatus::Running,
        "panic contained"
    );
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_child_stopping_in_reverse_and_starting_in_order() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    let (a, a_starts) = worker("a", &probe);
    let (b, b_starts) = worker("b", &probe);
    let (c, c_starts) = worker("c", &probe);
    let supervisor = start(config(Strategy::OneForAll), vec![a, b, c]).await;
    let before = probe.events().len();

    probe.worker("b").cast(WorkerMessage::Fail).unwrap();
    settle().await;

    assert_eq!(counts(&[&a_starts, &b_starts, &c_starts]), [2, 2, 2]);
    // b failed (no post_stop); its siblings stop latest first, then all start in order.
    assert_eq!(
        probe.events_after(before),
        ["stop:c", "stop:a", "start:a", "start:b", "start:c"]
    );
    let stats = stats(&supervisor).await;
    assert_eq!(stats.restarts_total, 1);
    assert!(stats.children.iter().all(|child| child.restarts == 1));
    let reason = stats.children[1].last_failure.as_deref().unwrap();
    assert!(reason.contains("bad input"), "{reason}");
    assert_eq!(stats.children[0].last_failure, None);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_child_and_later_ones_in_order() {
    let expected_panics = count_panics() + 1;
    let probe = Probe::default();
    let (a, a_starts) = worker("a", &probe);
    let (b, b_starts) = worker("b", &probe);
    let (c, c_starts) = worker("c", &probe);
    let (d, d_starts) = worker("d", &probe);
    let supervisor = start(config(Strategy::RestForOne), vec![a, b, c, d]).await;
    let before = probe.events().len();

    probe.worker("b").cast(WorkerMessage::Panic).unwrap();
    settle().await;

    assert_eq!(
        counts(&[&a_starts, &b_starts, &c_starts, &d_starts]),
        [1, 2, 2, 2]
    );
    assert_eq!(
        probe.events_after(before),
        ["stop:d", "stop:c", "start:b", "start:c", "start:d"]
    );
    let stats = stats(&supervisor).await;
    assert_eq!(
        stats
            .children
            .iter()
            .map(|child| child.restarts)
            .collect::<Vec<_>>(),
        [0, 1, 1, 1]
    );
    assert_eq!(stats.restarts_total, 1);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_child_that_stops_unasked_is_restarted() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    let (a, a_starts) = worker("a", &probe);
    let supervisor = start(config(Strategy::OneForOne), vec![a]).await;

    probe.worker("a").cast(WorkerMessage::Quit).unwrap();
    settle().await;

    assert_eq!(counts(&[&a_starts]), [2]);
    let stats = stats(&supervisor).await;
    assert_eq!(
        restarts(&stats),
        [("a".to_string(), 1, ChildStatus::Running)]
    );
    let reason = stats.children[0].last_failure.as_deref().unwrap();
    assert!(reason.contains("quit"), "{reason}");
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_child_stopped_deliberately_is_not_restarted_even_by_a_sibling_failure() {
    let expected_panics = count_panics() + 1;
    let probe = Probe::default();
    let (a, a_starts) = worker("a", &probe);
    let (b, b_starts) = worker("b", &probe);
    let supervisor = start(config(Strategy::OneForAll), vec![a, b]).await;

    supervisor
        .cast(SupervisorMessage::StopChild("b".to_string()))
        .unwrap();
    settle().await;
    assert_eq!(counts(&[&a_starts, &b_starts]), [1, 1]);
    assert!(probe.events().contains(&"stop:b".to_string()));
    let stats_after_stop = stats(&supervisor).await;
    assert_eq!(stats_after_stop.restarts_total, 0);
    assert_eq!(stats_after_stop.children[1].status, ChildStatus::Stopped);
    assert_eq!(stats_after_stop.children[1].last_failure, None);

    probe.worker("a").cast(WorkerMessage::Panic).unwrap();
    settle().await;
    assert_eq!(counts(&[&a_starts, &b_starts]), [2, 1]);
    assert_eq!(
        restarts(&stats(&supervisor).await),
        [
            ("a".to_string(), 1, ChildStatus::Running),
            ("b".to_string(), 0, ChildStatus::Stopped),
        ]
    );
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn stopping_the_supervisor_stops_children_in_reverse_start_order() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    let (a, _) = worker("a", &probe);
    let (b, _) = worker("b", &probe);
    let (c, _) = worker("c", &probe);
    let supervisor = start(config(Strategy::OneForOne), vec![a, b, c]).await;
    let before = probe.events().len();

    supervisor.stop_and_wait(None, None).await.unwrap();

    assert_eq!(probe.events_after(before), ["stop:c", "stop:b", "stop:a"]);
    for name in ["a", "b", "c"] {
        assert_eq!(probe.worker(name).get_status(), ActorStatus::Stopped);
    }
    assert_eq!(panics(), expected_panics);
}

/// The gaps between a child's consecutive starts when it fails right after each of its first
/// `failures` starts.
async fn restart_gaps(config: SupervisionConfig, failures: usize) -> Vec<Duration> {
    let probe = Probe::default();
    let failing: Vec<usize> = (1..=failures).collect();
    let (a, starts) = worker_failing("a", &probe, &failing, &[]);
    let supervisor = start(config, vec![a]).await;
    sleep(Duration::from_secs(60)).await;
    assert_eq!(starts.load(Ordering::SeqCst), failures + 1);
    assert_eq!(stats(&supervisor).await.restarts_total, failures as u64);
    let times = probe.start_times("a");
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_per_consecutive_restart_up_to_the_cap() {
    let expected_panics = count_panics();
    let config = SupervisionConfig {
        max_restarts: 10,
        within: Duration::from_secs(60),
        ..config(Strategy::OneForOne)
    };
    let gaps = restart_gaps(config, 7).await;
    let millis: Vec<u128> = gaps.iter().map(Duration::as_millis).collect();
    assert_eq!(millis, [100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn backoff_jitter_is_bounded_and_follows_the_seed() {
    let expected_panics = count_panics();
    let config = SupervisionConfig {
        max_restarts: 10,
        within: Duration::from_secs(60),
        jitter: 0.5,
        jitter_seed: 42,
        ..config(Strategy::OneForOne)
    };
    let gaps = restart_gaps(config.clone(), 6).await;
    let backoff: Backoff = config.backoff();
    let mut jitter = Jitter::new(42);
    for (attempt, gap) in (1..).zip(&gaps) {
        let expected = backoff.delay(attempt, &mut jitter);
        let ceiling = backoff.ceiling(attempt);
        // tokio's timer wheel fires on whole milliseconds: allow the round-up.
        assert!(
            *gap >= expected,
            "attempt {attempt}: {gap:?} < {expected:?}"
        );
        assert!(
            *gap <= expected + Duration::from_millis(1),
            "attempt {attempt}: {gap:?}"
        );
        assert!(*gap > ceiling / 2 && *gap <= ceiling + Duration::from_millis(1));
    }
    // Jitter really varies the delays: not all at their ceiling.
    assert!(
        (1..)
            .zip(&gaps)
            .any(|(n, gap)| *gap + Duration::from_millis(2) < backoff.ceiling(n))
    );
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_child_healthy_for_a_whole_window_starts_its_backoff_over() {
    let expected_panics = count_panics() + 2;
    let probe = Probe::default();
    let (a, starts) = worker_failing("a", &probe, &[1, 2], &[]);
    let supervisor = start(config(Strategy::OneForOne), vec![a]).await;
    settle().await;
    // Two quick failures: 100 ms, then 200 ms. Now healthy for longer than `within`.
    sleep(Duration::from_secs(20)).await;
    probe.worker("a").cast(WorkerMessage::Panic).unwrap();
    let failed_at = Instant::now();
    settle().await;
    probe.worker("a").cast(WorkerMessage::Panic).unwrap();
    settle().await;

    assert_eq!(starts.load(Ordering::SeqCst), 5);
    let times = probe.start_times("a");
    assert_eq!((times[3] - failed_at).as_millis(), 100, "streak reset");
    assert_eq!(stats(&supervisor).await.restarts_total, 4);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_failed_restart_counts_as_a_failure_and_is_retried() {
    let expected_panics = count_panics() + 1;
    let probe = Probe::default();
    let (a, starts) = worker_failing("a", &probe, &[], &[2]);
    let supervisor = start(config(Strategy::OneForOne), vec![a]).await;

    probe.worker("a").cast(WorkerMessage::Panic).unwrap();
    settle().await;

    assert_eq!(starts.load(Ordering::SeqCst), 3);
    let stats = stats(&supervisor).await;
    assert_eq!(stats.restarts_total, 2);
    assert_eq!(
        restarts(&stats),
        [("a".to_string(), 1, ChildStatus::Running)]
    );
    let reason = stats.children[0].last_failure.as_deref().unwrap();
    assert!(reason.contains("restart failed"), "{reason}");
    // The failed attempt came after 100 ms, the next one 200 ms later.
    let times = probe.start_times("a");
    assert_eq!(times.len(), 2);
    assert_eq!((times[1] - times[0]).as_millis(), 300);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn exceeding_the_restart_intensity_escalates_and_the_parent_restarts_the_subtree() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    // `w` fails right after each of its first three starts: with at most two restarts in the
    // window, the third failure makes `inner` give up.
    let (w, w_starts) = worker_failing("w", &probe, &[1, 2, 3], &[]);
    let (sibling, sibling_starts) = worker("sibling", &probe);
    let inner_config = SupervisionConfig {
        max_restarts: 2,
        ..config(Strategy::OneForOne)
    };
    let inner = Supervisor::spec("inner", inner_config, vec![sibling, w]);
    let (other, other_starts) = worker("other", &probe);
    let outer = start(config(Strategy::OneForOne), vec![other, inner]).await;

    settle().await;

    // inner: start 1, restart, restart, give up (stopping `sibling`); the outer supervisor
    // restarts inner, whose fresh `w` (start 4) runs.
    assert_eq!(w_starts.load(Ordering::SeqCst), 4);
    assert_eq!(sibling_starts.load(Ordering::SeqCst), 2);
    assert_eq!(other_starts.load(Ordering::SeqCst), 1);
    let events = probe.events();
    let sibling_stop = events
        .iter()
        .position(|event| event == "stop:sibling")
        .unwrap();
    let sibling_restart = events
        .iter()
        .rposition(|event| event == "start:sibling")
        .unwrap();
    assert!(
        sibling_stop < sibling_restart,
        "old subtree gone before the new one starts"
    );

    let stats = stats(&outer).await;
    assert_eq!(stats.restarts_total, 1);
    assert_eq!(
        restarts(&stats),
        [
            ("other".to_string(), 0, ChildStatus::Running),
            ("inner".to_string(), 1, ChildStatus::Running),
        ]
    );
    assert_eq!(stats.children[1].kind, "supervisor");
    let reason = stats.children[1].last_failure.as_deref().unwrap();
    assert!(reason.contains("gave up"), "{reason}");
    assert_eq!(outer.get_status(), ActorStatus::Running);
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_whose_child_cannot_start_does_not_start() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    let (a, _) = worker("a", &probe);
    let (b, _) = worker_failing("b", &probe, &[], &[1]);
    let arguments = SupervisorArgs::new("test", config(Strategy::OneForOne), vec![a, b]);
    let error = Supervisor::spawn(None, Supervisor, arguments)
        .await
        .expect_err("b cannot start");
    assert!(error.to_string().contains("test/b"), "{error}");
    assert_eq!(probe.events(), ["start:a", "stop:a"]);

    let invalid = SupervisionConfig {
        jitter: 1.5,
        ..SupervisionConfig::default()
    };
    let arguments = SupervisorArgs::new("test", invalid, Vec::new());
    let error = Supervisor::spawn(None, Supervisor, arguments)
        .await
        .expect_err("invalid config");
    assert!(error.to_string().contains("jitter"), "{error}");
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn the_guardian_stops_the_node_when_it_gives_up_and_stops_cleanly_on_request() {
    let expected_panics = count_panics();
    let probe = Probe::default();
    let (a, _) = worker("a", &probe);
    let (b, _) = worker_failing("b", &probe, &[1, 2, 3], &[]);
    let config = SupervisionConfig {
        max_restarts: 1,
        ..config(Strategy::OneForOne)
    };
    let guardian = Guardian::start(config.clone(), vec![a, b]).await.unwrap();
    assert_eq!(guardian.actor().get_name().as_deref(), Some(GUARDIAN_NAME));
    let error = guardian.wait().await.expect_err("the guardian gives up");
    assert_eq!(
        error,
        Error::RestartIntensityExceeded {
            supervisor: GUARDIAN_NAME.to_string(),
            max_restarts: 1,
            within: Duration::from_secs(10),
        }
    );
    assert_eq!(probe.worker("a").get_status(), ActorStatus::Stopped);

    // The name is free again; a healthy guardian stops on request, children latest first.
    let probe = Probe::default();
    let (a, _) = worker("a", &probe);
    let (c, _) = worker("c", &probe);
    let guardian = Guardian::start(config, vec![a, c]).await.unwrap();
    let stats = guardian.stats().await.unwrap();
    assert_eq!(stats.children[1].path, "guardian/c");
    guardian.stop().await.unwrap();
    assert_eq!(probe.events(), ["start:a", "start:c", "stop:c", "stop:a"]);
    assert_eq!(panics(), expected_panics);
}

/// A child that records progress for each piece of work, and can be made to hang.
struct Busy {
    progress: tradefloor_actors::Progress,
    starts: Arc<AtomicUsize>,
}

enum BusyMessage {
    Work,
    Hang,
}

impl ractor::Message for BusyMessage {}

impl Actor for Busy {
    type Msg = BusyMessage;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<BusyMessage>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<BusyMessage>,
        message: BusyMessage,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BusyMessage::Work => self.progress.record(),
            BusyMessage::Hang => sleep(Duration::from_secs(3600)).await,
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_watched_child_that_stops_making_progress_is_killed_and_restarted() {
    let expected_panics = count_panics();
    let starts = Arc::new(AtomicUsize::new(0));
    let current: Arc<Mutex<Option<ActorRef<BusyMessage>>>> = Arc::default();
    let spec = {
        let starts = Arc::clone(&starts);
        let current = Arc::clone(&current);
        ChildSpec::new(
            "busy",
            "worker",
            move |context: tradefloor_actors::ChildContext| {
                let handler = Busy {
                    progress: context.progress,
                    starts: Arc::clone(&starts),
                };
                let current = Arc::clone(&current);
                async move {
                    let (actor, _join) =
                        Busy::spawn_linked(None, handler, (), context.supervisor).await?;
                    *current.lock().unwrap() = Some(actor.clone());
                    Ok(actor.get_cell())
                }
            },
        )
        .with_stall_timeout(Duration::from_millis(500))
    };
    let supervisor = start(config(Strategy::OneForOne), vec![spec]).await;
    let busy = || current.lock().unwrap().clone().unwrap();

    // Working steadily, more often than the stall timeout: left alone.
    for _ in 0..10 {
        busy().cast(BusyMessage::Work).unwrap();
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1);

    // Hung at 2.0 s; the check at 2.5 s sees no progress since 2.0 s, kills it, and the
    // restart follows 100 ms later.
    busy().cast(BusyMessage::Hang).unwrap();
    sleep(Duration::from_millis(900)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    // The new incarnation is watched too, and left alone while it works.
    for _ in 0..10 {
        busy().cast(BusyMessage::Work).unwrap();
        sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    let stats = stats(&supervisor).await;
    assert_eq!(
        restarts(&stats),
        [("busy".to_string(), 1, ChildStatus::Running)]
    );
    let reason = stats.children[0].last_failure.as_deref().unwrap();
    assert!(reason.contains("stalled"), "{reason}");
    assert_eq!(panics(), expected_panics);
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_given_a_registry_shows_itself_its_children_and_their_restarts() {
    let expected_panics = count_panics() + 1;
    let probe = Probe::default();
    let (a, _) = worker("a", &probe);
    let (b, _) = worker("b", &probe);
    let nested = Supervisor::spec("inner", config(Strategy::OneForOne), vec![b]);
    let registry = tradefloor_actors::Registry::default();
    let arguments = SupervisorArgs::new("/root", config(Strategy::OneForOne), vec![a, nested])
        .with_registry(registry.clone());
    let (supervisor, join) = Supervisor::spawn(None, Supervisor, arguments)
        .await
        .expect("supervisor starts");

    probe.worker("a").cast(WorkerMessage::Panic).unwrap();
    settle().await;

    let tree = registry
        .snapshot("/root", None)
        .expect("the root is registered");
    assert_eq!(tree.kind.as_deref(), Some("supervisor"));
    let names: Vec<(&str, Option<&str>, Option<u32>)> = tree
        .children
        .iter()
        .map(|child| (child.path.as_str(), child.kind.as_deref(), child.restarts))
        .collect();
    assert_eq!(
        names,
        [
            ("/root/a", Some("worker"), Some(1)),
            ("/root/inner", Some("supervisor"), Some(0)),
        ]
    );
    let inner = &tree.children[1];
    assert_eq!(inner.children[0].path, "/root/inner/b");
    assert_eq!(
        inner.children[0].status,
        Some(tradefloor_actors::ActorStatus::Running)
    );
    assert_eq!(panics(), expected_panics);

    supervisor.stop(None);
    join.await.unwrap();
    assert!(
        registry.snapshot("/root", None).is_none(),
        "a stopped supervisor leaves the tree"
    );
}
