//! What goes into the journal and what comes out of it.

/// An event to append: bytes with their name, schema version, tags and valid time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Stable event name, e.g. `account.deposited`.
    pub name: String,
    /// Schema version of the payload's type.
    pub schema_version: u16,
    /// The encoded event (see [`crate::codec`]).
    pub payload: Vec<u8>,
    /// Tags for filtered global reads (e.g. `market:BTC-USD`); no commas.
    pub tags: Vec<String>,
    /// Valid time in microseconds since the epoch; `None` means "when recorded".
    pub effective_at: Option<i64>,
}

/// A writer's claim to write a stream: the fence (e.g. the shard) and its owner epoch. The
/// journal refuses appends whose epoch is older than the latest recorded for the fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The fence key, e.g. `shard-17`.
    pub key: String,
    /// The owner's epoch: higher is newer.
    pub epoch: u64,
}

/// One append: events for one stream, after the sequence the writer last saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// The stream (persistence id), e.g. `account|alice`.
    pub stream: String,
    /// The kind of entity, for filtered global reads, e.g. `account`.
    pub kind: String,
    /// The last sequence the writer saw; 0 for a new stream.
    pub expected_sequence: u64,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
    /// The writer's fence, if it writes under one.
    pub fence: Option<Fence>,
}

/// What an acknowledged append became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Sequence of the first event appended.
    pub first_sequence: u64,
    /// Sequence of the last event appended: the stream's new head.
    pub last_sequence: u64,
    /// Global offset of the first event appended.
    pub first_offset: u64,
    /// Transaction time stamped on every event of the append.
    pub recorded_at: i64,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the global log, from 1, without gaps.
    pub global_offset: u64,
    /// The stream.
    pub stream: String,
    /// The kind of entity.
    pub kind: String,
    /// Position in the stream, from 1, without gaps.
    pub sequence: u64,
    /// Event name.
    pub name: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// Encoded event.
    pub payload: Vec<u8>,
    /// Tags.
    pub tags: Vec<String>,
    /// Transaction time (set by the journal), microseconds since the epoch.
    pub recorded_at: i64,
    /// Valid time, microseconds since the epoch.
    pub effective_at: i64,
    /// The payload decoded, once, by the first consumer that asked (see
    /// [`crate::EventCodec::decode_shared`]); empty when read or built.
    pub decoded: Decoded,
}

/// The decoded form of a [`StoredEvent`], shared by every consumer of the same event.
///
/// The log bus hands one `Arc<StoredEvent>` to every subscriber (the book feed, each read
/// model, the risk monitor, the rules, the streams), and each of them decodes the events it
/// handles: without this, an event was decoded once per consumer. It is a cache, not part of
/// the event: it compares equal whatever it holds, and a clone takes what is there.
#[derive(Clone, Default)]
pub struct Decoded(std::sync::OnceLock<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl Decoded {
    /// The decoded value, if some consumer decoded it as a `T`.
    pub(crate) fn get<T: std::any::Any + Send + Sync>(&self) -> Option<std::sync::Arc<T>> {
        self.0.get()?.clone().downcast::<T>().ok()
    }

    /// Keeps `value` (unless another consumer decoded it meanwhile: the same value).
    pub(crate) fn set<T: std::any::Any + Send + Sync>(&self, value: std::sync::Arc<T>) {
        let _ = self.0.set(value);
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "decoded"
        } else {
            "not decoded"
        };
        formatter.write_str(state)
    }
}

/// A cache: every two compare equal.
impl PartialEq for Decoded {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Decoded {}

/// Which events a global read returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    /// Every event.
    #[default]
    All,
    /// Events carrying this tag.
    Tag(String),
    /// Events of streams of this kind.
    Kind(String),
}

impl Filter {
    /// Whether a global read with this filter returns `event`: the same test the backends'
    /// `read_all` makes in SQL (byte-wise equality of the kind, or of one of the tags), for
    /// consumers that filter events from the log bus in memory.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        match self {
            Filter::All => true,
            Filter::Tag(tag) => event.tags.iter().any(|candidate| candidate == tag),
            Filter::Kind(kind) => event.kind == *kind,
        }
    }
}

/// One committed batch of the global log as the journal's writer publishes it on the log bus
/// (see [`crate::Journal::subscribe`]): every event the batch committed, unfiltered, in offset
/// order, each as [`crate::Journal::read_all`] returns it. Offsets within a batch are
/// contiguous; built once and shared by every subscriber, each event too (a subscriber that
/// keeps some of a batch's events shares them rather than copying their payloads and names).
pub type LogBatch = std::sync::Arc<[std::sync::Arc<StoredEvent>]>;

/// The latest snapshot of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream.
    pub stream: String,
    /// The sequence of the last event the snapshot includes.
    pub sequence: u64,
    /// Name of the snapshot's type.
    pub name: String,
    /// Schema version of the snapshot's type.
    pub schema_version: u16,
    /// The encoded state.
    pub payload: Vec<u8>,
    /// When it was saved.
    pub recorded_at: i64,
}

/// The separator of tags in storage, refused inside a tag.
pub(crate) const TAG_SEPARATOR: char = ',';
