//! The agent's reads and writes of the store: JSON objects through
//! [`corral_store::registry`]'s encoding, and the read-modify-write loop every change goes
//! through — read, change, write guarded by the mod revision read, and on a conflict read
//! again and redo the change (the API server or a controller wrote in between).

use corral_store::{registry, Revision, Store, StoreError};
use serde_json::Value;

/// One object and the revision it was read at.
pub(crate) async fn get(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(Value, Revision)>, StoreError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|kv| registry::decode(&kv).map(|v| (v, kv.mod_revision))))
}

/// Changes the object at `key` with `change` (which says whether it changed anything) until
/// the write lands on the revision it read. `None` if the object is gone; otherwise the
/// object as written (or as read, when nothing changed).
pub(crate) async fn update(
    store: &dyn Store,
    key: &str,
    mut change: impl FnMut(&mut Value) -> bool,
) -> Result<Option<Value>, StoreError> {
    loop {
        let Some((mut v, rev)) = get(store, key).await? else {
            return Ok(None);
        };
        if !change(&mut v) {
            return Ok(Some(v));
        }
        match store.update(key, registry::encode(&v), rev).await {
            Ok(new) => {
                registry::stamp(&mut v, new);
                return Ok(Some(v));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Makes the object at `key` if absent; `false` if it exists.
pub(crate) async fn create(
    store: &dyn Store,
    key: &str,
    v: &Value,
    lease: corral_store::LeaseId,
) -> Result<bool, StoreError> {
    match store.create(key, registry::encode(v), lease).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
