//! The live actor registry of a node and the actor-tree snapshot built from it.
//!
//! Each actor registers an [`ActorInfo`] under its path (`/guardian/regions/account/shard-17`)
//! when it starts and deregisters when it stops (by dropping its [`Registration`]). The info
//! is shared, not copied: the actor updates its status and restart count in place and the
//! registry reads its mailbox and breaker through their live handles, so a snapshot is always
//! current without any actor sending reports.
//!
//! [`Registry::snapshot`] turns the flat paths into the nested tree that
//! `GET /v1/actors?depth=` serves and `tradefloor ctl tree` prints. Entities are not
//! registered one by one (a node holds a million): their shard reports how many it holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::Serialize;

use crate::Error;
use crate::runtime::breaker::{BreakerSnapshot, CircuitBreaker};
use crate::runtime::dead_letters::{DeadLetters, DeadLettersConfig};
use crate::runtime::mailbox::{MailboxStats, MailboxStatsHandle};

/// Where an actor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ActorStatus {
    /// Registered, not yet processing messages (recovering from its journal, say).
    Starting = 0,
    /// Processing messages.
    Running = 1,
    /// Failed and waiting for its supervisor to start it again (backoff).
    Restarting = 2,
    /// Finishing its current message before stopping.
    Stopping = 3,
    /// Stopped normally.
    Stopped = 4,
    /// Failed and not restarted (its supervisor escalated or gave up).
    Failed = 5,
}

impl ActorStatus {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Restarting,
            3 => Self::Stopping,
            4 => Self::Stopped,
            5 => Self::Failed,
            _ => unreachable!("only ActorStatus values are stored"),
        }
    }
}

/// Stored in place of an entity count by actors that hold no entities.
const ENTITY_COUNT_NONE: u64 = u64::MAX;

/// What the registry knows about one live actor; the actor keeps an `Arc` and updates it.
#[derive(Debug)]
pub struct ActorInfo {
    path: String,
    kind: String,
    status: AtomicU8,
    restarts: AtomicU32,
    entity_count: AtomicU64,
    mailbox: Mutex<Option<MailboxStatsHandle>>,
    breaker: Mutex<Option<CircuitBreaker>>,
}

impl ActorInfo {
    /// An actor of `kind` (such as `"shard"` or `"account"`) at `path`, status `Starting`.
    ///
    /// # Panics
    ///
    /// If `path` is not valid (see [`is_valid_path`]): paths are built by code, so a bad
    /// one is a bug.
    pub fn new(path: impl Into<String>, kind: impl Into<String>) -> Self {
        let path = path.into();
        assert!(is_valid_path(&path), "invalid actor path {path:?}");
        Self {
            path,
            kind: kind.into(),
            status: AtomicU8::new(ActorStatus::Starting as u8),
            restarts: AtomicU32::new(0),
            entity_count: AtomicU64::new(ENTITY_COUNT_NONE),
            mailbox: Mutex::new(None),
            breaker: Mutex::new(None),
        }
    }

    /// Shows this mailbox's stats in the tree.
    pub fn with_mailbox(self, mailbox: MailboxStatsHandle) -> Self {
        self.set_mailbox(mailbox);
        self
    }

    /// Shows this breaker's state in the tree.
    pub fn with_breaker(self, breaker: CircuitBreaker) -> Self {
        self.set_breaker(breaker);
        self
    }

    /// The actor's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The actor's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Where the actor is in its life.
    pub fn status(&self) -> ActorStatus {
        ActorStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    /// Records where the actor is in its life.
    pub fn set_status(&self, status: ActorStatus) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// How many times the actor was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Counts a restart; returns the new count.
    pub fn record_restart(&self) -> u32 {
        self.restarts
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// How many entities the actor holds, if it holds entities (a shard).
    pub fn entity_count(&self) -> Option<u64> {
        match self.entity_count.load(Ordering::Relaxed) {
            ENTITY_COUNT_NONE => None,
            count => Some(count),
        }
    }

    /// Records how many entities the actor holds (a shard, after activating or passivating).
    pub fn set_entity_count(&self, count: u64) {
        assert!(count != ENTITY_COUNT_NONE);
        self.entity_count.store(count, Ordering::Relaxed);
    }

    /// Shows this mailbox's stats in the tree (a restarted actor may get a new mailbox).
    pub fn set_mailbox(&self, mailbox: MailboxStatsHandle) {
        *lock(&self.mailbox) = Some(mailbox);
    }

    /// Shows this breaker's state in the tree.
    pub fn set_breaker(&self, breaker: CircuitBreaker) {
        *lock(&self.breaker) = Some(breaker);
    }

    /// The mailbox's stats now, if a mailbox was attached.
    pub fn mailbox_stats(&self) -> Option<MailboxStats> {
        lock(&self.mailbox).as_ref().map(MailboxStatsHandle::stats)
    }

    /// The breaker's state now, if a breaker was attached.
    pub fn breaker_state(&self) -> Option<BreakerSnapshot> {
        lock(&self.breaker).as_ref().map(CircuitBreaker::state)
    }
}

/// Whether `path` can name an actor: `/` followed by one or more `/`-separated segments,
/// none empty, `.` or `..`, and no whitespace or control characters.
pub fn is_valid_path(path: &str) -> bool {
    let Some(relative) = path.strip_prefix('/') else {
        return false;
    };
    relative.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
    })
}

