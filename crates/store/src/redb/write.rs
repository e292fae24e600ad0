//! One write transaction: the changes a store call makes, all in the same redb transaction.
//!
//! [`Changes`] is the only code that writes the `keys`, `log` and `lease_keys` tables, so the
//! invariants hold by construction: every put or delete takes the next revision, writes the
//! key's row and the log row of that revision together, and keeps the lease index in step.
//! [`super::Inner::write`] commits it (or drops it, which aborts) and then publishes the events.

use ::redb::{MultimapTable, ReadableTable, Table, WriteTransaction};

use super::{
    codec, Redb, KEYS, LEASES, LEASE_KEYS, LOG, META, META_COMPACTED, META_NEXT_LEASE,
    META_REVISION,
};
use crate::{Event, KeyValue, LeaseId, Result, Revision};

/// A lease change to make in memory once the transaction has committed.
pub(super) enum LeaseChange {
    /// A lease was granted with this ttl in seconds.
    Granted(LeaseId, i64),
    /// A lease was revoked.
    Revoked(LeaseId),
}

/// The tables of one write transaction and what it has done so far.
pub(super) struct Changes<'t> {
    keys: Table<'t, &'static str, &'static [u8]>,
    log: Table<'t, Revision, &'static [u8]>,
    meta: Table<'t, &'static str, i64>,
    leases: Table<'t, LeaseId, i64>,
    lease_keys: MultimapTable<'t, LeaseId, &'static str>,
    /// The revision of the newest change, in this transaction or before it.
    pub(super) revision: Revision,
    /// The events of this transaction, in revision order.
    pub(super) events: Vec<Event>,
    /// Lease changes to mirror in memory after the commit.
    pub(super) lease_changes: Vec<LeaseChange>,
    /// The compacted revision, if this transaction changed it.
    pub(super) compacted: Option<Revision>,
}

impl<'t> Changes<'t> {
    /// Opens the tables (making any that are missing) in `txn`, whose newest revision is
    /// `revision`.
    pub(super) fn open(txn: &'t WriteTransaction, revision: Revision) -> Result<Self> {
        Ok(Changes {
            keys: txn.open_table(KEYS).redb()?,
            log: txn.open_table(LOG).redb()?,
            meta: txn.open_table(META).redb()?,
            leases: txn.open_table(LEASES).redb()?,
            lease_keys: txn.open_multimap_table(LEASE_KEYS).redb()?,
            revision,
            events: Vec::new(),
            lease_changes: Vec::new(),
            compacted: None,
        })
    }

    /// The key's current value, counting this transaction's changes.
    pub(super) fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.keys.get(key).redb()? {
            Some(row) => Ok(Some(codec::decode_row(key, row.value())?)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value` attached to `lease`, over `prev` (the key's current value, which
    /// the caller has read and checked). Returns the new revision.
    pub(super) fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        prev: Option<KeyValue>,
    ) -> Result<Revision> {
        let revision = self.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            lease,
        };
        self.keys
            .insert(key, codec::encode_row(&kv).as_slice())
            .redb()?;
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        if prev_lease != lease {
            if prev_lease != 0 {
                self.lease_keys.remove(prev_lease, key).redb()?;
            }
            if lease != 0 {
                self.lease_keys.insert(lease, key).redb()?;
            }
        }
        self.record(Event::Put { kv, prev })?;
        Ok(revision)
    }

    /// Deletes `prev.key` (whose current value is `prev`). Returns the revision of the deletion.
    pub(super) fn delete(&mut self, prev: KeyValue) -> Result<Revision> {
        let revision = self.revision + 1;
        self.keys.remove(prev.key.as_str()).redb()?;
        if prev.lease != 0 {
            self.lease_keys
                .remove(prev.lease, prev.key.as_str())
                .redb()?;
        }
        self.record(Event::Delete { prev, revision })?;
        Ok(revision)
    }

    fn record(&mut self, event: Event) -> Result<()> {
        let revision = event.revision();
        self.log
            .insert(revision, codec::encode_event(&event).as_slice())
            .redb()?;
        self.revision = revision;
        self.events.push(event);
        Ok(())
    }

    /// Whether lease `id` exists.
    pub(super) fn lease_exists(&self, id: LeaseId) -> Result<bool> {
        Ok(self.leases.get(id).redb()?.is_some())
    }

    /// Makes a lease of `ttl` seconds. Ids count up from 1 and are never used twice.
    pub(super) fn grant(&mut self, ttl: i64) -> Result<LeaseId> {
        let id = self
            .meta
            .get(META_NEXT_LEASE)
            .redb()?
            .map_or(1, |v| v.value());
        self.meta.insert(META_NEXT_LEASE, id + 1).redb()?;
        self.leases.insert(id, ttl).redb()?;
        self.lease_changes.push(LeaseChange::Granted(id, ttl));
        Ok(id)
    }

    /// Ends lease `id`, deleting its keys, one revision each, in key order.
    pub(super) fn revoke(&mut self, id: LeaseId) -> Result<()> {
        let keys = self
            .lease_keys
            .remove_all(id)
            .redb()?
            .map(|k| k.map(|k| k.value().to_owned()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .redb()?;
        for key in keys {
            match self.get(&key)? {
                Some(prev) if prev.lease == id => {
                    self.delete(prev)?;
                }
                // The index is written with the keys, so this is never; a stale entry is
                // dropped rather than deleting a key that belongs to someone else.
                _ => tracing::warn!(
                    lease = id,
                    key,
                    "lease index named a key not attached to it"
                ),
            }
        }
        self.leases.remove(id).redb()?;
        self.lease_changes.push(LeaseChange::Revoked(id));
        Ok(())
    }

    /// Drops the log at and before `revision`.
    pub(super) fn compact(&mut self, revision: Revision) -> Result<()> {
        self.log.retain_in(..=revision, |_, _| false).redb()?;
        self.meta.insert(META_COMPACTED, revision).redb()?;
        self.compacted = Some(revision);
        Ok(())
    }

    /// Records the newest revision in `meta`; called once, before the commit.
    pub(super) fn finish(&mut self) -> Result<()> {
        if !self.events.is_empty() {
            self.meta.insert(META_REVISION, self.revision).redb()?;
        }
        Ok(())
    }
}
