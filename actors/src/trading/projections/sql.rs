//! One SQL statement on either backend: the read models' only way to the database.
//!
//! Read models bind and read three kinds of values (`BIGINT`, `TEXT`, `NULL`: a
//! [`SqlValue`]), so every statement can be written once, with `$1`-style placeholders, which
//! SQLite and PostgreSQL both accept. Generated multi-row inserts are the exception: on
//! SQLite they use anonymous `?` placeholders (see [`insert_rows`]).

use tradefloor_persistence::{Error, Transaction};

pub use tradefloor_persistence::SqlValue;

/// Rows one multi-row `INSERT` carries at most: with a read model's handful of columns the
/// placeholders stay far below SQLite's (32 766) and PostgreSQL's (65 535) limits.
pub(crate) const INSERT_ROWS_MAX: usize = 256;

/// Inserts `rows` (each as many values as `columns` names) into `table`, up to
/// [`INSERT_ROWS_MAX`] rows per statement: a few statements for a batch rather than one per
/// row. `tail` follows the `VALUES` list of every statement (an `ON CONFLICT` clause or
/// nothing). Rows of one statement must not share a conflict key (PostgreSQL refuses to
/// update one row twice in one statement): merge them first.
pub(crate) async fn insert_rows(
    transaction: &mut Transaction,
    table: &str,
    columns: &[&str],
    rows: &[Vec<SqlValue>],
    tail: &str,
) -> Result<(), Error> {
    for (sql, values) in statements(transaction, table, columns, rows, tail) {
        transaction.execute(&sql, &values).await?;
    }
    Ok(())
}

/// [`insert_rows`] with a `RETURNING` list in `tail`: the rows returned by every statement,
/// in order.
pub(crate) async fn write_rows(
    transaction: &mut Transaction,
    table: &str,
    columns: &[&str],
    rows: &[Vec<SqlValue>],
    tail: &str,
) -> Result<Vec<Vec<SqlValue>>, Error> {
    let mut returned = Vec::new();
    for (sql, values) in statements(transaction, table, columns, rows, tail) {
        returned.extend(transaction.fetch(&sql, &values).await?);
    }
    Ok(returned)
}

/// The multi-row `INSERT` statements of [`insert_rows`], with their values.
fn statements(
    transaction: &Transaction,
    table: &str,
    columns: &[&str],
    rows: &[Vec<SqlValue>],
    tail: &str,
) -> Vec<(String, Vec<SqlValue>)> {
    assert!(!columns.is_empty(), "an insert names its columns");
    let numbered = transaction.numbered_placeholders();
    rows.chunks(INSERT_ROWS_MAX)
        .map(|chunk| {
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
            (sql, values)
        })
        .collect()
}

/// Deletes the rows of `table` whose `column` is one of `keys`, up to [`INSERT_ROWS_MAX`]
/// keys per statement, each bound (so the statement's text depends only on how many: the
/// SQLite writer keeps it prepared).
pub(crate) async fn delete_in(
    transaction: &mut Transaction,
    table: &str,
    column: &str,
    keys: &[SqlValue],
) -> Result<(), Error> {
    let numbered = transaction.numbered_placeholders();
    for chunk in keys.chunks(INSERT_ROWS_MAX) {
        let mut sql = format!("DELETE FROM {table} WHERE {column} IN ");
        push_placeholders(&mut sql, numbered, 0, chunk.len());
        transaction.execute(&sql, chunk).await?;
    }
    Ok(())
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
