//! The bytes of the rows in the `keys` and `log` tables.
//!
//! Little-endian integers, length-prefixed strings and values; no serde, because values are
//! opaque bytes (JSON would write them as arrays of numbers, three to four times their size).
//! A row that does not decode is [`StoreError::Backend`]: the file was not written by this
//! code, and guessing would serve wrong data.
//!
//! - key row (`keys` value): `create_revision` `mod_revision` `lease` (i64 each), then the value
//!   to the end of the row.
//! - log row (`log` value): a tag byte, then the key value pairs the event holds, each as
//!   `key_len` (u32) `key` `create_revision` `mod_revision` `lease` `value_len` (u32) `value`:
//!   tag 0 a put that created its key (`kv`), tag 1 a put over an older value (`kv`, `prev`),
//!   tag 2 a delete (`prev`). The revision is the row's key, not repeated here.

use crate::{Event, KeyValue, Result, Revision, StoreError};

const PUT_NEW: u8 = 0;
const PUT_OVER: u8 = 1;
const DELETE: u8 = 2;

/// The `keys` row of `kv` (its key is the row's key).
pub(super) fn encode_row(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// The key value pair of `key`'s `keys` row.
pub(super) fn decode_row(key: &str, row: &[u8]) -> Result<KeyValue> {
    let decode = || -> Result<KeyValue, Corrupt> {
        let mut r = Reader(row);
        Ok(KeyValue {
            key: key.to_owned(),
            create_revision: r.i64()?,
            mod_revision: r.i64()?,
            lease: r.i64()?,
            value: r.0.to_vec(),
        })
    };
    decode().map_err(|_| corrupt_key(key))
}

/// The `log` row of `event`.
pub(super) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    match event {
        Event::Put { kv, prev: None } => {
            out.push(PUT_NEW);
            put_kv(&mut out, kv);
        }
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            out.push(PUT_OVER);
            put_kv(&mut out, kv);
            put_kv(&mut out, prev);
        }
        Event::Delete { prev, .. } => {
            out.push(DELETE);
            put_kv(&mut out, prev);
        }
    }
    out
}

/// The event of the `log` row at `revision`.
pub(super) fn decode_event(revision: Revision, row: &[u8]) -> Result<Event> {
    let decode = || -> Result<Event, Corrupt> {
        let mut r = Reader(row);
        let event = match r.u8()? {
            PUT_NEW => Event::Put {
                kv: r.kv()?,
                prev: None,
            },
            PUT_OVER => Event::Put {
                kv: r.kv()?,
                prev: Some(r.kv()?),
            },
            DELETE => Event::Delete {
                prev: r.kv()?,
                revision,
            },
            _ => return Err(Corrupt),
        };
        if !r.0.is_empty() || event.revision() != revision {
            return Err(Corrupt);
        }
        Ok(event)
    };
    decode().map_err(|_| corrupt_revision(revision))
}

/// The key a `log` row is about, without decoding the values (undoing the log for an old
/// revision skips most rows by key).
pub(super) fn event_key(revision: Revision, row: &[u8]) -> Result<&str> {
    let key = || -> Result<&str, Corrupt> {
        let mut r = Reader(row);
        r.u8()?;
        r.str()
    };
    key().map_err(|_| corrupt_revision(revision))
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    put_len(out, kv.key.len());
    out.extend_from_slice(kv.key.as_bytes());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    put_len(out, kv.value.len());
    out.extend_from_slice(&kv.value);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // redb refuses rows over 3 GiB, so a length always fits.
    let len = u32::try_from(len).expect("a store row is under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn corrupt_key(key: &str) -> StoreError {
    StoreError::Backend(format!("corrupt row for key {key}"))
}

fn corrupt_revision(revision: Revision) -> StoreError {
    StoreError::Backend(format!("corrupt log row at revision {revision}"))
}

/// A row ended early or held something no writer writes.
struct Corrupt;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Corrupt)?,
        ))
    }

    fn len(&mut self) -> Result<usize, Corrupt> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Corrupt)?);
        usize::try_from(n).map_err(|_| Corrupt)
    }

    fn str(&mut self) -> Result<&'a str, Corrupt> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Corrupt)
    }

    fn kv(&mut self) -> Result<KeyValue, Corrupt> {
        let key = self.str()?.to_owned();
        let create_revision = self.i64()?;
        let mod_revision = self.i64()?;
        let lease = self.i64()?;
        let n = self.len()?;
        let value = self.take(n)?.to_vec();
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            lease,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modr: Revision, lease: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: modr,
            lease,
        }
    }

    #[test]
    fn rows_round_trip() {
        let a = kv("/a", "{\"x\":1}", 3, 7, 9);
        assert_eq!(decode_row("/a", &encode_row(&a)).unwrap(), a);
        let empty = kv("/e", "", 1, 1, 0);
        assert_eq!(decode_row("/e", &encode_row(&empty)).unwrap(), empty);
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Put {
                kv: kv("/a", "1", 5, 5, 0),
                prev: None,
            },
            Event::Put {
                kv: kv("/a", "2", 5, 6, 2),
                prev: Some(kv("/a", "1", 5, 5, 2)),
            },
            Event::Delete {
                prev: kv("/a", "2", 5, 6, 0),
                revision: 7,
            },
        ];
        for event in events {
            let row = encode_event(&event);
            assert_eq!(decode_event(event.revision(), &row).unwrap(), event);
            assert_eq!(event_key(event.revision(), &row).unwrap(), "/a");
        }
    }

    #[test]
    fn truncated_rows_are_backend_errors() {
        let event = Event::Put {
            kv: kv("/a", "value", 5, 6, 0),
            prev: Some(kv("/a", "v", 5, 5, 0)),
        };
        let row = encode_event(&event);
        for cut in 0..row.len() {
            assert!(
                matches!(decode_event(6, &row[..cut]), Err(StoreError::Backend(_))),
                "cut {cut}"
            );
        }
        // The revision is the row's key; a row filed under another one is not trusted.
        assert!(decode_event(7, &row).is_err());
        assert!(decode_row("/a", &[0; 23]).is_err());
    }
}
