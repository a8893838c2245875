//! The journal's SQL on PostgreSQL.

crate::backend::backend_operations!(sqlx::Postgres);
