//! Secrets of the venue kept in its journal: made once, at random, by whichever node asks
//! first, and the same for every node of the journal for the journal's life (the key of the
//! order ids derived from clients' ids, say: another key would map a retried id to a new order).

use crate::database::Database;
use crate::error::Error;
use crate::sql_value::SqlValue;

/// The bytes of a secret.
pub const SECRET_BYTES: usize = 32;

/// The secret named `name`, made now if the journal has none yet. Two nodes asking at once
/// both get the one that was stored first.
pub async fn venue_secret(database: &Database, name: &str) -> Result<[u8; SECRET_BYTES], Error> {
    let mut fresh = [0_u8; SECRET_BYTES];
    getrandom::fill(&mut fresh)
        .map_err(|error| Error::InvalidRequest(format!("no randomness for a secret: {error}")))?;
    let name_value = SqlValue::Text(name.to_owned());
    database
        .fetch(
            "INSERT INTO venue_secrets (name, secret) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
            &[
                name_value.clone(),
                SqlValue::Text(crate::codec::to_hex(&fresh)),
            ],
        )
        .await?;
    let rows = database
        .fetch(
            "SELECT secret FROM venue_secrets WHERE name = $1",
            &[name_value],
        )
        .await?;
    let stored = rows
        .first()
        .and_then(|row| row.first())
        .and_then(SqlValue::text)
        .ok_or_else(|| Error::InvalidRequest(format!("secret {name} missing after insert")))?;
    unhex(stored).ok_or_else(|| Error::InvalidRequest(format!("secret {name} is not 32 hex bytes")))
}

fn unhex(text: &str) -> Option<[u8; SECRET_BYTES]> {
    crate::codec::from_hex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_bad_text() {
        let bytes: [u8; SECRET_BYTES] = std::array::from_fn(|index| index as u8 * 7);
        assert_eq!(unhex(&crate::codec::to_hex(&bytes)), Some(bytes));
        assert_eq!(unhex("00"), None);
        assert_eq!(unhex(&"zz".repeat(SECRET_BYTES)), None);
    }
}
