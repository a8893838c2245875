//! The one codec: values to bytes with bincode 2 and back, plus the event envelope (name and
//! schema version) and upcasting of older versions.
//!
//! Everything that turns a value into stored bytes goes through [`encode`] and [`decode`], so
//! replacing bincode with a compatible successor is a change to this file only.
//!
//! bincode encodes enum variants by index, so reordering or inserting variants silently
//! changes meaning. [`EventCodec::decode`] therefore checks that the decoded value's name is
//! the stored name, and refuses names it does not know, naming the stream and sequence.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::record::{NewEvent, StoredEvent};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value to bytes.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|error| error.to_string())
}

/// Decodes bytes produced by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|error| error.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// Turns the bytes of an older schema version into the current type.
pub type Upcaster<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// Encodes and decodes the events of one type `T`, which has a current schema version, a set
/// of known event names, and upcasters for older versions.
pub struct EventCodec<T> {
    schema_version: u16,
    name_of: fn(&T) -> &'static str,
    known_names: &'static [&'static str],
    upcasters: HashMap<(String, u16), Upcaster<T>>,
}

impl<T: Serialize + DeserializeOwned> EventCodec<T> {
    /// A codec for `T` at `schema_version`, whose variants are named by `name_of` and whose
    /// names are all in `known_names`.
    pub fn new(
        schema_version: u16,
        name_of: fn(&T) -> &'static str,
        known_names: &'static [&'static str],
    ) -> Self {
        Self {
            schema_version,
            name_of,
            known_names,
            upcasters: HashMap::new(),
        }
    }

    /// Registers how to read event `name` stored at an older `version`.
    pub fn with_upcaster(
        mut self,
        name: &str,
        version: u16,
        upcaster: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        assert!(
            version < self.schema_version,
            "upcasters read older versions only"
        );
        self.upcasters
            .insert((name.to_owned(), version), Box::new(upcaster));
        self
    }

    /// Wraps an event for appending.
    pub fn to_new_event(
        &self,
        event: &T,
        tags: Vec<String>,
        effective_at: Option<i64>,
    ) -> Result<NewEvent, Error> {
        let name = (self.name_of)(event);
        let payload = encode(event).map_err(|reason| Error::Encode {
            what: name.to_owned(),
            reason,
        })?;
        Ok(NewEvent {
            name: name.to_owned(),
            schema_version: self.schema_version,
            payload,
            tags,
            effective_at,
        })
    }

    /// Reads a stored event back, upcasting older versions. Errors name the stream and
    /// sequence; nothing here panics on bad bytes.
    pub fn decode(&self, stored: &StoredEvent) -> Result<T, Error> {
        let unknown = || Error::UnknownEvent {
            stream: stored.stream.clone(),
            sequence: stored.sequence,
            name: stored.name.clone(),
            version: stored.schema_version,
        };
        if !self.known_names.contains(&stored.name.as_str()) {
            return Err(unknown());
        }
        let decoded = if stored.schema_version == self.schema_version {
            decode::<T>(&stored.payload)
        } else {
            let key = (stored.name.clone(), stored.schema_version);
            let upcaster = self.upcasters.get(&key).ok_or_else(unknown)?;
            upcaster(&stored.payload)
        };
        let event = decoded.map_err(|reason| self.decode_error(stored, reason))?;
        let name = (self.name_of)(&event);
        if name != stored.name {
            return Err(self.decode_error(
                stored,
                format!("the payload decodes as {name}, not as the stored name"),
            ));
        }
        Ok(event)
    }

    fn decode_error(&self, stored: &StoredEvent, reason: String) -> Error {
        Error::Decode {
            stream: stored.stream.clone(),
            sequence: stored.sequence,
            name: stored.name.clone(),
            version: stored.schema_version,
            reason,
        }
    }
}
