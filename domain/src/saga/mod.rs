//! The order placement saga (being written).
