//! One SQL statement on either backend: the read models' only way to the database.
//!
//! Read models bind and read three kinds of values (`BIGINT`, `TEXT`, `NULL`: a
//! [`SqlValue`]), so every statement can be written once, with `$1`-style placeholders, which
//! SQLite and PostgreSQL both accept. Generated multi-row inserts are the exception: on
//! SQLite they use anonymous `?` placeholders (see [`insert_rows`]).

use tradefloor_persistence::{Error, Transaction};

pub use tradefloor_persistence::SqlValue;

/// Rows one multi-row `INSERT` carries at most: with a read model's handful of columns the
/// placeholders stay far below SQLite's (32 766) and PostgreSQL's (65 535) limits. A power
/// of two (see [`chunks`]).
pub(crate) const INSERT_ROWS_MAX: usize = 256;

/// `items` cut into chunks whose lengths are powers of two, largest first, at most
/// [`INSERT_ROWS_MAX`]: a statement's text depends on its row count, and statements are
/// prepared once and kept, so a few sizes (at most nine per statement, and nine statements
/// per batch of up to 511) keep every one prepared, where a statement per batch size would
/// be parsed again and again.
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    const { assert!(INSERT_ROWS_MAX.is_power_of_two()) };
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = 1 << items.len().min(INSERT_ROWS_MAX).ilog2();
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// Inserts `rows` (each as many values as `columns` names) into `table`, up to
/// [`INSERT_ROWS_MAX`] rows per statement (in [`chunks`]): a few statements for a batch rather
/// than one per row. `tail` follows the `VALUES` list of every statement (an `ON CONFLICT` clause or
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
    chunks(rows)
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

/// Deletes the rows of `table` whose `column` is one of `keys`, in [`chunks`] of keys, each
/// bound (so the statement's text depends only on how many: the SQLite writer keeps it
/// prepared).
pub(crate) async fn delete_in(
    transaction: &mut Transaction,
    table: &str,
    column: &str,
    keys: &[SqlValue],
) -> Result<(), Error> {
    let numbered = transaction.numbered_placeholders();
    for chunk in chunks(keys) {
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
    use super::{INSERT_ROWS_MAX, chunks, push_placeholders};

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let sizes = |count: usize| {
            let items = vec![0_u8; count];
            chunks(&items).map(<[u8]>::len).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(7), vec![4, 2, 1]);
        assert_eq!(sizes(64), vec![64]);
        assert_eq!(
            sizes(2 * INSERT_ROWS_MAX + 3),
            vec![INSERT_ROWS_MAX, INSERT_ROWS_MAX, 2, 1]
        );
        for count in 0..1_000 {
            let sizes = sizes(count);
            assert_eq!(sizes.iter().sum::<usize>(), count);
            assert!(
                sizes
                    .iter()
                    .all(|size| size.is_power_of_two() && *size <= INSERT_ROWS_MAX)
            );
            assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]));
        }
    }

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
