//! The event codec fuzzed: a stored event whose payload is random, or a real event's bytes
//! flipped, cut or extended, under every event name of the accounts, the books and the sagas,
//! decodes to an event or to an error naming its stream and sequence; never a panic, never
//! an allocation the payload does not justify (a garbage length prefix is an error). Stored
//! at either schema version: the account's version-1 events go through its upcasters.

use proptest::prelude::*;
use tradefloor_actors::Persistent;
use tradefloor_domain::account::{Account, AccountEvent, CommandRef};
use tradefloor_domain::book::{BookEvent, OrderBook};
use tradefloor_domain::saga::{OrderSaga, SagaEvent};
use tradefloor_domain::{Amount, Asset, CommandId, Message, Timestamp};
use tradefloor_persistence::{Decoded, Error, StoredEvent};

fn stored(name: &str, schema_version: u16, payload: Vec<u8>) -> StoredEvent {
    StoredEvent {
        global_offset: 7,
        stream: "fuzzed|stream".to_owned(),
        kind: "fuzzed".to_owned(),
        sequence: 42,
        name: name.to_owned(),
        schema_version,
        payload,
        tags: Vec::new(),
        recorded_at: 0,
        effective_at: 0,
        decoded: Decoded::default(),
    }
}

/// A real event's payload, for corruptions that get past the first bytes.
fn deposited() -> Vec<u8> {
    let event = AccountEvent::Deposited {
        command: CommandRef {
            id: CommandId::new("deposit-1").expect("a valid id"),
            fingerprint: 0x0123_4567_89ab_cdef,
        },
        asset: Asset::new("USD").expect("a valid asset"),
        amount: Amount(1_000),
        effective_at: Timestamp(1_700_000_000_000_000),
        at: Timestamp(1_700_000_000_000_000),
    };
    <Account as Persistent>::codec()
        .to_new_event(&event, Vec::new(), None)
        .expect("encodes")
        .payload
}

/// Decodes `payload` as `name` with each aggregate's codec that knows the name; an error
/// must name the stream and sequence.
fn decode_everywhere(name: &str, payload: &[u8]) {
    let outcomes = [1, 2].into_iter().flat_map(|version| {
        let event = stored(name, version, payload.to_vec());
        [
            <Account as Persistent>::codec().decode(&event).map(drop),
            <OrderBook as Persistent>::codec().decode(&event).map(drop),
            <OrderSaga as Persistent>::codec().decode(&event).map(drop),
        ]
    });
    for outcome in outcomes {
        match outcome {
            Ok(()) => {}
            Err(Error::Decode {
                stream, sequence, ..
            })
            | Err(Error::UnknownEvent {
                stream, sequence, ..
            }) => {
                assert_eq!((stream.as_str(), sequence), ("fuzzed|stream", 42));
            }
            Err(other) => panic!("{name}: an error that names no event: {other:?}"),
        }
    }
}

fn names() -> Vec<&'static str> {
    [AccountEvent::NAMES, BookEvent::NAMES, SagaEvent::NAMES].concat()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_payloads_decode_or_fail_naming_the_event(
        name in prop::sample::select(names()),
        payload in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        decode_everywhere(name, &payload);
    }

    #[test]
    fn corrupted_events_decode_or_fail_naming_the_event(
        name in prop::sample::select(names()),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        let mut payload = deposited();
        for (at, byte) in flips {
            let index = at.index(payload.len());
            payload[index] = byte;
        }
        payload.truncate(cut.index(payload.len() + 1));
        payload.extend(extra);
        decode_everywhere(name, &payload);
    }
}

#[test]
fn a_huge_length_prefix_is_an_error_not_an_allocation() {
    // bincode's varint: 0xFD then a u64. Every name, with a length of 2^62 in front.
    let mut payload = vec![0_u8, 0xFD];
    payload.extend((1_u64 << 62).to_le_bytes());
    for name in names() {
        decode_everywhere(name, &payload);
        decode_everywhere(name, &payload[1..]);
    }
}

/// A saga's refusal keeps its error by name: the stored bytes name it, and it reads back.
#[test]
fn a_refusal_stores_its_error_by_name() {
    let reason = tradefloor_domain::Error::InsufficientFunds {
        asset: Asset::new("USD").expect("a valid asset"),
        available: Amount(7),
        required: Amount(100),
    };
    let event = SagaEvent::HoldRefused {
        reason,
        at: Timestamp(1_700_000_000_000_000),
    };
    let codec = <OrderSaga as Persistent>::codec();
    let new = codec
        .to_new_event(&event, Vec::new(), None)
        .expect("encodes");
    assert_eq!(new.schema_version, 2);
    let text = String::from_utf8_lossy(&new.payload);
    assert!(text.contains("\"insufficient_funds\""), "{text}");
    let mut stored = stored("saga.hold_refused", 2, new.payload);
    stored.kind = "order_saga".to_owned();
    assert_eq!(codec.decode(&stored).expect("decodes"), event);
}

/// Decoded once: every consumer of one event from the log bus (the same `Arc<StoredEvent>`)
/// shares the value the first one decoded; a payload that does not decode is refused every
/// time and leaves nothing behind; a codec of another type still refuses the event.
#[test]
fn an_event_is_decoded_once_for_all_its_consumers() {
    let codec = <Account as Persistent>::codec();
    let version = AccountEvent::SCHEMA_VERSION;
    let event = std::sync::Arc::new(stored("account.deposited", version, deposited()));
    let for_the_feed = std::sync::Arc::clone(&event);
    let first = codec.decode_shared(&event).expect("decodes");
    let second = codec.decode_shared(&for_the_feed).expect("decodes");
    assert!(std::sync::Arc::ptr_eq(&first, &second), "decoded twice");
    assert_eq!(*first, codec.decode(&event).expect("decodes"));
    assert_eq!(format!("{:?}", event.decoded), "decoded");
    assert!(
        <OrderBook as Persistent>::codec()
            .decode_shared(&event)
            .is_err(),
        "a book's codec took an account's event"
    );

    let mut cut = deposited();
    cut.truncate(cut.len() / 2);
    let broken = stored("account.deposited", version, cut);
    for _ in 0..2 {
        assert!(matches!(
            codec.decode_shared(&broken),
            Err(Error::Decode { .. })
        ));
    }
    assert_eq!(format!("{:?}", broken.decoded), "not decoded");
}