/// One node of the actor tree: a registered actor, or a plain node for a path that only has
/// registered descendants (shown so the tree has no gaps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActorTree {
    /// The node's path (`/` for the root of the node).
    pub path: String,
    /// The actor's kind; absent for a plain node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Where the actor is in its life; absent for a plain node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ActorStatus>,
    /// How many times the actor was restarted; absent for a plain node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// Its mailbox, if it has one attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxStats>,
    /// Its circuit breaker, if it has one attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSnapshot>,
    /// How many entities it holds, if it is a shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_count: Option<u64>,
    /// Registered actors below this node that the depth limit left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub descendants_hidden: usize,
    /// The children, sorted by path.
    pub children: Vec<ActorTree>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl ActorTree {
    fn new(path: String, info: Option<&ActorInfo>) -> Self {
        Self {
            path,
            kind: info.map(|info| info.kind().to_string()),
            status: info.map(ActorInfo::status),
            restarts: info.map(ActorInfo::restarts),
            mailbox: info.and_then(ActorInfo::mailbox_stats),
            breaker: info.and_then(ActorInfo::breaker_state),
            entity_count: info.and_then(ActorInfo::entity_count),
            descendants_hidden: 0,
            children: Vec::new(),
        }
    }

    /// The number of nodes in this tree, itself included.
    pub fn node_count(&self) -> usize {
        1 + self
            .children
            .iter()
            .map(ActorTree::node_count)
            .sum::<usize>()
    }
}

#[derive(Debug)]
struct Inner {
    /// Ordered by path, so the actors under a path are one contiguous range.
    actors: RwLock<BTreeMap<String, Arc<ActorInfo>>>,
    dead_letters: DeadLetters,
}

/// The node's live actors and dead letters; clones share one registry.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(DeadLettersConfig::default())
    }
}

