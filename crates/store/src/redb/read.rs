//! Reads from one redb read transaction: a snapshot, so every answer is as of one revision.

use std::collections::BTreeMap;
use std::ops::Bound;

use ::redb::ReadTransaction;

use super::{codec, Redb, KEYS, LOG, META, META_COMPACTED, META_REVISION};
use crate::{Event, KeyValue, RangeRequest, RangeResponse, Result, Revision, StoreError};

/// The snapshot's newest and compacted revisions.
pub(super) fn meta(txn: &ReadTransaction) -> Result<(Revision, Revision)> {
    let meta = txn.open_table(META).redb()?;
    let get = |name| -> Result<Revision> { Ok(meta.get(name).redb()?.map_or(0, |v| v.value())) };
    Ok((get(META_REVISION)?, get(META_COMPACTED)?))
}

/// One key's current value.
pub(super) fn get(txn: &ReadTransaction, key: &str) -> Result<Option<KeyValue>> {
    let keys = txn.open_table(KEYS).redb()?;
    match keys.get(key).redb()? {
        Some(row) => Ok(Some(codec::decode_row(key, row.value())?)),
        None => Ok(None),
    }
}

/// A range read (see [`RangeRequest`]).
///
/// At the newest revision it is one scan of `keys`. At an older one it takes the keys in the
/// window as they are now and undoes the log from the newest revision back to the one asked
/// for: O(keys in the window + revisions since), which paged lists at a fixed
/// `resourceVersion` can afford, and correct for keys deleted or created since.
pub(super) fn range(txn: &ReadTransaction, req: &RangeRequest) -> Result<RangeResponse> {
    let (current, compacted) = meta(txn)?;
    let at = match req.revision {
        0 => current,
        r if r > current => {
            return Err(StoreError::FutureRevision {
                requested: r,
                current,
            })
        }
        r if r < compacted => {
            return Err(StoreError::Compacted {
                requested: r,
                compacted,
            })
        }
        r => r,
    };
    let prefix = req.prefix.as_str();
    let start_after = req.start_after.as_deref();
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let limit = if req.limit == 0 {
        usize::MAX
    } else {
        req.limit
    };
    let mut resp = RangeResponse {
        revision: at,
        ..RangeResponse::default()
    };

    let keys = txn.open_table(KEYS).redb()?;
    let mut rows = keys.range::<&str>((lower, Bound::Unbounded)).redb()?;
    if at == current {
        for row in rows {
            let (key, row) = row.redb()?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if resp.kvs.len() < limit {
                resp.kvs.push(codec::decode_row(key, row.value())?);
            } else {
                resp.remaining += 1;
            }
        }
    } else {
        let mut window = BTreeMap::new();
        for row in rows.by_ref() {
            let (key, row) = row.redb()?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            window.insert(key.to_owned(), codec::decode_row(key, row.value())?);
        }
        let in_window =
            |key: &str| key.starts_with(prefix) && start_after.is_none_or(|after| key > after);
        let log = txn.open_table(LOG).redb()?;
        for row in log.range(at + 1..=current).redb()?.rev() {
            let (revision, row) = row.redb()?;
            let (revision, row) = (revision.value(), row.value());
            if !in_window(codec::event_key(revision, row)?) {
                continue;
            }
            match codec::decode_event(revision, row)? {
                Event::Put {
                    kv,
                    prev: Some(prev),
                } => window.insert(kv.key, prev),
                Event::Put { kv, prev: None } => window.remove(&kv.key),
                Event::Delete { prev, .. } => window.insert(prev.key.clone(), prev),
            };
        }
        let mut kvs = window.into_values();
        resp.kvs = kvs.by_ref().take(limit).collect();
        resp.remaining = kvs.count();
    }
    resp.more = resp.remaining > 0;
    Ok(resp)
}

/// The events after `after` up to `upto`, of keys under `prefix`, in revision order. The
/// caller has checked `after` against the compacted revision.
pub(super) fn log(
    txn: &ReadTransaction,
    after: Revision,
    upto: Revision,
    prefix: &str,
) -> Result<Vec<Event>> {
    let log = txn.open_table(LOG).redb()?;
    let mut events = Vec::new();
    if after >= upto {
        return Ok(events);
    }
    for row in log.range(after + 1..=upto).redb()? {
        let (revision, row) = row.redb()?;
        let (revision, row) = (revision.value(), row.value());
        if codec::event_key(revision, row)?.starts_with(prefix) {
            events.push(codec::decode_event(revision, row)?);
        }
    }
    Ok(events)
}
