//! The serving side: the gateway actor, which serves other nodes' calls with this node's
//! [`Remoting`], and one answer queue per calling node, drained into frames cast to that
//! node's inbox.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::{Semaphore, mpsc};
use tradefloor_actors::Error as ActorError;
use tradefloor_actors::routing::remote::{Remoting, Reply};
use tradefloor_persistence::codec;

use super::inbox::InboxMessage;
use super::{
    CallFrame, Frames, RemoteConfig, ReplyFrame, SCOPE, gateway_group, inbox_group, remote_member,
    reply_size,
};

/// What the gateway is sent: calls, as one frame of the binary codec
/// ([`codec::encode_frame`], bounded by [`codec::FRAME_LIMIT`]).
#[derive(RactorClusterMessage)]
pub enum GatewayMessage {
    /// Serve the calls of a [`CallFrame`]; their answers go to the caller's inbox.
    Calls(Vec<u8>),
}

/// Most calling nodes the gateway keeps an answer queue (and its task) for: far more nodes
/// than a cluster has, so that a peer naming itself anew in every frame cannot grow them.
const CALLERS_MAX: usize = 1_024;

/// The gateway actor (see the [module docs](self)).
pub(super) struct Gateway;

pub(super) struct GatewayState {
    remoting: Arc<Remoting>,
    config: RemoteConfig,
    serving: Arc<Semaphore>,
    /// The answers waiting to go back, per calling node.
    answers: HashMap<String, mpsc::Sender<(u64, Reply)>>,
}

impl Actor for Gateway {
    type Msg = GatewayMessage;
    type State = GatewayState;
    type Arguments = (Arc<Remoting>, RemoteConfig);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (remoting, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join_scoped(
            SCOPE.to_owned(),
            gateway_group(remoting.node_id()),
            vec![myself.get_cell()],
        );
        Ok(GatewayState {
            remoting,
            serving: Arc::new(Semaphore::new(config.serving_max)),
            config,
            answers: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let GatewayMessage::Calls(bytes) = message;
        let frame = match codec::decode_frame::<CallFrame>(&bytes) {
            Ok(frame) => frame,
            Err(error) => {
                // Nobody to answer: the caller's deadline answers its calls.
                tracing::warn!(%error, "undecodable frame of calls dropped");
                return Ok(());
            }
        };
        metrics::histogram!("tradefloor_cluster_calls_per_frame", "side" => "served")
            .record(frame.calls.len() as f64);
        let Some(answers) = state.answers_to(&frame.from) else {
            tracing::warn!(from = %frame.from, "frame of calls dropped: too many callers");
            return Ok(());
        };
        for (id, call) in frame.calls {
            let Ok(permit) = state.serving.clone().try_acquire_owned() else {
                let refused: Reply = Err(ActorError::Overloaded {
                    actor: format!("{}/gateway", state.remoting.node_id()),
                    capacity: state.config.serving_max,
                });
                // The queue holds `serving_max` answers and each waiting one holds a permit
                // (this refusal holds none): if even it is full, the caller's deadline answers.
                let _ = answers.try_send((id, refused));
                continue;
            };
            let remoting = state.remoting.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let reply = remoting.serve(call).await;
                // Sent only if the caller's queue still runs (it always does while we do).
                let _ = answers.send((id, reply)).await;
                drop(permit);
            });
        }
        Ok(())
    }
}

impl GatewayState {
    /// The answer queue to node `from`, started at its first call; `None` past
    /// [`CALLERS_MAX`] callers.
    fn answers_to(&mut self, from: &str) -> Option<mpsc::Sender<(u64, Reply)>> {
        if let Some(queue) = self.answers.get(from) {
            return Some(queue.clone());
        }
        if self.answers.len() >= CALLERS_MAX {
            return None;
        }
        let (queue, waiting) = mpsc::channel(self.config.serving_max.max(1));
        tokio::spawn(send_answers(
            from.to_owned(),
            self.remoting.node_id().to_owned(),
            self.config.clone(),
            waiting,
        ));
        self.answers.insert(from.to_owned(), queue.clone());
        Some(queue)
    }
}

/// Drains the answers to node `to` into frames cast to its inbox, for as long as the
/// gateway runs.
async fn send_answers(
    to: String,
    node_id: String,
    config: RemoteConfig,
    waiting: mpsc::Receiver<(u64, Reply)>,
) {
    let mut frames = Frames::new(waiting, |(_, reply)| reply_size(reply), &config);
    while let Some(replies) = frames.next().await {
        metrics::histogram!("tradefloor_cluster_calls_per_frame", "side" => "answered")
            .record(replies.len() as f64);
        let bytes = encode_answers(replies, &node_id, config.frame_bytes_max);
        let Some(inbox) = remote_member::<InboxMessage>(&inbox_group(&to)) else {
            tracing::debug!(node = %to, "answers dropped: not connected to the caller");
            continue;
        };
        if let Err(error) = inbox.cast(InboxMessage::Replies(bytes)) {
            tracing::debug!(node = %to, %error, "answers dropped: the connection broke");
        }
    }
}

/// The frame of `replies`; an answer larger than `bytes_max` (the bound on a call, too) is
/// replaced by the error saying so.
fn encode_answers(mut replies: Vec<(u64, Reply)>, node_id: &str, bytes_max: usize) -> Vec<u8> {
    for (_, reply) in &mut replies {
        if reply_size(reply) > bytes_max {
            *reply = Err(ActorError::Failed {
                actor: format!("{node_id}/gateway"),
                reason: format!(
                    "cannot encode the answer: {} bytes exceed a frame",
                    reply_size(reply)
                ),
            });
        }
    }
    let ids: Vec<u64> = replies.iter().map(|(id, _)| *id).collect();
    codec::encode_frame(&ReplyFrame { replies }).unwrap_or_else(|reason| {
        let failed = ids
            .into_iter()
            .map(|id| {
                let failure: Reply = Err(ActorError::Failed {
                    actor: format!("{node_id}/gateway"),
                    reason: format!("cannot encode the answer: {reason}"),
                });
                (id, failure)
            })
            .collect();
        codec::encode_frame(&ReplyFrame { replies: failed }).expect("short errors frame")
    })
}
