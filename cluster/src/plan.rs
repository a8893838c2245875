//! The shard planner: given the shard table and the membership, what the coordinator
//! changes next (DESIGN §4). Pure: no I/O, no clock, the same answer for the same input.
//!
//! Entities hash to a fixed number of shards; each shard has one row in the shard table
//! (see [`crate::allocation`]) naming its owner. The planner decides, for one round:
//!
//! - shards that have no row yet, or whose owner is gone, go to a live node **at once**
//!   (nobody serves them, so they are not rate-limited), least-loaded first;
//! - hand-offs whose target went away are cancelled (still draining) or redone (already
//!   released by the old owner, so unserved);
//! - shards of leaving nodes, then shards of over-loaded nodes, move gracefully (drain on
//!   the old owner, start on the new one), at most `moves_max` hand-offs in flight, and
//!   never more moves than balancing needs: one round plans every move the budget allows
//!   toward loads that differ by at most one.
//!
//! Load is counted where shards are heading: the owner of a settled shard, the target of a
//! hand-off. Ties are broken by node id and shards are taken in shard order, so every
//! coordinator computes the same plan from the same table.

use std::collections::{BTreeMap, BTreeSet};

/// Where a shard is in a hand-off.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HandOff {
    /// Settled: the owner serves it.
    Active,
    /// The owner is stopping it (stop, flush) so that `target` can start it.
    Draining {
        /// The node it is moving to.
        target: String,
    },
    /// The owner has stopped it; nobody serves it until the move completes on `target`.
    Released {
        /// The node it is moving to.
        target: String,
    },
}

impl HandOff {
    /// The stored name of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            HandOff::Active => "active",
            HandOff::Draining { .. } => "draining",
            HandOff::Released { .. } => "released",
        }
    }

    /// The node the shard is moving to, if it is moving.
    pub fn target(&self) -> Option<&str> {
        match self {
            HandOff::Active => None,
            HandOff::Draining { target } | HandOff::Released { target } => Some(target),
        }
    }
}

/// One row of the shard table: who owns a shard, under which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The shard, in `0..shard_count`.
    pub shard: u32,
    /// The node that owns it (serves it unless it is [`HandOff::Released`]).
    pub owner: String,
    /// The ownership's fencing epoch: 1 for the first owner, one more at every change of
    /// owner. The owner claims the shard's journal fence with it.
    pub epoch: u64,
    /// Whether it is moving.
    pub handoff: HandOff,
}

/// One shard changing hands, named by the row it applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Move {
    /// The shard.
    pub shard: u32,
    /// The row's epoch the change is conditional on.
    pub epoch: u64,
    /// The owner now.
    pub from: String,
    /// The owner after the change.
    pub to: String,
}

/// What to change in one round, in the order to apply it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Shards with no row yet: create them on these owners (epoch 1).
    pub initial: Vec<(u32, String)>,
    /// Shards nobody serves (owner gone, or released toward a target that is gone): give
    /// them to a live node now, without a drain (the new epoch fences the old owner).
    pub reassign: Vec<Move>,
    /// Hand-offs still draining toward a target that is no longer up: back to active on
    /// the owner (`to` is the abandoned target).
    pub cancel: Vec<Move>,
    /// Hand-offs the old owner has released toward a live target: finish them.
    pub complete: Vec<Move>,
    /// Graceful hand-offs to begin (drain on `from`, then start on `to`).
    pub moves: Vec<Move>,
}

impl Plan {
    /// Whether the round changes nothing.
    pub fn is_empty(&self) -> bool {
        self.initial.is_empty()
            && self.reassign.is_empty()
            && self.cancel.is_empty()
            && self.complete.is_empty()
            && self.moves.is_empty()
    }
}

