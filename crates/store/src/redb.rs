//! The embedded store on redb: etcd v3's model in one process and one file.
//!
//! # Tables
//! - `keys`: key → its current row (create revision, mod revision, lease, value).
//! - `log`: revision → the one event that made it: a put (the key after, and before if it
//!   existed) or a delete (the key before). Every revision from `compacted + 1` to `revision`
//!   has its row; compaction drops the older ones.
//! - `meta`: `revision` (the newest), `compacted` (the newest dropped from `log`, 0 for none),
//!   `next_lease` (lease ids count up and are never reused).
//! - `leases`: lease id → ttl in seconds; `lease_keys` (multimap): lease id → its keys, so a
//!   revoke finds them without a scan.
//!
//! Lease deadlines live in memory only. After a restart every lease gets its full ttl again
//! from the moment of [`RedbStore::open`] (etcd does the same), so a restarted control plane
//! does not reap every lease at once, and a keepalive is not a disk write.
//!
//! # Crash safety
//! Every change is one redb write transaction that writes the key's row, the log row of its
//! revision and `meta.revision` together (`write::Changes` is the only code that writes them),
//! committed with [`Durability::Immediate`] (fsync before `commit` returns). redb is
//! copy-on-write: a commit writes new pages, then switches the checksummed root in the file's
//! header; a kill at any moment leaves the old root or the new one, so on reopen `keys`,
//! `log` and `meta` agree and the log has no hole. Writers are serialized by one mutex.
//!
//! # Watches
//! See `redb/watch.rs`: commits publish their events while still holding the writer mutex, and a
//! watch subscribes and opens its replay snapshot under that mutex, so it sees every revision
//! after `after` once, in order.
//!
//! # Background tasks
//! [`RedbStore::open`] called inside a tokio runtime starts the lease reaper (every
//! [`LEASE_REAP_EVERY`]); outside one, call [`RedbStore::spawn_lease_reaper`] from inside one.
//! Compaction is the caller's policy: [`RedbStore::spawn_compactor`]. Both tasks hold the
//! store weakly and end once it is dropped.
//!
//! # Limits
//! - One process: redb locks the file.
//! - redb's calls block, so every call runs on tokio's blocking pool.
//! - A read at an old revision undoes the log back from the newest: O(keys under the prefix +
//!   revisions since). A watch's replay is read into memory before it is sent.
//! - A lease revoke deletes its keys one revision each (in key order), in one transaction.

mod codec;
mod read;
mod watch;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ::redb::{
    Database, Durability, MultimapTableDefinition, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition,
};
use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::{
    Event, KeyValue, LeaseId, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    Watch,
};
use write::{Changes, LeaseChange};

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const LOG: TableDefinition<Revision, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<LeaseId, i64> = TableDefinition::new("leases");
const LEASE_KEYS: MultimapTableDefinition<LeaseId, &str> =
    MultimapTableDefinition::new("lease_keys");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_NEXT_LEASE: &str = "next_lease";

/// How many commits a watch's forwarder may fall behind before its watch is closed.
const BROADCAST_CAPACITY: usize = 4096;
/// The events a watcher's channel holds.
const WATCH_BUFFER: usize = 1024;

/// How often the lease reaper that [`RedbStore::open`] starts looks for expired leases.
pub const LEASE_REAP_EVERY: Duration = Duration::from_millis(500);

/// How many revisions of history to keep, for [`RedbStore::spawn_compactor`]: etcd's
/// apiserver compacts every 5 minutes; 10,000 revisions lets a watcher that lost its
/// connection for a while resume rather than relist.
pub const DEFAULT_HISTORY: i64 = 10_000;

