//! The journal's SQL on SQLite.

crate::backend::backend_operations!(sqlx::Sqlite);
