//! The one codec: values to bytes with bincode 2 and back, plus the event envelope (name and
//! schema version) and upcasting of older versions.
//!
//! Everything that turns a value into stored bytes goes through [`encode`] and [`decode`], so
//! replacing bincode with a compatible successor is a change to this file only.
//!
//! bincode encodes enum variants by index, so reordering or inserting variants silently
//! changes meaning. [`EventCodec::decode`] therefore checks that the decoded value's name is
//! the stored name, and refuses names it does not know, naming the stream and sequence.

use std::sync::Arc;

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

/// Decodes bytes produced by [`encode`]; trailing bytes are an error, and so is a value that
/// would claim more memory than [`DECODE_CLAIM_PER_BYTE`] times the bytes read: a value claims
/// memory for its containers as their lengths are read, so a corrupted length prefix (in a
/// damaged row, say) is an error here rather than an allocation that aborts the process.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // The limit is a type parameter of bincode's configuration: one of a few tiers, each at
    // least DECODE_CLAIM_PER_BYTE times the largest input it serves.
    match bytes.len() {
        0..=0x4000 => decode_within::<T, 0x10_0000>(bytes),
        0x4001..=0x4_0000 => decode_within::<T, 0x100_0000>(bytes),
        0x4_0001..=0x40_0000 => decode_within::<T, 0x1000_0000>(bytes),
        0x40_0001..=0x400_0000 => decode_within::<T, 0x1_0000_0000>(bytes),
        _ => decode_within::<T, 0x40_0000_0000>(bytes),
    }
}

/// Memory a decoded value may claim per byte of its encoding, at most: far above what any
/// value needs (a varint-encoded zero is one byte for eight in memory).
pub const DECODE_CLAIM_PER_BYTE: usize = 64;

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
    let config = config().with_limit::<LIMIT>();
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|error| error.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// The most bytes a frame may hold: a message between nodes (a remote call, its body, its
/// answer). Decoding a frame also claims at most this many bytes of memory for its
/// containers, so a garbage length prefix is an error, never a huge allocation.
pub const FRAME_LIMIT: usize = 16 * 1024 * 1024;

fn frame_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<FRAME_LIMIT>,
> {
    config().with_limit::<FRAME_LIMIT>()
}