/// The embedded [`Store`]: one redb file. See the module docs for the layout.
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Serializes write transactions and orders their events on `events`.
    writer: Mutex<()>,
    /// The newest committed revision (written under `writer`, after the commit).
    revision: AtomicI64,
    /// The newest compacted revision (likewise).
    compacted: AtomicI64,
    /// Each commit's events, sent under `writer`.
    events: broadcast::Sender<Arc<[Event]>>,
    /// The live leases and their deadlines; changed after the commit that grants or revokes.
    leases: Mutex<HashMap<LeaseId, Lease>>,
    /// Writes waiting for the next commit (group commit: whoever holds `writer` commits every
    /// write queued by then in one transaction, one fsync for all).
    queue: Mutex<Vec<Box<dyn Job>>>,
}

/// One queued write, its result type erased.
trait Job: Send {
    /// Applies the write to the transaction's changes, keeping its result.
    fn run(&mut self, changes: &mut Changes<'_>);
    /// Hands the result to the writer waiting for it (the commit's failure, if it failed).
    fn finish(self: Box<Self>, commit: Option<&StoreError>);
}

type Slot<T> = Arc<Mutex<Option<Result<T>>>>;

struct TypedJob<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    slot: Slot<T>,
}

impl<T: Send, F: FnOnce(&mut Changes<'_>) -> Result<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, changes: &mut Changes<'_>) {
        if let Some(f) = self.f.take() {
            self.out = Some(f(changes));
        }
    }

    fn finish(self: Box<Self>, commit: Option<&StoreError>) {
        let r = match (commit, self.out) {
            (Some(e), _) => Err(StoreError::Backend(e.to_string())),
            (None, Some(r)) => r,
            (None, None) => Err(StoreError::Backend("a write was not run".into())),
        };
        *lock(&self.slot) = Some(r);
    }
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
}

impl Lease {
    fn new(ttl: i64, now: Instant) -> Lease {
        let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(1));
        Lease {
            ttl,
            deadline: now + ttl,
        }
    }
}

/// redb's own cache (read cache and write buffer). 4 MiB holds the control plane's hot pages;
/// 16 MiB added 12 MiB to `corral serve`'s footprint after a load and nothing measurable to
/// its latencies (docs/benchmarks.md, issue 14).
const CACHE_BYTES: usize = 4 << 20;

impl RedbStore {
    /// Opens the store in `path`, making the file if it is missing. Inside a tokio runtime it
    /// also starts the lease reaper. Blocks while redb opens the file (after a crash, while it
    /// checks it).
    pub fn open(path: &Path) -> Result<Arc<RedbStore>> {
        // redb caches up to 1 GiB by default; the control plane's working set is far smaller,
        // and what the OS's page cache holds is there anyway.
        let db = ::redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|err| StoreError::Backend(format!("open {}: {err}", path.display())))?;
        // Make every table now, so no read meets a missing one.
        let txn = db.begin_write().redb()?;
        drop(Changes::open(&txn, 0)?);
        txn.commit().redb()?;

        let txn = db.begin_read().redb()?;
        let (revision, compacted) = read::meta(&txn)?;
        let now = Instant::now();
        let mut leases = HashMap::new();
        for row in txn.open_table(LEASES).redb()?.iter().redb()? {
            let (id, ttl) = row.redb()?;
            leases.insert(id.value(), Lease::new(ttl.value(), now));
        }
        drop(txn);
        tracing::info!(path = %path.display(), revision, compacted, leases = leases.len(), "store opened");