/// Plans one round for `shard_count` shards whose rows are `assignments`.
///
/// `up` are the nodes that may own shards; `leaving` nodes are alive but must be drained
/// (a node in both lists counts as leaving); the owner of any other node's shards is gone.
/// At most `moves_max` hand-offs are in flight after the round, counting those already
/// under way (0 pauses graceful moves; unserved shards are placed regardless). With no node
/// up, the plan is empty.
///
/// # Panics
///
/// If a shard has two rows or a row's shard is not below `shard_count`: the table's
/// primary key and the fixed shard count rule both out.
pub fn plan(
    assignments: &[Assignment],
    shard_count: u32,
    up: &[String],
    leaving: &[String],
    moves_max: usize,
) -> Plan {
    let leaving: BTreeSet<&str> = leaving.iter().map(String::as_str).collect();
    let up: BTreeSet<&str> = up
        .iter()
        .map(String::as_str)
        .filter(|node| !leaving.contains(node))
        .collect();
    if up.is_empty() {
        return Plan::default();
    }
    let mut round = Round {
        loads: up.iter().map(|&node| (node, 0)).collect(),
        up,
        leaving,
        plan: Plan::default(),
        movable: BTreeMap::new(),
        in_flight: 0,
        unserved: Vec::new(),
        to_drain: Vec::new(),
    };
    let mut rows = assignments.iter().collect::<Vec<_>>();
    rows.sort_by_key(|row| row.shard);
    for pair in rows.windows(2) {
        assert_ne!(
            pair[0].shard, pair[1].shard,
            "shard {} has two rows",
            pair[0].shard
        );
    }
    let mut next_missing = 0;
    for row in rows {
        assert!(
            row.shard < shard_count,
            "shard {} >= {shard_count}",
            row.shard
        );
        round
            .unserved
            .extend((next_missing..row.shard).map(Unserved::Missing));
        next_missing = row.shard + 1;
        round.sort(row);
    }
    round
        .unserved
        .extend((next_missing..shard_count).map(Unserved::Missing));
    round.place_unserved();
    let budget = moves_max.saturating_sub(round.in_flight);
    let budget = round.drain_leaving(budget);
    round.rebalance(shard_count, budget);
    round.plan
}

/// Whether every one of `shard_count` shards is settled (active) on a node of `up`, and
/// the loads of the `up` nodes differ by at most one: what [`plan`] converges to.
pub fn is_balanced(assignments: &[Assignment], shard_count: u32, up: &[String]) -> bool {
    let mut loads: BTreeMap<&str, u32> = up.iter().map(|node| (node.as_str(), 0)).collect();
    let mut shards = BTreeSet::new();
    for row in assignments {
        match loads.get_mut(row.owner.as_str()) {
            Some(load) if row.handoff == HandOff::Active && row.shard < shard_count => {
                *load += 1;
                shards.insert(row.shard);
            }
            _ => return false,
        }
    }
    let fewest = loads.values().min().copied().unwrap_or(0);
    let most = loads.values().max().copied().unwrap_or(0);
    shards.len() == shard_count as usize && most - fewest <= 1
}

/// A shard nobody serves, to place on the least-loaded node.
enum Unserved<'a> {
    /// No row yet.
    Missing(u32),
    /// A row whose owner is gone, or released toward a target that is gone.
    Orphan(&'a Assignment),
}

/// The hand-off of `row` to `to`, at the row's epoch.
fn moving(row: &Assignment, to: &str) -> Move {
    Move {
        shard: row.shard,
        epoch: row.epoch,
        from: row.owner.clone(),
        to: to.to_owned(),
    }
}

/// A plan being built, with the loads it leads to.
struct Round<'a> {
    /// The nodes that may own shards (none of them leaving).
    up: BTreeSet<&'a str>,
    /// Nodes alive but to be drained.
    leaving: BTreeSet<&'a str>,
    plan: Plan,
    /// Shards heading to each up node, after what is planned so far.
    loads: BTreeMap<&'a str, usize>,
    /// Settled shards of each up node, in shard order: what rebalancing may move.
    movable: BTreeMap<&'a str, Vec<&'a Assignment>>,
    /// Hand-offs under way before this round.
    in_flight: usize,
    /// Shards to place on the least loaded, in shard order.
    unserved: Vec<Unserved<'a>>,
    /// Settled shards of leaving nodes, in shard order.
    to_drain: Vec<&'a Assignment>,
}

