//! The route handlers, one module per resource.

pub mod accounts;
pub mod archive;
pub mod cluster;
pub mod dead_letters;
pub mod events;
pub mod markets;
pub mod operations;
pub mod orders;
pub mod projections;
pub mod quotes;
pub mod risk;
pub mod rules;
pub mod strategies;
pub mod streams;