        let store = Arc::new(RedbStore {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::new()),
                db,
                writer: Mutex::new(()),
                revision: AtomicI64::new(revision),
                compacted: AtomicI64::new(compacted),
                events: broadcast::channel(BROADCAST_CAPACITY).0,
                leases: Mutex::new(leases),
            }),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            store.spawn_lease_reaper(LEASE_REAP_EVERY);
        }
        Ok(store)
    }

    /// Revokes expired leases every `every`, deleting their keys. [`RedbStore::open`] starts
    /// one when called inside a runtime; call this when it was not. Ends when the store is
    /// dropped.
    pub fn spawn_lease_reaper(&self, every: Duration) -> JoinHandle<()> {
        self.spawn_every(
            every,
            |inner| !inner.expired_leases().is_empty(),
            Inner::reap,
        )
    }

    /// Compacts every `every` so that the newest `keep` revisions stay (etcd's revision
    /// compaction mode); [`DEFAULT_HISTORY`] is a good `keep`. Ends when the store is dropped.
    pub fn spawn_compactor(&self, keep: i64, every: Duration) -> JoinHandle<()> {
        let target = move |inner: &Inner| inner.revision.load(Ordering::Acquire) - keep;
        self.spawn_every(
            every,
            move |inner| target(inner) > inner.compacted.load(Ordering::Acquire),
            move |inner| inner.compact(target(inner)),
        )
    }

    /// The events after revision `after` (0: from the oldest held), in revision order, as the
    /// log holds them; [`StoreError::Compacted`] if `after` is older than the oldest held. For
    /// tools and tests; watchers use [`Store::watch`].
    pub async fn history(&self, after: Revision) -> Result<Vec<Event>> {
        self.blocking(move |inner| {
            let txn = inner.snapshot()?;
            let (current, compacted) = read::meta(&txn)?;
            if after < compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                });
            }
            read::log(&txn, after, current, "")
        })
        .await
    }

    /// Runs `f` on the blocking pool: redb's calls do file I/O and may wait for the writer.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|err| StoreError::Backend(format!("store task: {err}")))?
    }

    /// Every `every`, runs `work` on the blocking pool when `due` (checked on the runtime,
    /// cheaply) says so, while the store lives.
    fn spawn_every(
        &self,
        every: Duration,
        due: impl Fn(&Inner) -> bool + Send + 'static,
        work: impl Fn(&Inner) -> Result<()> + Send + Sync + Copy + 'static,
    ) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if !due(&inner) {
                    continue;
                }
                match tokio::task::spawn_blocking(move || work(&inner)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(%err, "store background task failed"),
                    Err(err) => tracing::warn!(%err, "store background task panicked"),
                }
            }
        })
    }
}

impl Inner {
    fn snapshot(&self) -> Result<ReadTransaction> {
        self.db.begin_read().redb()
    }