/// Encodes a frame as [`encode`] does; a frame larger than [`FRAME_LIMIT`] is an error.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let bytes = encode(value)?;
    if bytes.len() > FRAME_LIMIT {
        return Err(format!(
            "a frame of {} bytes exceeds the limit of {FRAME_LIMIT}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Decodes a frame produced by [`encode_frame`] (or [`encode`]), within [`FRAME_LIMIT`];
/// trailing bytes are an error. Bad bytes are an error, never a panic.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > FRAME_LIMIT {
        return Err(format!(
            "a frame of {} bytes exceeds the limit of {FRAME_LIMIT}",
            bytes.len()
        ));
    }
    let (value, read) = bincode::serde::decode_from_slice(bytes, frame_config())
        .map_err(|error| error.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// How to read one event name stored at an older schema version: a plain function, so a
/// type's upcasters are a `static` table and building a codec allocates nothing.
pub struct Upcaster<T: 'static> {
    /// The stored name.
    pub name: &'static str,
    /// The stored schema version, older than the codec's.
    pub version: u16,
    /// Reads the stored bytes as the current type.
    pub read: fn(&[u8]) -> Result<T, String>,
}

/// Decodes the fields of the enum variant at `index`, stored by [`encode`] as part of an
/// enum, as the struct `V` with the same fields in the same order: bincode stores a variant
/// as its index, then its fields as it stores a struct's. For upcasters of one variant whose
/// shape changed, so the whole older enum need not be kept.
pub fn decode_variant<V: DeserializeOwned>(bytes: &[u8], index: u32) -> Result<V, String> {
    let (stored, read) = bincode::serde::decode_from_slice::<u32, _>(bytes, config())
        .map_err(|error| error.to_string())?;
    if stored != index {
        return Err(format!(
            "variant {stored} stored where {index} was expected"
        ));
    }
    decode(&bytes[read..])
}

/// Bytes as lowercase hex (stored secrets, dead letters' and archived events' payloads in
/// text columns and JSON).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Hex (either case) back to bytes; `None` for anything else (odd length, a sign, a
/// non-hex character).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| {
        char::from(byte)
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Encodes and decodes the events of one type `T`, which has a current schema version, a set
/// of known event names, and upcasters for older versions.
pub struct EventCodec<T: 'static> {
    schema_version: u16,
    name_of: fn(&T) -> &'static str,
    known_names: &'static [&'static str],
    upcasters: &'static [Upcaster<T>],
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
            upcasters: &[],
        }
    }

    /// Registers how to read events stored at older versions.
    pub fn with_upcasters(mut self, upcasters: &'static [Upcaster<T>]) -> Self {
        assert!(
            upcasters
                .iter()
                .all(|upcaster| upcaster.version < self.schema_version),
            "upcasters read older versions only"
        );
        self.upcasters = upcasters;
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
            let upcaster = self
                .upcasters
                .iter()
                .find(|upcaster| {
                    upcaster.name == stored.name && upcaster.version == stored.schema_version
                })
                .ok_or_else(unknown)?;
            (upcaster.read)(&stored.payload)
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

    /// [`decode`](Self::decode), done once per event: the first call keeps the value in the
    /// event ([`StoredEvent::decoded`]) and later calls (other consumers of the same event
    /// from the log bus) share it.
    pub fn decode_shared(&self, stored: &StoredEvent) -> Result<Arc<T>, Error>
    where
        T: Send + Sync,
    {
        if let Some(event) = stored.decoded.get::<T>() {
            return Ok(event);
        }
        let event = Arc::new(self.decode(stored)?);
        stored.decoded.set(Arc::clone(&event));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("ABcd"), Some(vec![0xab, 0xcd]));
        for bad in ["abc", "zz", "+f", "-1", "é0"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_frame_round_trips_like_any_value() {
        let value = ("call".to_owned(), vec![1_u8, 2, 3], 7_u64);
        let frame = encode_frame(&value).unwrap();
        assert_eq!(frame, encode(&value).unwrap(), "the same bytes as encode");
        assert_eq!(
            decode_frame::<(String, Vec<u8>, u64)>(&frame).unwrap(),
            value
        );
    }

    #[test]
    fn a_garbage_frame_is_an_error_not_an_allocation() {
        // A varint length prefix of u64::MAX, then nothing: a String or Vec<u8> decoded
        // without the limit would first allocate that much.
        let mut huge = vec![253_u8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_frame::<String>(&huge).is_err());
        assert!(decode_frame::<Vec<u8>>(&huge).is_err());
        // Just past the limit, with the bytes there.
        let mut over = vec![252_u8];
        over.extend_from_slice(&u32::try_from(FRAME_LIMIT + 1).unwrap().to_le_bytes());
        assert!(decode_frame::<Vec<u8>>(&over).is_err());
        for garbage in [&[][..], &[255; 64][..], &[0, 1, 2, 3][..]] {
            let _ = decode_frame::<(String, Vec<u8>, u64)>(garbage);
        }
        assert!(decode_frame::<u8>(&[1, 2]).is_err(), "trailing bytes");
    }

    #[test]
    fn a_variant_decodes_as_the_struct_of_its_fields() {
        #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
        enum Stored {
            First(u8),
            Second { amount: u64, label: String },
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct SecondFields {
            amount: u64,
            label: String,
        }
        let bytes = encode(&Stored::Second {
            amount: 7,
            label: "seven".to_owned(),
        })
        .unwrap();
        let fields: SecondFields = decode_variant(&bytes, 1).unwrap();
        assert_eq!(fields.amount, 7);
        assert_eq!(fields.label, "seven");
        let error = decode_variant::<SecondFields>(&bytes, 0).unwrap_err();
        assert!(error.contains("variant 1"), "{error}");
        assert!(decode_variant::<SecondFields>(&encode(&Stored::First(3)).unwrap(), 1).is_err());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused() {
        let big = vec![0_u8; FRAME_LIMIT];
        assert!(encode_frame(&big).is_err());
        assert!(decode_frame::<Vec<u8>>(&encode(&big).unwrap()).is_err());
    }
}
