//! The actor runtime: bounded mailboxes with a priority lane, supervisors with restart
//! strategies and backoff, the node guardian, circuit breakers, the registry behind the actor
//! tree, dead letters, and asks with deadlines.

pub(crate) mod ask;
pub mod backoff;
pub mod breaker;
pub mod dead_letters;
pub mod guardian;
pub mod mailbox;
pub mod registry;
pub mod supervisor;