    /// Runs `f` in one write transaction and commits it; then publishes its events and
    /// mirrors its lease changes, still under the writer mutex. An error from `f` aborts it.
    /// Runs `f` in a write transaction. Writes that arrive while another commits wait and
    /// are then committed together, in arrival order, each with its own revision and
    /// result, as if one after the other: one fsync for the group.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Changes<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot: Slot<T> = Arc::new(Mutex::new(None));
        lock(&self.queue).push(Box::new(TypedJob {
            f: Some(f),
            out: None,
            slot: slot.clone(),
        }));
        loop {
            let writer = lock(&self.writer);
            if let Some(r) = lock(&slot).take() {
                return r;
            }
            let jobs = std::mem::take(&mut *lock(&self.queue));
            self.commit(jobs);
            drop(writer);
            if let Some(r) = lock(&slot).take() {
                return r;
            }
        }
    }

    /// Commits `jobs` in one transaction (called with `writer` held).
    fn commit(&self, mut jobs: Vec<Box<dyn Job>>) {
        if jobs.is_empty() {
            return;
        }
        let result = self.transact(|changes| {
            for j in jobs.iter_mut() {
                j.run(changes);
            }
            Ok(())
        });
        let ((), (revision, compacted, events, lease_changes)) = match result {
            Ok(p) => p,
            Err(e) => {
                for j in jobs {
                    j.finish(Some(&e));
                }
                return;
            }
        };
        self.publish(revision, compacted, events, lease_changes);
        for j in jobs {
            j.finish(None);
        }
    }

    /// One write transaction running `f`, committed durably; what `f` returned and what the
    /// commit changed (revision, compaction, events, leases), for [`Inner::publish`].
    #[allow(clippy::type_complexity)]
    fn transact<T>(
        &self,
        f: impl FnOnce(&mut Changes<'_>) -> Result<T>,
    ) -> Result<(
        T,
        (Revision, Option<Revision>, Vec<Event>, Vec<LeaseChange>),
    )> {
        let mut txn = self.db.begin_write().redb()?;
        // redb's default, said here because the crash-safety argument rests on it.
        txn.set_durability(Durability::Immediate).redb()?;
        let (out, parts) = {
            let mut changes = Changes::open(&txn, self.revision.load(Ordering::Acquire))?;
            let out = f(&mut changes)?;
            changes.finish()?;
            let Changes {
                revision,
                compacted,
                events,
                lease_changes,
                ..
            } = changes;
            (out, (revision, compacted, events, lease_changes))
        };
        txn.commit().redb()?;
        Ok((out, parts))
    }

    /// After a commit (with `writer` held): the new revision, the leases, the events.
    fn publish(
        &self,
        revision: Revision,
        compacted: Option<Revision>,
        events: Vec<Event>,
        lease_changes: Vec<LeaseChange>,
    ) {
        self.revision.store(revision, Ordering::Release);
        if let Some(compacted) = compacted {
            self.compacted.store(compacted, Ordering::Release);
        }
        if !lease_changes.is_empty() {
            let mut leases = lock(&self.leases);
            let now = Instant::now();
            for change in lease_changes {
                match change {
                    LeaseChange::Granted(id, ttl) => leases.insert(id, Lease::new(ttl, now)),
                    LeaseChange::Revoked(id) => leases.remove(&id),
                };
            }
        }
        if !events.is_empty() {
            // An error only means no watcher is listening.
            let _ = self.events.send(Arc::from(events));
        }
    }

    /// A write whose closure borrows (compaction, lease revocation): queued writes are
    /// committed first, then this one alone.
    fn write_local<T>(&self, f: impl FnOnce(&mut Changes<'_>) -> Result<T>) -> Result<T> {
        let _writer = lock(&self.writer);
        let jobs = std::mem::take(&mut *lock(&self.queue));
        self.commit(jobs);
        let (out, (revision, compacted, events, lease_changes)) = self.transact(f)?;
        self.publish(revision, compacted, events, lease_changes);
        Ok(out)
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        self.write_local(|changes| {
            if revision > changes.revision {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current: changes.revision,
                });
            }
            if revision <= self.compacted.load(Ordering::Acquire) {
                return Ok(());
            }
            tracing::debug!(revision, "compacting store history");
            changes.compact(revision)
        })
    }

    fn expired_leases(&self) -> Vec<LeaseId> {
        let now = Instant::now();
        let leases = lock(&self.leases);
        leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Revokes the leases whose time has run out.
    fn reap(&self) -> Result<()> {
        for id in self.expired_leases() {
            self.revoke(id, true)?;
        }
        Ok(())
    }

    /// Revokes lease `id`, or with `only_expired`, only if its deadline has passed (checked
    /// under the writer mutex: a keepalive cannot revive an expired lease, see
    /// `lease_keepalive`).
    fn revoke(&self, id: LeaseId, only_expired: bool) -> Result<()> {
        self.write_local(|changes| {
            if only_expired {
                let expired = lock(&self.leases)
                    .get(&id)
                    .is_some_and(|l| l.deadline <= Instant::now());
                if !expired {
                    return Ok(());
                }
                tracing::info!(lease = id, "lease expired");
            }
            if !changes.lease_exists(id)? {
                return Err(StoreError::LeaseNotFound(id));
            }
            changes.revoke(id)
        })
    }

    /// Subscribes to the live events and reads the replay after `after`, as one step.
    fn watch_start(&self, prefix: &str, after: Revision) -> Result<WatchStart> {
        let (txn, live) = {
            let _writer = lock(&self.writer);
            (self.snapshot()?, self.events.subscribe())
        };
        let (current, compacted) = read::meta(&txn)?;
        if after != 0 && after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let replay = if after == 0 {
            Vec::new()
        } else {
            read::log(&txn, after, current, prefix)?
        };
        Ok(WatchStart {
            replay,
            live,
            last: after.max(current),
        })
    }
}

