//! The calling side's answers: the calls waiting for one, and the inbox actor that receives
//! the frames of answers other nodes' gateways send back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::oneshot;
use tradefloor_actors::routing::remote::Reply;
use tradefloor_persistence::codec;

use super::{ReplyFrame, SCOPE, inbox_group};

/// What the inbox is sent: answers, as one frame of the binary codec.
#[derive(RactorClusterMessage)]
pub enum InboxMessage {
    /// The answers of a [`ReplyFrame`].
    Replies(Vec<u8>),
}

/// The calls waiting for an answer, by number: which node they went to and where their
/// answer goes. Bounded by the transport's in-flight bound per node.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    calls: Mutex<HashMap<u64, (String, oneshot::Sender<Reply>)>>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, oneshot::Sender<Reply>)>> {
        self.calls.lock().expect("no panics under the lock")
    }

    /// Registers call `id` to `node`; its answer comes on the receiver.
    pub(super) fn register(&self, id: u64, node: &str) -> oneshot::Receiver<Reply> {
        let (answer, answered) = oneshot::channel();
        self.lock().insert(id, (node.to_owned(), answer));
        answered
    }

    /// Forgets call `id` (answered, given up or never sent).
    pub(super) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Hands `reply` to call `id`, if it still waits.
    fn answer(&self, id: u64, reply: Reply) {
        if let Some((_, answer)) = self.lock().remove(&id) {
            let _ = answer.send(reply);
        }
    }

    /// Gives up every call waiting on `node` (its connection broke: their answers will never
    /// come); each caller learns it at once, as `Stopped`.
    pub(super) fn fail_node(&self, node: &str) -> usize {
        let mut calls = self.lock();
        let before = calls.len();
        calls.retain(|_, (to, _)| to != node);
        before - calls.len()
    }
}

/// The inbox actor (see the [module docs](self)).
pub(super) struct Inbox;

impl Actor for Inbox {
    type Msg = InboxMessage;
    type State = Arc<Waiting>;
    type Arguments = (String, Arc<Waiting>);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (node_id, waiting): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join_scoped(
            SCOPE.to_owned(),
            inbox_group(&node_id),
            vec![myself.get_cell()],
        );
        Ok(waiting)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        waiting: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let InboxMessage::Replies(bytes) = message;
        match codec::decode_frame::<ReplyFrame>(&bytes) {
            Ok(frame) => {
                for (id, reply) in frame.replies {
                    waiting.answer(id, reply);
                }
            }
            // Nobody to answer: those callers' deadlines answer them.
            Err(error) => tracing::warn!(%error, "undecodable frame of answers dropped"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_their_call_and_a_broken_node_fails_its_calls_only() {
        let waiting = Waiting::default();
        let first = waiting.register(1, "n2");
        let second = waiting.register(2, "n2");
        let third = waiting.register(3, "n3");
        waiting.answer(1, Ok(vec![7]));
        waiting.answer(1, Ok(vec![8]));
        assert_eq!(first.await.unwrap(), Ok(vec![7]), "answered once");
        assert_eq!(waiting.fail_node("n2"), 1);
        assert!(second.await.is_err(), "the broken node's call is given up");
        waiting.answer(3, Ok(vec![9]));
        assert_eq!(third.await.unwrap(), Ok(vec![9]));
        assert!(waiting.lock().is_empty());
    }
}
