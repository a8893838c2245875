//! The placement of one order: two durable steps before the answer.
//!
//! 1. The account's hold. For an order id the venue generated, the hold carries the saga's
//!    start (`account.hold_placed`'s `start`): one append records both, and the hosted saga
//!    is started in memory at the same time, journaling nothing on the happy path. A
//!    client-chosen order id starts the saga first (one more append), so a repeated id never
//!    places a second hold.
//! 2. The book's decision (the book writes the submits waiting in its queue as one append).
//!
//! The answer is the order as the saga will see it, folded here from the same inputs by the
//! same pure code ([`OrderSaga::step`]); the hosted saga gets those inputs afterwards as one
//! [`SagaInput::Answers`], and the other orders the book touched get its events. From there
//! the sagas settle fills and release holds as before, off the critical path.
//!
//! What a crash costs at each instant: a hold placed is a started saga (its start is in the
//! hold, or journaled before it), which recovery resumes; a started saga that never learns
//! its answers re-sends its hold and submit at its deadline (both idempotent by command and
//! order id) and learns the book's events from the durable [feed](super::feed). So the answer
//! needs two commits and nothing acknowledged depends on a third.

use tradefloor_domain::book::BookEvent;
use tradefloor_domain::saga::{OrderSaga, OrderView, SagaCommand, SagaInput};
use tradefloor_domain::{OrderId, OrderSpec, OrderStatus};

use super::dispatch::{account_answer, book_refusal};
use super::{Exchange, NewOrder};
use crate::error::Error;

/// A placement under way: its saga as the placement folds it, and what the hosted sagas
/// are to be told once the placement is answered.
struct Placing {
    saga_id: String,
    saga: OrderSaga,
    /// The answers for the order's own saga, in order.
    answers: Vec<SagaInput>,
    /// The book's events for the sagas of the other orders they concern.
    others: Vec<(String, SagaInput)>,
    /// The start, if the hosted saga may not have it (its delivery failed): sent first.
    start: Option<SagaInput>,
}

impl Placing {
    /// Feeds `input` to the folded saga and records it for the hosted one; answers the
    /// commands it calls for.
    fn answer(&mut self, input: SagaInput) -> Result<Vec<SagaCommand>, Error> {
        let commands = self.saga.step(&input).map_err(Error::Rejected)?;
        self.answers.push(input);
        Ok(commands)
    }
}

impl Exchange {
    /// [`Exchange::place_order`] on this node, which hosts the order's saga; `fresh` if the
    /// order id was generated (its saga starts without reading the journal, at the same time
    /// as the hold).
    pub(super) async fn place_order_here(
        &self,
        order: NewOrder,
        fresh: bool,
    ) -> Result<OrderView, Error> {
        let market = self.market(order.symbol).await?;
        let order_id = order.order_id.unwrap_or_else(|| OrderId(self.next_id()));
        let spec = order_spec(order_id, &order);
        spec.validate(&market).map_err(Error::Rejected)?;
        let start = SagaInput::Start {
            request: spec,
            market,
            config: self.config.saga,
            by_hold: fresh,
            at: self.now(),
        };
        let mut placing = Placing {
            saga_id: order_id.to_string(),
            saga: OrderSaga::default(),
            answers: Vec::new(),
            others: Vec::new(),
            start: None,
        };
        let hold = single(placing.saga.step(&start).map_err(Error::Rejected)?);
        // Registered before the start, so no reply of the saga can slip past it.
        let watch = self
            .host
            .watch(&placing.saga_id, |reply| placed(&reply.view))?;
        let held = if fresh {
            // The hold carries the start: nothing waits for the saga's journal.
            let (started, held) = tokio::join!(
                self.host.send_driven(&placing.saga_id, start.clone(), true),
                self.carry_out_hold(hold),
            );
            if let Err(error) = started {
                // Whatever the hold did, the hosted saga must know its order: it gets the
                // start again with the follow-ups (if the hold was placed it would also
                // derive it from the hold, when loaded from the journal).
                tracing::debug!(saga = %placing.saga_id, %error, "start not delivered");
                placing.start = Some(start);
            }
            held
        } else {
            let started = self.host.send_driven(&placing.saga_id, start, false).await;
            if let Some(view) = self.already_started(&order, &spec, started).await? {
                if view.status != OrderStatus::Pending {
                    return Ok(view);
                }
                return self.wait_placed(&placing.saga_id, watch).await;
            }
            self.carry_out_hold(hold).await
        };
        if let Some(held) = held {
            let commands = placing.answer(held)?;
            if let Some(submit) = commands.into_iter().next() {
                self.carry_out_submit(&mut placing, submit).await?;
            }
        }
        let view = placing.saga.view();
        self.host.deliver(follow_ups(placing));
        if placed(&view) {
            return Ok(view);
        }
        self.wait_placed(&order_id.to_string(), watch).await
    }

