//! The node guardian: the root supervisor of a node's actor tree, registered under a fixed name.
//!
//! Nobody supervises the guardian, so its escalation cannot be somebody else's `ActorFailed`:
//! it logs at error level, stops the node's actors (as every escalating supervisor does) and
//! hands the error to [`Guardian::wait`], whose caller (the binary) exits non-zero.

use ractor::{Actor, ActorRef, SpawnErr};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::runtime::supervisor::{
    ChildSpec, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage, SupervisorStats,
};

/// The guardian's registered actor name, and the root of every path in the tree.
pub const GUARDIAN_NAME: &str = "guardian";

/// A running node guardian.
#[derive(Debug)]
pub struct Guardian {
    actor: ActorRef<SupervisorMessage>,
    join: JoinHandle<()>,
    escalation: oneshot::Receiver<Error>,
}

impl Guardian {
    /// Starts the guardian with `children` (in start order). Fails if a child cannot start, or
    /// if a guardian is already running in this process.
    pub async fn start(config: SupervisionConfig, children: Vec<ChildSpec>) -> Result<Self, Error> {
        let (escalation_sender, escalation) = oneshot::channel();
        let mut arguments = SupervisorArgs::new(GUARDIAN_NAME, config, children);
        arguments.escalation = Some(escalation_sender);
        let (actor, join) =
            Supervisor::spawn(Some(GUARDIAN_NAME.to_string()), Supervisor, arguments)
                .await
                .map_err(start_error)?;
        Ok(Self {
            actor,
            join,
            escalation,
        })
    }

    /// The guardian actor, to send it [`SupervisorMessage`]s.
    pub fn actor(&self) -> &ActorRef<SupervisorMessage> {
        &self.actor
    }

    /// The guardian's view of its children.
    pub async fn stats(&self) -> Result<SupervisorStats, Error> {
        Supervisor::stats(&self.actor).await
    }

    /// Stops the node's actors (children in reverse start order) and waits until they are gone.
    pub async fn stop(self) -> Result<(), Error> {
        self.actor.stop(Some("node stopping".to_string()));
        self.wait().await
    }

    /// Waits until the guardian stops: `Ok` after a requested stop, the escalation's error
    /// ([`Error::RestartIntensityExceeded`]) if the tree gave up.
    pub async fn wait(self) -> Result<(), Error> {
        // ractor catches the guardian's own panics, so the join itself cannot fail.
        let _ = self.join.await;
        match self.escalation.await {
            Ok(error) => Err(error),
            Err(_) => Ok(()),
        }
    }
}

/// The crate error for a failed start, keeping a supervisor's own error when there is one.
fn start_error(error: SpawnErr) -> Error {
    if let SpawnErr::StartupFailed(cause) = &error
        && let Some(error) = cause.downcast_ref::<Error>()
    {
        return error.clone();
    }
    Error::StartFailed {
        actor: GUARDIAN_NAME.to_string(),
        reason: error.to_string(),
    }
}