impl<'a> Round<'a> {
    /// Decides what becomes of `row` unless it needs a node chosen by load: placed with
    /// the unserved or the shards to drain, or counted where it is heading.
    fn sort(&mut self, row: &'a Assignment) {
        let owner_up = self.up.contains(row.owner.as_str());
        let owner_alive = owner_up || self.leaving.contains(row.owner.as_str());
        let target_up = row
            .handoff
            .target()
            .filter(|target| self.up.contains(target));
        match (&row.handoff, target_up) {
            // Nobody serves it any more: its hand-off target, if still up, was already
            // chosen for balance; otherwise whoever is least loaded.
            _ if !owner_alive => match target_up {
                Some(target) => self.reassign(row, target),
                None => self.unserved.push(Unserved::Orphan(row)),
            },
            (HandOff::Released { .. }, None) => self.unserved.push(Unserved::Orphan(row)),
            (HandOff::Released { .. }, Some(target)) => {
                self.plan.complete.push(moving(row, target));
                self.in_flight += 1;
                self.add_load(target);
            }
            (HandOff::Draining { .. }, Some(target)) => {
                self.in_flight += 1;
                self.add_load(target);
            }
            // The owner keeps it; if the owner is leaving, it moves in a later round.
            (HandOff::Draining { target }, None) => {
                self.plan.cancel.push(moving(row, target));
                if owner_up {
                    self.add_load(&row.owner);
                }
            }
            (HandOff::Active, _) if owner_up => {
                self.add_load(&row.owner);
                self.movable.entry(&row.owner).or_default().push(row);
            }
            (HandOff::Active, _) => self.to_drain.push(row),
        }
    }

    /// Places every unserved shard, least loaded first: nobody serves them, so they are
    /// not rate-limited.
    fn place_unserved(&mut self) {
        for shard in std::mem::take(&mut self.unserved) {
            let node = self.least_loaded();
            match shard {
                Unserved::Missing(shard) => {
                    self.plan.initial.push((shard, node.to_owned()));
                    self.add_load(node);
                }
                Unserved::Orphan(row) => self.reassign(row, node),
            }
        }
    }

    /// Moves up to `budget` shards off leaving nodes, least loaded first; returns the
    /// budget left.
    fn drain_leaving(&mut self, budget: usize) -> usize {
        let draining = self.to_drain.len().min(budget);
        for row in std::mem::take(&mut self.to_drain)
            .into_iter()
            .take(draining)
        {
            let node = self.least_loaded();
            self.plan.moves.push(moving(row, node));
            self.add_load(node);
        }
        budget - draining
    }

    fn add_load(&mut self, node: &str) {
        *self
            .loads
            .get_mut(node)
            .expect("loads are kept for up nodes only") += 1;
    }

    fn reassign(&mut self, row: &Assignment, node: &str) {
        self.plan.reassign.push(moving(row, node));
        self.add_load(node);
    }

