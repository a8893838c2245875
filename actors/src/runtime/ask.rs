//! Asking a ractor actor for a value within a deadline, answered with the crate's [`Error`].

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::Error;

/// Sends the message `make` builds around a reply port, and waits up to `deadline` for the
/// answer: [`Error::Timeout`] when none comes in time, [`Error::Stopped`] when the actor is
/// gone or dropped the port.
pub(crate) async fn ask<M: Message, R: Send + 'static>(
    actor: &ActorRef<M>,
    make: impl FnOnce(RpcReplyPort<R>) -> M,
    deadline: Duration,
) -> Result<R, Error> {
    let path = || {
        actor
            .get_name()
            .unwrap_or_else(|| actor.get_id().to_string())
    };
    match actor.call(make, Some(deadline)).await {
        Ok(CallResult::Success(answer)) => Ok(answer),
        Ok(CallResult::Timeout) => Err(Error::Timeout {
            actor: path(),
            after: deadline,
        }),
        Ok(CallResult::SenderError) | Err(_) => Err(Error::Stopped { actor: path() }),
    }
}
