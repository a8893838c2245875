//! The values read models bind and read: `BIGINT`, `TEXT` and `NULL`, on either backend.
//!
//! One value type lets a read model write each statement once (with `$1`-style placeholders,
//! which SQLite and PostgreSQL both accept) and run it in any [`Transaction`], whether sqlx
//! carries it or the read-model writer's own SQLite connection does.
//!
//! [`Transaction`]: crate::Transaction

use serde::Serialize;

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
    /// A `TEXT`. A `REAL` read back from SQLite (an integer sum that overflowed) comes back
    /// as its text, so that it is never taken for an integer.
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

    /// A column SQLite returned, as a value (a `BLOB`, which no read model writes, fails).
    pub(crate) fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        Ok(match value {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(integer) => SqlValue::Integer(integer),
            ValueRef::Real(real) => SqlValue::Text(real.to_string()),
            ValueRef::Text(text) => SqlValue::Text(
                std::str::from_utf8(text)
                    .map_err(|error| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(error),
                        )
                    })?
                    .to_owned(),
            ),
            ValueRef::Blob(_) => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Blob,
                    Box::new(FromSqlError::InvalidType),
                ));
            }
        })
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            SqlValue::Null | SqlValue::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Integer(integer) => ToSqlOutput::Borrowed(ValueRef::Integer(*integer)),
            SqlValue::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
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

/// Binds `values` to a sqlx query, each with its column's type.
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
pub(crate) use bind_values;

/// sqlx rows as values: each column as an integer if it is one, else as text, or `NULL`.
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
                        // PostgreSQL's INTEGER (a literal, a count of a small type) is 32 bits.
                        if let Ok(integer) = row.try_get::<Option<i32>, _>(index) {
                            return Ok(SqlValue::from(integer.map(i64::from)));
                        }
                        row.try_get::<Option<String>, _>(index)
                            .map(|text| text.map_or(SqlValue::Null, SqlValue::Text))
                    })
                    .collect::<Result<Vec<SqlValue>, sqlx::Error>>()
            })
            .collect::<Result<Vec<Vec<SqlValue>>, sqlx::Error>>()
    }};
}
pub(crate) use decode_rows;