    /// The up node with the fewest shards, the first by id of equals.
    fn least_loaded(&self) -> &'a str {
        let (node, _) = self
            .loads
            .iter()
            .min_by_key(|&(node, load)| (*load, *node))
            .expect("planning needs an up node");
        node
    }

    /// Plans up to `budget` moves from nodes above their target load to nodes below it.
    ///
    /// Targets are `shard_count / nodes`, one more for the `shard_count % nodes` nodes
    /// holding most (first by id of equals), so the nodes that keep the extra shard are the
    /// ones that already have it: no move is made that a later one undoes.
    fn rebalance(&mut self, shard_count: u32, budget: usize) {
        let nodes = self.loads.len();
        let base = shard_count as usize / nodes;
        let mut by_load: Vec<(&str, usize)> = self.loads.iter().map(|(&n, &l)| (n, l)).collect();
        by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let extra = shard_count as usize % nodes;
        let targets: BTreeMap<&str, usize> = by_load
            .iter()
            .enumerate()
            .map(|(rank, &(node, _))| (node, base + usize::from(rank < extra)))
            .collect();
        for _ in 0..budget {
            // The donor furthest above its target that still has a settled shard (a node
            // above target only by incoming hand-offs cannot give).
            let donor = self
                .loads
                .iter()
                .filter(|&(node, load)| {
                    *load > targets[node] && self.movable.get(node).is_some_and(|s| !s.is_empty())
                })
                .max_by_key(|&(node, load)| (*load - targets[node], std::cmp::Reverse(*node)))
                .map(|(&node, _)| node);
            let recipient = self
                .loads
                .iter()
                .filter(|&(node, load)| *load < targets[node])
                .max_by_key(|&(node, load)| (targets[node] - *load, std::cmp::Reverse(*node)))
                .map(|(&node, _)| node);
            let (Some(donor), Some(recipient)) = (donor, recipient) else {
                return;
            };
            let shards = self.movable.get_mut(donor).expect("donors have shards");
            let row = shards.remove(0);
            self.plan.moves.push(moving(row, recipient));
            *self.loads.get_mut(donor).expect("donors are up") -= 1;
            self.add_load(recipient);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHARDS: u32 = 256;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|&name| name.to_owned()).collect()
    }

    fn active(shard: u32, owner: &str) -> Assignment {
        Assignment {
            shard,
            owner: owner.to_owned(),
            epoch: 1,
            handoff: HandOff::Active,
        }
    }

    fn with(handoff: HandOff, row: Assignment) -> Assignment {
        Assignment { handoff, ..row }
    }

    fn draining(target: &str) -> HandOff {
        HandOff::Draining {
            target: target.to_owned(),
        }
    }

    fn released(target: &str) -> HandOff {
        HandOff::Released {
            target: target.to_owned(),
        }
    }

    fn moved(shard: u32, epoch: u64, from: &str, to: &str) -> Move {
        Move {
            shard,
            epoch,
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }

    /// The shard table in memory, changed as `Allocation`'s statements change the real one.
    type Table = BTreeMap<u32, Assignment>;

    fn table(rows: Vec<Assignment>) -> Table {
        rows.into_iter().map(|row| (row.shard, row)).collect()
    }

    fn rows(table: &Table) -> Vec<Assignment> {
        table.values().cloned().collect()
    }

    /// Applies `plan` to `table` (each step conditional on the epoch it names, as the real
    /// statements are); returns the number of graceful moves begun.
    fn apply(table: &mut Table, plan: &Plan) -> usize {
        for (shard, owner) in &plan.initial {
            assert!(table.insert(*shard, active(*shard, owner)).is_none());
        }
        for step in &plan.reassign {
            let row = table.get_mut(&step.shard).unwrap();
            assert_eq!((row.epoch, &row.owner), (step.epoch, &step.from));
            row.owner = step.to.clone();
            row.epoch += 1;
            row.handoff = HandOff::Active;
        }
        for step in &plan.cancel {
            let row = table.get_mut(&step.shard).unwrap();
            assert_eq!(row.epoch, step.epoch);
            assert_eq!(row.handoff, draining(&step.to));
            row.handoff = HandOff::Active;
        }
        for step in &plan.complete {
            let row = table.get_mut(&step.shard).unwrap();
            assert_eq!(row.epoch, step.epoch);
            assert_eq!(row.handoff, released(&step.to));
            *row = Assignment {
                epoch: row.epoch + 1,
                ..active(step.shard, &step.to)
            };
        }
        for step in &plan.moves {
            let row = table.get_mut(&step.shard).unwrap();
            assert_eq!((row.epoch, &row.owner), (step.epoch, &step.from));
            assert_eq!(row.handoff, HandOff::Active);
            row.handoff = draining(&step.to);
        }
        plan.moves.len()
    }

    /// Every draining shard's old owner releases it and the move completes.
    fn finish_handoffs(table: &mut Table) {
        for row in table.values_mut() {
            if let Some(target) = row.handoff.target() {
                *row = Assignment {
                    epoch: row.epoch + 1,
                    ..active(row.shard, target)
                };
            }
        }
    }

    fn loads(table: &Table) -> BTreeMap<String, usize> {
        let mut loads = BTreeMap::new();
        for row in table.values() {
            *loads.entry(row.owner.clone()).or_default() += 1;
        }
        loads
    }

    /// Plans, applies and finishes rounds until the plan is empty; returns the rounds that
    /// changed something and the graceful moves made.
    fn converge(
        table: &mut Table,
        shard_count: u32,
        up: &[String],
        leaving: &[String],
        moves_max: usize,
    ) -> (usize, usize) {
        let mut rounds = 0;
        let mut moves = 0;
        loop {
            let plan = plan(&rows(table), shard_count, up, leaving, moves_max);
            if plan.is_empty() {
                return (rounds, moves);
            }
            moves += apply(table, &plan);
            finish_handoffs(table);
            rounds += 1;
            assert!(rounds <= 1_000, "no convergence");
        }
    }

    /// A balanced table of `SHARDS` shards over `up`, as a first round leaves it.
    fn balanced(up: &[String]) -> Table {
        let mut table = Table::new();
        apply(&mut table, &plan(&[], SHARDS, up, &[], 1));
        assert!(is_balanced(&rows(&table), SHARDS, up));
        table
    }

    #[test]
    fn a_new_cluster_spreads_every_shard_at_once_least_loaded_first() {
        let up = nodes(&["b", "a", "c"]);
        let plan = plan(&[], SHARDS, &up, &[], 0);
        assert_eq!(plan.initial.len(), SHARDS as usize);
        assert_eq!(
            plan.initial[..4],
            [
                (0, "a".into()),
                (1, "b".into()),
                (2, "c".into()),
                (3, "a".into())
            ]
        );
        let mut table = Table::new();
        apply(&mut table, &plan);
        let expected: BTreeMap<String, usize> =
            [("a".into(), 86), ("b".into(), 85), ("c".into(), 85)].into();
        assert_eq!(loads(&table), expected);
        assert!(is_balanced(&rows(&table), SHARDS, &up));
    }

    #[test]
    fn nothing_is_planned_without_a_node_up() {
        let rows = [active(0, "a")];
        assert!(plan(&rows, SHARDS, &[], &nodes(&["a"]), 8).is_empty());
        assert!(plan(&rows, SHARDS, &nodes(&["a"]), &nodes(&["a"]), 8).is_empty());
    }

    #[test]
    fn a_balanced_cluster_is_left_alone() {
        let up = nodes(&["a", "b", "c"]);
        let table = balanced(&up);
        assert!(plan(&rows(&table), SHARDS, &up, &[], 64).is_empty());
    }

    #[test]
    fn a_dead_nodes_shards_are_all_reassigned_in_the_first_round() {
        let up = nodes(&["a", "b", "c"]);
        let mut table = balanced(&up);
        let survivors = nodes(&["a", "b"]);
        let plan = plan(&rows(&table), SHARDS, &survivors, &[], 1);
        assert_eq!(plan.reassign.len(), 85);
        assert!(
            plan.reassign
                .iter()
                .all(|step| step.from == "c" && step.epoch == 1)
        );
        assert!(plan.moves.is_empty(), "{plan:?}");
        apply(&mut table, &plan);
        assert!(is_balanced(&rows(&table), SHARDS, &survivors));
        assert!(table.values().all(|row| row.epoch == 1 || row.epoch == 2));
    }

    #[test]
    fn a_fourth_node_gets_a_quarter_in_exactly_sixty_four_moves() {
        let mut up = nodes(&["a", "b", "c"]);
        for moves_max in [1, 7, 64, 1_000] {
            let mut table = balanced(&up);
            up.push("d".into());
            let (rounds, moves) = converge(&mut table, SHARDS, &up, &[], moves_max);
            up.pop();
            assert_eq!(moves, 64);
            assert_eq!(rounds, 64usize.div_ceil(moves_max));
            assert_eq!(loads(&table)["d"], 64);
            assert!(
                table.values().all(|row| row.epoch <= 2),
                "a shard moved twice"
            );
        }
    }

    #[test]
    fn a_leaving_node_is_drained_within_the_budget_counting_hand_offs_under_way() {
        let up = nodes(&["a", "b", "c"]);
        let mut table = balanced(&up);
        // Shard 0 (a) and shard 1 (b) are already moving.
        table.insert(0, with(draining("b"), active(0, "a")));
        table.insert(1, with(released("c"), active(1, "b")));
        let staying = nodes(&["a", "b"]);
        let plan = plan(&rows(&table), SHARDS, &staying, &nodes(&["c"]), 5);
        assert!(plan.complete.is_empty(), "c is not up: shard 1 is redone");
        assert_eq!(plan.reassign.len(), 1, "{plan:?}");
        assert_eq!(plan.moves.len(), 4, "5 in flight, shard 0 counted");
        assert!(plan.moves.iter().all(|step| step.from == "c"));
        apply(&mut table, &plan);
        finish_handoffs(&mut table);
        let (_, moves) = converge(&mut table, SHARDS, &staying, &nodes(&["c"]), 5);
        assert!(is_balanced(&rows(&table), SHARDS, &staying));
        assert_eq!(loads(&table).get("c"), None);
        assert_eq!(moves + 4, 85, "each of c's shards moved once, nothing else");
    }

    #[test]
    fn hand_offs_toward_a_node_gone_are_cancelled_or_redone() {
        let up = nodes(&["a", "b"]);
        let rows = [
            with(draining("gone"), active(0, "a")),
            with(released("gone"), active(1, "a")),
            with(released("b"), active(2, "a")),
            with(draining("b"), active(3, "dead")),
            active(4, "b"),
        ];
        let plan = plan(&rows, 5, &up, &[], 10);
        assert_eq!(plan.cancel, [moved(0, 1, "a", "gone")]);
        assert_eq!(plan.complete, [moved(2, 1, "a", "b")]);
        // The dead owner's shard goes to its hand-off target, already chosen for balance;
        // the released one, placed after, to the least loaded (its old owner, under a new
        // epoch).
        assert_eq!(
            plan.reassign,
            [moved(3, 1, "dead", "b"), moved(1, 1, "a", "a")]
        );
        assert!(plan.initial.is_empty() && plan.moves.is_empty(), "{plan:?}");
    }

    #[test]
    #[should_panic(expected = "has two rows")]
    fn two_rows_for_one_shard_are_a_bug() {
        plan(&[active(0, "a"), active(0, "b")], 1, &nodes(&["a"]), &[], 1);
    }

    /// Nodes `n0..n5`, each up, leaving or gone, and a ghost that never joined.
    const NAMES: [&str; 7] = ["n0", "n1", "n2", "n3", "n4", "n5", "ghost"];

    fn arbitrary_handoff() -> impl Strategy<Value = HandOff> {
        let target = prop::sample::select(&NAMES[..]).prop_map(str::to_owned);
        prop_oneof![
            4 => Just(HandOff::Active),
            1 => target.clone().prop_map(|target| HandOff::Draining { target }),
            1 => target.prop_map(|target| HandOff::Released { target }),
        ]
    }

    /// A table of `SHARDS` shards, some missing, owned by any node in any hand-off state,
    /// and the membership: (rows, up, leaving).
    fn arbitrary_cluster() -> impl Strategy<Value = (Vec<Assignment>, Vec<String>, Vec<String>)> {
        let row = (
            any::<bool>(),
            prop::sample::select(&NAMES[..]),
            1..5u64,
            arbitrary_handoff(),
        );
        let statuses = prop::collection::vec(0..3u8, 6);
        (prop::collection::vec(row, SHARDS as usize), statuses).prop_map(|(rows, statuses)| {
            let rows = rows
                .into_iter()
                .zip(0..)
                .filter(|((present, ..), _)| *present)
                .map(|((_, owner, epoch, handoff), shard)| Assignment {
                    shard,
                    owner: owner.to_owned(),
                    epoch,
                    handoff,
                })
                // A hand-off toward its own owner is refused by the table.
                .filter(|row| row.handoff.target() != Some(&row.owner))
                .collect();
            let with_status = |wanted| {
                (0..6)
                    .filter(|&index| statuses[index] == wanted)
                    .map(|index| NAMES[index].to_owned())
                    .collect::<Vec<_>>()
            };
            (rows, with_status(0), with_status(1))
        })
    }

    proptest! {
        #[test]
        fn plans_are_safe_bounded_and_converge(
            (all_rows, up, leaving) in arbitrary_cluster(),
            shard_count in 1..=SHARDS,
            moves_max in 1..40usize,
        ) {
            prop_assume!(!up.is_empty());
            let initial_rows: Vec<Assignment> =
                all_rows.into_iter().filter(|row| row.shard < shard_count).collect();
            let alive = |node: &String| up.contains(node) || leaving.contains(node);
            let first = plan(&initial_rows, shard_count, &up, &leaving, moves_max);

            // Only up nodes receive shards, and each shard is planned at most once.
            let steps = || {
                first.reassign.iter().chain(&first.cancel).chain(&first.complete).chain(&first.moves)
            };
            let placements = first.initial.iter().map(|(_, to)| to)
                .chain(steps().filter(|&step| !first.cancel.contains(step)).map(|step| &step.to));
            for node in placements {
                prop_assert!(up.contains(node), "{node} is not up");
            }
            let planned: Vec<u32> = first.initial.iter().map(|(shard, _)| *shard)
                .chain(steps().map(|step| step.shard))
                .collect();
            prop_assert_eq!(planned.len(), planned.iter().collect::<BTreeSet<_>>().len());

            // New moves only within the budget, hand-offs already under way counted.
            let under_way = initial_rows.iter().filter(|row| {
                alive(&row.owner) && row.handoff.target().is_some_and(|t| up.iter().any(|u| u == t))
            }).count();
            prop_assert!(first.moves.len() <= moves_max.saturating_sub(under_way));

            // Every shard nobody serves is served after the first round, at once.
            let mut table = table(initial_rows);
            apply(&mut table, &first);
            prop_assert_eq!(table.len(), shard_count as usize);
            for row in table.values() {
                prop_assert!(alive(&row.owner), "{row:?} still unserved");
                let redone = matches!(&row.handoff, HandOff::Released { target } if !up.contains(target));
                prop_assert!(!redone, "{:?} released toward a node not up", row);
            }

            // Moves complete between rounds: balanced within the bound (this first round
            // included), then left alone.
            finish_handoffs(&mut table);
            let (later_rounds, _) = converge(&mut table, shard_count, &up, &leaving, moves_max);
            let rounds = 1 + later_rounds;
            prop_assert!(rounds <= (shard_count as usize).div_ceil(moves_max) + 2, "{rounds} rounds");
            prop_assert!(is_balanced(&rows(&table), shard_count, &up));
        }
    }
}