    /// The hold's answer as a saga input, or `None` if the account gave none (the saga's
    /// deadline asks again).
    async fn carry_out_hold(&self, hold: SagaCommand) -> Option<SagaInput> {
        let SagaCommand::Account {
            account_id,
            command,
        } = hold
        else {
            unreachable!("a saga's first command is its hold")
        };
        let result = self
            .accounts
            .ask(
                account_id.as_str(),
                command.clone(),
                self.config.ask_deadline,
            )
            .await;
        let answer = account_answer(&command, &result, self.now());
        if answer.is_none() {
            tracing::debug!(account = %account_id, ?result, "hold not answered");
        }
        answer
    }

    /// Submits the order to its book and folds what the book did into the placement.
    async fn carry_out_submit(
        &self,
        placing: &mut Placing,
        submit: SagaCommand,
    ) -> Result<(), Error> {
        let SagaCommand::Book { symbol, command } = submit else {
            unreachable!("after its hold a saga submits")
        };
        let result = self
            .books
            .ask_with_events(symbol.as_str(), command.clone(), self.config.ask_deadline)
            .await;
        if let Some(refusal) = book_refusal(&command, &result, self.now()) {
            placing.answer(refusal)?;
            return Ok(());
        }
        match result {
            Ok((_, events)) => self.fold_book_events(placing, events),
            Err(error) => {
                // The book may have written: its events reach the saga through the feed.
                self.feed_wake.notify_one();
                tracing::debug!(%symbol, %error, "submit not answered");
                Ok(())
            }
        }
    }

    fn fold_book_events(&self, placing: &mut Placing, events: Vec<BookEvent>) -> Result<(), Error> {
        for event in events {
            for (order_id, input) in SagaInput::from_book(&event) {
                let saga_id = order_id.to_string();
                if saga_id == placing.saga_id {
                    placing.answer(input)?;
                } else {
                    placing.others.push((saga_id, input));
                }
            }
        }
        Ok(())
    }

    /// For a client-chosen order id: `None` if its saga started now; the order as it stands
    /// (possibly still pending) if the same order was placed before; refused if the id holds
    /// another order.
    async fn already_started(
        &self,
        order: &NewOrder,
        spec: &OrderSpec,
        started: Result<tradefloor_domain::saga::SagaReply, Error>,
    ) -> Result<Option<OrderView>, Error> {
        let reason = match started {
            Ok(_) => return Ok(None),
            Err(Error::Rejected(reason @ tradefloor_domain::Error::SagaAlreadyStarted { .. })) => {
                reason
            }
            Err(error) => return Err(error),
        };
        let view = self.order(spec.order_id).await?;
        let same = view.account_id == spec.account_id
            && view.symbol == order.symbol
            && view.side == spec.side
            && view.order_type == spec.order_type
            && view.price == spec.price
            && view.quantity == spec.quantity;
        if !same {
            return Err(Error::Rejected(reason));
        }
        Ok(Some(view))
    }

    /// Waits until the saga's order left `pending` (its host wakes `placed` with the first
    /// reply that says so, whichever input brought it), or the placement wait passed: then
    /// answers the order as the saga knows it.
    async fn wait_placed(
        &self,
        saga_id: &str,
        placed: crate::hosting::saga_host::Watch<OrderSaga>,
    ) -> Result<OrderView, Error> {
        match placed.wait(self.config.placement_wait).await {
            Some(reply) => Ok(reply.view),
            None => {
                let tick = SagaInput::Tick { now: self.now() };
                Ok(self.host.send(saga_id, tick).await?.view)
            }
        }
    }
}

/// What the hosted sagas are told once the placement is answered: the order's own saga its
/// answers as one input, the other orders' sagas the book's events about them.
fn follow_ups(placing: Placing) -> Vec<(String, SagaInput)> {
    let mut inputs = Vec::with_capacity(2 + placing.others.len());
    if let Some(start) = placing.start {
        inputs.push((placing.saga_id.clone(), start));
    }
    if !placing.answers.is_empty() {
        inputs.push((
            placing.saga_id,
            SagaInput::Answers {
                inputs: placing.answers,
            },
        ));
    }
    inputs.extend(placing.others);
    inputs
}

fn order_spec(order_id: OrderId, order: &NewOrder) -> OrderSpec {
    OrderSpec {
        order_id,
        account_id: order.account_id,
        side: order.side,
        order_type: order.order_type,
        price: order.price,
        quantity: order.quantity,
        time_in_force: order.time_in_force,
        post_only: order.post_only,
    }
}

/// The one command a saga's start calls for.
fn single(commands: Vec<SagaCommand>) -> SagaCommand {
    assert_eq!(commands.len(), 1, "a started saga asks for its hold only");
    commands.into_iter().next().expect("one command")
}

/// Whether a placement can be answered: the book's whole answer is known (the order rests,
/// or it ended, with every fill on arrival before that), or it was refused and its hold
/// released (so a client retrying at once finds its funds available again).
pub(super) fn placed(view: &OrderView) -> bool {
    match view.status {
        OrderStatus::Pending => false,
        OrderStatus::Rejected => view.finished,
        OrderStatus::Open | OrderStatus::Filled | OrderStatus::Cancelled => true,
        // Fills seen, but more may follow until the order rests or ends.
        OrderStatus::PartiallyFilled => view.resting,
    }
}
