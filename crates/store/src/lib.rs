//! corral-store: the control plane's durable state.
//!
//! Owns one trait shaped like etcd's v3 API ([`Store`]): keys and opaque values, one global
//! revision that every change advances (the API's `resourceVersion`), range reads at a
//! revision, create-if-absent, update and delete guarded by the revision a key was last
//! modified at, watches that replay from any revision still held, compaction (a watch or read
//! from before it is [`StoreError::Compacted`], the API's 410 Gone), and leases whose keys go
//! when their time runs out. The embedded implementation is [`redb::RedbStore`]; the etcd one
//! (the cluster issue) implements the same trait unchanged.
//!
//! Does not own what the values mean: the API server's objects are opaque bytes here, but
//! for the key layout and `resourceVersion` ([`registry`]) and the times, uids and
//! conditions every writer of objects stamps them with ([`meta`]).

#![warn(missing_docs)]

pub mod meta;
pub mod redb;
pub mod registry;

use async_trait::async_trait;

/// A store revision: the number of the change that made it. 0 is "none yet".
pub type Revision = i64;

/// A lease id; 0 is "no lease".
pub type LeaseId = i64;

/// One key and its value as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (opaque bytes; JSON for the API server).
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the key's last change.
    pub mod_revision: Revision,
    /// The lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// What a watch sees: one change, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was created or changed. `prev` is the value before, if there was one.
    Put {
        /// The key as it is after the change (its `mod_revision` is the event's revision).
        kv: KeyValue,
        /// The key before the change; `None` when this put created it.
        prev: Option<KeyValue>,
    },
    /// A key was deleted (directly, or because its lease ran out).
    Delete {
        /// The key as it was just before the deletion.
        prev: KeyValue,
        /// The revision of the deletion.
        revision: Revision,
    },
}

impl Event {
    /// The revision the event happened at.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key it is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A range read: keys under a prefix, in key order.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    /// Keys that start with this (an exact key is a prefix of itself; use [`Store::get`] for one key).
    pub prefix: String,
    /// Only keys strictly greater than this (the continue token of a paged list).
    pub start_after: Option<String>,
    /// At most this many keys; 0 for all.
    pub limit: usize,
    /// Read as of this revision; 0 for the newest. Older than the compacted revision is
    /// [`StoreError::Compacted`]; newer than the current one is [`StoreError::FutureRevision`].
    pub revision: Revision,
}

/// What a range read returns.
#[derive(Debug, Clone, Default)]
pub struct RangeResponse {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys match beyond `limit`.
    pub more: bool,
    /// How many keys match beyond those returned (`remainingItemCount`).
    pub remaining: usize,
    /// The revision the read was served at.
    pub revision: Revision,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Create of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// Update or delete of a key that does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// Update or delete guarded by a revision the key no longer has.
    #[error("key {key} was modified at revision {actual}, not {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current mod revision.
        actual: Revision,
    },
    /// A read or watch from a revision that compaction has dropped.
    #[error("revision {requested} has been compacted (oldest held: {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The newest compacted revision: everything at or before it is gone.
        compacted: Revision,
    },
    /// A read at a revision that does not exist yet.
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// No such lease.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The backend failed (I/O, corruption, a lost connection).
    #[error("store backend: {0}")]
    Backend(String),
}

/// Result of a store call.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A live watch: events in revision order, none missed, none twice.
pub struct Watch {
    /// The events. The channel closes when the store drops the watch (it fell too far behind,
    /// or the store is closing); the watcher then starts again from its last revision.
    pub events: tokio::sync::mpsc::Receiver<Event>,
}

/// The control plane's state, shaped like etcd's v3 API.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current revision.
    async fn revision(&self) -> Result<Revision>;

    /// One key at the newest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix (see [`RangeRequest`]).
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Makes `key` if it is absent: [`StoreError::AlreadyExists`] otherwise. Returns the
    /// revision of the change.
    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Revision>;

    /// Replaces `key`'s value if its mod revision is still `expected` (0: whatever it is).
    /// [`StoreError::NotFound`] if absent, [`StoreError::Conflict`] if changed since.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision>;

    /// Deletes `key` if its mod revision is still `expected` (0: whatever it is). Returns
    /// the revision of the deletion and the value deleted.
    async fn delete(&self, key: &str, expected: Revision) -> Result<(Revision, KeyValue)>;

    /// Watches keys under `prefix`, starting with the events after revision `after` (0: only
    /// new events). [`StoreError::Compacted`] if `after` is older than the oldest held.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch>;

    /// Drops history at and before `revision` (keys' current values stay).
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest compacted revision (0: nothing compacted).
    async fn compacted(&self) -> Result<Revision>;

    /// Grants a lease of `ttl` seconds.
    async fn lease_grant(&self, ttl: i64) -> Result<LeaseId>;

    /// Renews a lease for its ttl again.
    async fn lease_keepalive(&self, id: LeaseId) -> Result<()>;

    /// Ends a lease now, deleting its keys.
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;
}
