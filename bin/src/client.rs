//! A client of the HTTP API for `ctl` and `bench`.
