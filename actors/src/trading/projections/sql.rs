//! One SQL statement on either backend: the read models' only way to the database.
//!
//! Read models bind and read three kinds of values (`BIGINT`, `TEXT`, `NULL`), so every
//! statement can be written once, with `$1`-style placeholders, which SQLite and PostgreSQL
//! both accept. Generated multi-row inserts are the exception: on SQLite they use anonymous
//! `?` placeholders (see [`write_rows`]).

use serde::Serialize;
use tradefloor_persistence::{Database, Transaction};

/// A value bound to or read from a read-model column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum SqlValue {
    /// SQL `NULL` in a `BIGINT` column (and any `NULL` read back).
    Null,
    /// SQL `NULL` in a `TEXT` column. A `NULL` must be bound with its column's type:
    /// PostgreSQL types a prepared statement's parameters by their first binding, and a later
    /// text sent for a parameter first bound as a `BIGINT` is refused as a malformed message.
    NullText,
    /// A `BIGINT`.
    Integer(i64),
    /// A `TEXT`.
    Text(String),
}

impl SqlValue {
    /// The integer, if this is one.
    pub fn integer(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(integer) => Some(*integer),
            _ => None,
        }
    }

    /// The text, if this is some.
    pub fn text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(text) => Some(text),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(integer: i64) -> Self {
        SqlValue::Integer(integer)
    }
}

impl From<&str> for SqlValue {
    fn from(text: &str) -> Self {
        SqlValue::Text(text.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(text: String) -> Self {
        SqlValue::Text(text)
    }
}

impl From<Option<i64>> for SqlValue {
    fn from(integer: Option<i64>) -> Self {
        integer.map_or(SqlValue::Null, SqlValue::Integer)
    }
}

macro_rules! bind_values {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                SqlValue::Null => query.bind(None::<i64>),
                SqlValue::NullText => query.bind(None::<String>),
                SqlValue::Integer(integer) => query.bind(*integer),
                SqlValue::Text(text) => query.bind(text.clone()),
            };
        }
        query
    }};
}

macro_rules! decode_rows {
    ($rows:expr) => {{
        use sqlx::Row;
        $rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|index| {
                        if let Ok(integer) = row.try_get::<Option<i64>, _>(index) {
                            return Ok(SqlValue::from(integer));
                        }
                        row.try_get::<Option<String>, _>(index)
                            .map(|text| text.map_or(SqlValue::Null, SqlValue::Text))
                    })
                    .collect::<Result<Vec<SqlValue>, sqlx::Error>>()
            })
            .collect::<Result<Vec<Vec<SqlValue>>, sqlx::Error>>()
    }};
}

/// Runs one statement inside `transaction`.
pub(crate) async fn execute(
    transaction: &mut Transaction,
    sql: &str,
    values: &[SqlValue],
) -> Result<(), sqlx::Error> {
    match transaction {
        Transaction::Sqlite(transaction) => {
            bind_values!(sqlx::query(sql), values)
                .execute(&mut **transaction)
                .await?;
        }
        Transaction::Postgres(transaction) => {
            bind_values!(sqlx::query(sql), values)
                .execute(&mut **transaction)
                .await?;
        }
    }
    Ok(())
}

/// Rows one multi-row `INSERT` carries at most: with a read model's handful of columns the
/// placeholders stay far below SQLite's (32 766) and PostgreSQL's (65 535) limits.
pub(crate) const INSERT_ROWS_MAX: usize = 256;

/// Inserts `rows` (each as many values as `columns` names) into `table`, up to
/// [`INSERT_ROWS_MAX`] rows per statement: one round trip to the database for a batch rather
/// than one per row (each is a hop to sqlx's SQLite thread). `tail` follows the `VALUES` list
/// of every statement (an `ON CONFLICT` clause, a `RETURNING` list, or nothing); the rows
/// returned are those of every statement, in order. Rows of one statement must not share a
/// conflict key (PostgreSQL refuses to update one row twice in one statement): merge them
/// first.
pub(crate) async fn write_rows(
    transaction: &mut Transaction,
    table: &str,
    columns: &[&str],
    rows: &[Vec<SqlValue>],
    tail: &str,
) -> Result<Vec<Vec<SqlValue>>, sqlx::Error> {
    assert!(!columns.is_empty(), "an insert names its columns");
    let numbered = matches!(transaction, Transaction::Postgres(_));
    let mut returned = Vec::new();
    for chunk in rows.chunks(INSERT_ROWS_MAX) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut values = Vec::with_capacity(chunk.len() * columns.len());
        for (index, row) in chunk.iter().enumerate() {
            assert_eq!(row.len(), columns.len(), "one value per column");
            if index > 0 {
                sql.push_str(", ");
            }
            push_placeholders(&mut sql, numbered, index * columns.len(), columns.len());
            values.extend(row.iter().cloned());
        }
        if !tail.is_empty() {
            sql.push(' ');
            sql.push_str(tail);
        }
        returned.extend(fetch_in(transaction, &sql, &values).await?);
    }
    Ok(returned)
}

/// Appends `(p, p, …)` with `count` placeholders for the parameters after the first `before`:
/// `$n` when `numbered` (PostgreSQL), anonymous `?` otherwise (SQLite). sqlx binds each
/// parameter of an SQLite statement by looking its name up among the statement's named
/// parameters, a linear search, so `$n` placeholders make a many-row insert quadratic there;
/// `?` parameters are bound by position.
fn push_placeholders(sql: &mut String, numbered: bool, before: usize, count: usize) {
    use std::fmt::Write;
    sql.push('(');
    for column in 1..=count {
        if column > 1 {
            sql.push_str(", ");
        }
        if numbered {
            // Writing to a `String` cannot fail.
            let _ = write!(sql, "${}", before + column);
        } else {
            sql.push('?');
        }
    }
    sql.push(')');
}

/// Runs one query inside `transaction` and returns its rows.
pub(crate) async fn fetch_in(
    transaction: &mut Transaction,
    sql: &str,
    values: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, sqlx::Error> {
    match transaction {
        Transaction::Sqlite(transaction) => {
            let rows = bind_values!(sqlx::query(sql), values)
                .fetch_all(&mut **transaction)
                .await?;
            decode_rows!(rows)
        }
        Transaction::Postgres(transaction) => {
            let rows = bind_values!(sqlx::query(sql), values)
                .fetch_all(&mut **transaction)
                .await?;
            decode_rows!(rows)
        }
    }
}

/// Runs one query on the pool and returns its rows.
pub(crate) async fn fetch(
    database: &Database,
    sql: &str,
    values: &[SqlValue],
) -> Result<Vec<Vec<SqlValue>>, sqlx::Error> {
    match database {
        Database::Sqlite(pool) => {
            let rows = bind_values!(sqlx::query(sql), values)
                .fetch_all(pool)
                .await?;
            decode_rows!(rows)
        }
        Database::Postgres(pool) => {
            let rows = bind_values!(sqlx::query(sql), values)
                .fetch_all(pool)
                .await?;
            decode_rows!(rows)
        }
    }
}

/// Runs one statement on the pool (table creation).
pub(crate) async fn execute_on(database: &Database, sql: &str) -> Result<(), sqlx::Error> {
    match database {
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::push_placeholders;

    #[test]
    fn placeholders_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        let mut numbered = String::new();
        push_placeholders(&mut numbered, true, 3, 3);
        assert_eq!(numbered, "($4, $5, $6)");
        let mut anonymous = String::new();
        push_placeholders(&mut anonymous, false, 3, 3);
        assert_eq!(anonymous, "(?, ?, ?)");
    }
}