impl Registry {
    /// An empty registry whose dead letters keep `dead_letters.recent_max` letters.
    pub fn new(dead_letters: DeadLettersConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                actors: RwLock::new(BTreeMap::new()),
                dead_letters: DeadLetters::new(dead_letters),
            }),
        }
    }

    /// The node's dead letters.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }

    /// Registers `info` under its path until the returned [`Registration`] is dropped.
    ///
    /// Errors: [`Error::PathTaken`] if another actor is registered at that path.
    pub fn register(&self, info: Arc<ActorInfo>) -> Result<Registration, Error> {
        let mut actors = self.write();
        if actors.contains_key(info.path()) {
            return Err(Error::PathTaken {
                path: info.path().to_string(),
            });
        }
        actors.insert(info.path().to_string(), Arc::clone(&info));
        drop(actors);
        Ok(Registration {
            registry: self.clone(),
            info,
        })
    }

    /// The actor registered at `path`.
    pub fn get(&self, path: &str) -> Option<Arc<ActorInfo>> {
        self.read().get(path).cloned()
    }

    /// How many actors are registered.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The tree under `root` (`/` for the whole node), `depth` levels deep (`Some(0)`: the
    /// root alone, `Some(1)`: with its children, `None`: everything).
    ///
    /// `None` if `root` is malformed, or is neither `/` nor a registered actor nor above one.
    pub fn snapshot(&self, root: &str, depth: Option<usize>) -> Option<ActorTree> {
        let root = match root.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        if root != "/" && !is_valid_path(root) {
            return None;
        }
        let prefix = if root == "/" {
            "/".to_string()
        } else {
            format!("{root}/")
        };
        // Copy the entries out so no live stats are read while the registry is locked.
        let (root_info, below) = {
            let actors = self.read();
            let below: Vec<(String, Arc<ActorInfo>)> = actors
                .range(prefix.clone()..)
                .take_while(|(path, _)| path.starts_with(&prefix))
                .map(|(path, info)| (path.clone(), Arc::clone(info)))
                .collect();
            (actors.get(root).cloned(), below)
        };
        if root != "/" && root_info.is_none() && below.is_empty() {
            return None;
        }
        let mut building = Building {
            info: root_info,
            ..Building::default()
        };
        for (path, info) in below {
            building.insert(&path[prefix.len()..], info, depth);
        }
        Some(building.finish(root.to_string()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ActorInfo>>> {
        // Sections under this lock are single map operations that leave it valid.
        self.inner
            .actors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<ActorInfo>>> {
        self.inner
            .actors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps an actor registered; dropping it deregisters the actor.
#[derive(Debug)]
#[must_use = "dropping the registration deregisters the actor at once"]
pub struct Registration {
    registry: Registry,
    info: Arc<ActorInfo>,
}

impl Registration {
    /// The registered info, to update status, restarts and counts.
    pub fn info(&self) -> &Arc<ActorInfo> {
        &self.info
    }

    /// Deregisters the actor now (the same as dropping the registration).
    pub fn deregister(self) {}
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut actors = self.registry.write();
        // Remove only our own entry: the path holds nothing else while we are registered,
        // but checking keeps a future change to `register` from removing another actor.
        if actors
            .get(self.info.path())
            .is_some_and(|registered| Arc::ptr_eq(registered, &self.info))
        {
            actors.remove(self.info.path());
        }
    }
}

/// A tree under construction, keyed by path segment (siblings share their parent's path,
/// so sorting segments sorts paths).
#[derive(Default)]
struct Building {
    info: Option<Arc<ActorInfo>>,
    children: BTreeMap<String, Building>,
    descendants_hidden: usize,
}

impl Building {
    fn insert(&mut self, relative: &str, info: Arc<ActorInfo>, depth: Option<usize>) {
        let segments: Vec<&str> = relative.split('/').collect();
        let shown = depth.map_or(segments.len(), |depth| depth.min(segments.len()));
        let mut node = self;
        for segment in &segments[..shown] {
            node = node.children.entry((*segment).to_string()).or_default();
        }
        if shown == segments.len() {
            node.info = Some(info);
        } else {
            node.descendants_hidden += 1;
        }
    }

    fn finish(self, path: String) -> ActorTree {
        let mut tree = ActorTree::new(path, self.info.as_deref());
        tree.descendants_hidden = self.descendants_hidden;
        tree.children = self
            .children
            .into_iter()
            .map(|(segment, child)| {
                let child_path = if tree.path == "/" {
                    format!("/{segment}")
                } else {
                    format!("{}/{segment}", tree.path)
                };
                child.finish(child_path)
            })
            .collect();
        tree
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each section is one assignment or read of an `Option`: valid even after a panic.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::breaker::{BreakerConfig, BreakerState};
    use crate::runtime::mailbox::{Lane, MailboxConfig, mailbox};
    use std::time::Duration;

    fn register(registry: &Registry, path: &str, kind: &str) -> Registration {
        registry
            .register(Arc::new(ActorInfo::new(path, kind)))
            .unwrap()
    }

    /// Every path of the tree, depth first.
    fn paths(tree: &ActorTree) -> Vec<String> {
        let mut paths = vec![tree.path.clone()];
        for child in &tree.children {
            paths.extend(self::paths(child));
        }
        paths
    }

    #[test]
    fn builds_a_nested_tree_from_flat_paths() {
        let registry = Registry::default();
        let _registrations = [
            register(&registry, "/guardian/regions/account/shard-2", "shard"),
            register(&registry, "/guardian", "guardian"),
            register(&registry, "/guardian/regions/account/shard-17", "shard"),
            register(&registry, "/guardian/http", "http"),
            register(&registry, "/guardian/regions/account", "region"),
            register(&registry, "/guardian/regions/account-archive", "region"),
        ];
        let tree = registry.snapshot("/", None).unwrap();
        assert_eq!(
            paths(&tree),
            [
                "/",
                "/guardian",
                "/guardian/http",
                "/guardian/regions",
                "/guardian/regions/account",
                "/guardian/regions/account/shard-17",
                "/guardian/regions/account/shard-2",
                "/guardian/regions/account-archive",
            ]
        );
        assert_eq!(tree.node_count(), 8);
        // The root and the intermediate `/guardian/regions` are plain nodes.
        assert_eq!(tree.kind, None);
        let regions = &tree.children[0].children[1];
        assert_eq!(regions.path, "/guardian/regions");
        assert_eq!((regions.kind.as_deref(), regions.status), (None, None));
        let account = &regions.children[0];
        assert_eq!(account.kind.as_deref(), Some("region"));
        assert_eq!(account.status, Some(ActorStatus::Starting));
        assert_eq!(account.restarts, Some(0));
    }

    #[test]
    fn a_subtree_is_served_from_any_root() {
        let registry = Registry::default();
        let _registrations = [
            register(&registry, "/guardian/regions/account/shard-1", "shard"),
            register(&registry, "/guardian/regions/account/shard-1/x", "entity"),
            register(&registry, "/guardian/regions/accounts", "region"),
        ];
        let tree = registry
            .snapshot("/guardian/regions/account/", None)
            .unwrap();
        assert_eq!(
            paths(&tree),
            [
                "/guardian/regions/account",
                "/guardian/regions/account/shard-1",
                "/guardian/regions/account/shard-1/x",
            ]
        );
        let shard = registry.snapshot("/guardian/regions/account/shard-1", Some(0));
        assert_eq!(shard.unwrap().kind.as_deref(), Some("shard"));
        assert_eq!(registry.snapshot("/nowhere", None), None);
        assert_eq!(registry.snapshot("/guardian/regions/acc", None), None);
        assert_eq!(registry.snapshot("no-slash", None), None);
        let empty = Registry::default().snapshot("/", None).unwrap();
        assert!(empty.children.is_empty());
    }

    #[test]
    fn the_depth_limit_cuts_the_tree_and_counts_what_it_hides() {
        let registry = Registry::default();
        let _registrations = [
            register(&registry, "/guardian", "guardian"),
            register(&registry, "/guardian/regions/account", "region"),
            register(&registry, "/guardian/regions/account/shard-1", "shard"),
            register(&registry, "/guardian/regions/account/shard-2", "shard"),
            register(&registry, "/guardian/http", "http"),
        ];
        let root_only = registry.snapshot("/", Some(0)).unwrap();
        assert!(root_only.children.is_empty());
        assert_eq!(root_only.descendants_hidden, 5);

        let two_levels = registry.snapshot("/", Some(2)).unwrap();
        assert_eq!(
            paths(&two_levels),
            ["/", "/guardian", "/guardian/http", "/guardian/regions"]
        );
        let regions = &two_levels.children[0].children[1];
        assert_eq!(regions.descendants_hidden, 3);
        assert_eq!(two_levels.children[0].descendants_hidden, 0);

        let from_guardian = registry.snapshot("/guardian", Some(1)).unwrap();
        assert_eq!(
            paths(&from_guardian),
            ["/guardian", "/guardian/http", "/guardian/regions"]
        );
        assert_eq!(
            registry.snapshot("/", Some(10)),
            registry.snapshot("/", None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_shows_live_mailbox_and_breaker_state() {
        let registry = Registry::default();
        let (sender, _receiver) = mailbox::<u32>(
            "/guardian/journal",
            MailboxConfig {
                capacity: 2,
                priority_capacity: 1,
            },
        );
        let breaker = CircuitBreaker::new(
            "journal",
            BreakerConfig {
                failure_threshold: 1,
                ..BreakerConfig::default()
            },
        );
        let info = ActorInfo::new("/guardian/journal", "journal")
            .with_mailbox(sender.stats_handle())
            .with_breaker(breaker.clone());
        let registration = registry.register(Arc::new(info)).unwrap();
        registration.info().set_status(ActorStatus::Running);

        let journal =
            |registry: &Registry| registry.snapshot("/guardian/journal", Some(0)).unwrap();
        let before = journal(&registry);
        assert_eq!(before.status, Some(ActorStatus::Running));
        assert_eq!(before.mailbox.as_ref().unwrap().len, 0);
        assert_eq!(before.breaker.as_ref().unwrap().state, BreakerState::Closed);

        sender.try_send(1, Lane::Normal).unwrap();
        sender.try_send(2, Lane::Normal).unwrap();
        sender.try_send(3, Lane::Normal).unwrap_err();
        let _ = breaker.call(async { Err::<(), _>("down") }).await;
        registration.info().set_status(ActorStatus::Restarting);
        registration.info().record_restart();

        let after = journal(&registry);
        let mailbox = after.mailbox.unwrap();
        assert_eq!((mailbox.len, mailbox.capacity, mailbox.rejected), (2, 2, 1));
        let breaker_state = after.breaker.unwrap();
        assert_eq!(breaker_state.state, BreakerState::Open);
        assert_eq!(after.status, Some(ActorStatus::Restarting));
        assert_eq!(after.restarts, Some(1));
        tokio::time::advance(Duration::from_millis(400)).await;
        let later = journal(&registry).breaker.unwrap();
        assert_eq!(later.retry_after_ms, Some(600));
    }

    #[test]
    fn shards_report_their_entity_count() {
        let registry = Registry::default();
        let shard = register(&registry, "/guardian/regions/account/shard-17", "shard");
        let http = register(&registry, "/guardian/http", "http");
        shard.info().set_entity_count(1_000_000);
        let tree = registry.snapshot("/", None).unwrap();
        let json = serde_json::to_value(&tree).unwrap();
        let shard_json = &json["children"][0]["children"][1]["children"][0]["children"][0];
        assert_eq!(shard_json["path"], "/guardian/regions/account/shard-17");
        assert_eq!(shard_json["entity_count"], 1_000_000);
        assert_eq!(shard_json["status"], "starting");
        let http_json = &json["children"][0]["children"][0];
        assert_eq!(http_json["path"], "/guardian/http");
        assert!(http_json.get("entity_count").is_none());
        assert_eq!(http.info().entity_count(), None);
    }

    #[test]
    fn dropping_the_registration_deregisters() {
        let registry = Registry::default();
        let guardian = register(&registry, "/guardian", "guardian");
        let http = register(&registry, "/guardian/http", "http");
        assert_eq!(registry.len(), 2);
        drop(http);
        assert_eq!(registry.len(), 1);
        assert!(registry.get("/guardian/http").is_none());
        assert_eq!(
            paths(&registry.snapshot("/", None).unwrap()),
            ["/", "/guardian"]
        );
        guardian.deregister();
        assert!(registry.is_empty());
        assert_eq!(registry.snapshot("/guardian", None), None);
    }

    #[test]
    fn a_taken_path_is_refused_until_it_is_free() {
        let registry = Registry::default();
        let first = register(&registry, "/guardian/http", "http");
        let second = Arc::new(ActorInfo::new("/guardian/http", "http"));
        let refused = registry.register(Arc::clone(&second)).unwrap_err();
        assert_eq!(
            refused,
            Error::PathTaken {
                path: "/guardian/http".to_string()
            }
        );
        assert!(Arc::ptr_eq(
            &registry.get("/guardian/http").unwrap(),
            first.info()
        ));
        drop(first);
        let _second = registry.register(second).unwrap();
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn statuses_round_trip_through_the_atomic() {
        let info = ActorInfo::new("/a", "test");
        for status in [
            ActorStatus::Starting,
            ActorStatus::Running,
            ActorStatus::Restarting,
            ActorStatus::Stopping,
            ActorStatus::Stopped,
            ActorStatus::Failed,
        ] {
            info.set_status(status);
            assert_eq!(info.status(), status);
        }
        assert_eq!(info.record_restart(), 1);
        assert_eq!(info.record_restart(), 2);
    }

    #[test]
    fn paths_are_validated() {
        for valid in ["/a", "/guardian/regions/account/shard-17", "/a/b.c/d_e"] {
            assert!(is_valid_path(valid), "{valid}");
        }
        for invalid in [
            "", "/", "a", "/a/", "//a", "/a//b", "/a/../b", "/a/./b", "/a b",
        ] {
            assert!(!is_valid_path(invalid), "{invalid}");
        }
    }

    #[test]
    #[should_panic(expected = "invalid actor path")]
    fn an_invalid_path_is_a_bug() {
        let _ = ActorInfo::new("guardian", "guardian");
    }

    #[test]
    fn the_registry_holds_the_dead_letters() {
        let registry = Registry::new(DeadLettersConfig { recent_max: 1 });
        let clone = registry.clone();
        clone
            .dead_letters()
            .record(crate::runtime::dead_letters::DeadLetter::of::<u32>(
                "/a", "stopped",
            ));
        assert_eq!(registry.dead_letters().count(), 1);
        assert_eq!(registry.dead_letters().recent_max(), 1);
    }
}