/// What a watch starts from: the events to replay, the live ones after them, and the newest
/// revision the replay covers.
struct WatchStart {
    replay: Vec<Event>,
    live: broadcast::Receiver<Arc<[Event]>>,
    last: Revision,
}

#[async_trait]
impl Store for RedbStore {
    async fn revision(&self) -> Result<Revision> {
        Ok(self.inner.revision.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.blocking(move |inner| read::get(&inner.snapshot()?, &key))
            .await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.blocking(move |inner| read::range(&inner.snapshot()?, &req))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: LeaseId) -> Result<Revision> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.write(move |changes| {
                if changes.get(&key)?.is_some() {
                    return Err(StoreError::AlreadyExists(key.clone()));
                }
                if lease != 0 && !changes.lease_exists(lease)? {
                    return Err(StoreError::LeaseNotFound(lease));
                }
                changes.put(&key, value, lease, None)
            })
        })
        .await
    }

    /// Keeps the key's lease (the trait's update has none to give).
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.write(move |changes| {
                let prev = changes
                    .get(&key)?
                    .ok_or_else(|| StoreError::NotFound(key.clone()))?;
                check_expected(&prev, expected)?;
                let lease = prev.lease;
                changes.put(&key, value, lease, Some(prev))
            })
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(Revision, KeyValue)> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.write(move |changes| {
                let prev = changes
                    .get(&key)?
                    .ok_or_else(|| StoreError::NotFound(key.clone()))?;
                check_expected(&prev, expected)?;
                let revision = changes.delete(prev.clone())?;
                Ok((revision, prev))
            })
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let owned = prefix.to_owned();
        let start = self
            .blocking(move |inner| inner.watch_start(&owned, after))
            .await?;
        let (tx, events) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch::forward(
            tx,
            start.replay,
            start.live,
            prefix.to_owned(),
            start.last,
        ));
        Ok(Watch { events })
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.blocking(move |inner| inner.compact(revision)).await
    }

    async fn compacted(&self) -> Result<Revision> {
        Ok(self.inner.compacted.load(Ordering::Acquire))
    }

    /// A `ttl` under one second is one second (etcd has a minimum too).
    async fn lease_grant(&self, ttl: i64) -> Result<LeaseId> {
        self.blocking(move |inner| inner.write(move |changes| changes.grant(ttl.max(1))))
            .await
    }

    /// [`StoreError::LeaseNotFound`] once the lease has expired, even before the reaper has
    /// deleted its keys: an expired lease stays expired.
    async fn lease_keepalive(&self, id: LeaseId) -> Result<()> {
        let now = Instant::now();
        match lock(&self.inner.leases).get_mut(&id) {
            Some(lease) if lease.deadline > now => {
                lease.deadline = now + lease.ttl;
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.blocking(move |inner| inner.revoke(id, false)).await
    }
}

fn check_expected(prev: &KeyValue, expected: Revision) -> Result<()> {
    if expected != 0 && prev.mod_revision != expected {
        return Err(StoreError::Conflict {
            key: prev.key.clone(),
            expected,
            actual: prev.mod_revision,
        });
    }
    Ok(())
}

/// Locks `m`, ignoring poison: every critical section here leaves its data consistent (a
/// panicking write transaction is dropped, which aborts it).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// redb's errors as [`StoreError::Backend`].
trait Redb<T> {
    fn redb(self) -> Result<T>;
}

impl<T, E: Into<::redb::Error>> Redb<T> for std::result::Result<T, E> {
    fn redb(self) -> Result<T> {
        self.map_err(|err| StoreError::Backend(err.into().to_string()))
    }
}
