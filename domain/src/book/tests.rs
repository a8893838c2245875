//! Unit tests of the order book.
