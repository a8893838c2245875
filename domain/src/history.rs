//! Bitemporal account history (being written).
