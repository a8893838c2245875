//! The order book aggregate (being written).
pub mod command;
pub mod event;
