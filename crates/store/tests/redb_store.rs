//! The embedded store against the `Store` contract: what the API server relies on.

use std::sync::Arc;
use std::time::Duration;

use corral_store::redb::RedbStore;
use corral_store::{Event, KeyValue, RangeRequest, Revision, Store, StoreError};
use tokio::sync::mpsc;

struct TestStore {
    store: Arc<RedbStore>,
    dir: tempfile::TempDir,
}

fn open() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
    TestStore { store, dir }
}

fn range(
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Revision,
) -> RangeRequest {
    RangeRequest {
        prefix: prefix.into(),
        start_after: start_after.map(Into::into),
        limit,
        revision,
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// The next event, or a panic after 10 s.
async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the watch is open")
}

#[tokio::test]
async fn create_update_delete_follow_revisions_and_guards() {
    let t = open();
    let s = &t.store;
    assert_eq!(s.revision().await.unwrap(), 0);
    assert_eq!(s.create("/a", b"1".to_vec(), 0).await.unwrap(), 1);
    assert!(
        matches!(s.create("/a", b"x".to_vec(), 0).await, Err(StoreError::AlreadyExists(k)) if k == "/a")
    );
    let kv = s.get("/a").await.unwrap().unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: "/a".into(),
            value: b"1".to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0
        }
    );

    assert_eq!(s.update("/a", b"2".to_vec(), 1).await.unwrap(), 2);
    match s.update("/a", b"3".to_vec(), 1).await {
        Err(StoreError::Conflict {
            key,
            expected: 1,
            actual: 2,
        }) => assert_eq!(key, "/a"),
        other => panic!("want a conflict, got {other:?}"),
    }
    assert_eq!(s.update("/a", b"3".to_vec(), 0).await.unwrap(), 3);
    assert!(
        matches!(s.update("/b", b"1".to_vec(), 0).await, Err(StoreError::NotFound(k)) if k == "/b")
    );
    let kv = s.get("/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"3"[..], 1, 3)
    );

    assert!(matches!(
        s.delete("/a", 2).await,
        Err(StoreError::Conflict { actual: 3, .. })
    ));
    assert!(matches!(
        s.delete("/b", 0).await,
        Err(StoreError::NotFound(_))
    ));
    let (rev, prev) = s.delete("/a", 3).await.unwrap();
    assert_eq!((rev, prev.value), (4, b"3".to_vec()));
    assert_eq!(s.get("/a").await.unwrap(), None);
    assert!(matches!(
        s.delete("/a", 0).await,
        Err(StoreError::NotFound(_))
    ));

    // Made again, it is a new key: its create revision starts over.
    assert_eq!(s.create("/a", b"again".to_vec(), 0).await.unwrap(), 5);
    assert_eq!(s.get("/a").await.unwrap().unwrap().create_revision, 5);
    // Failed calls took no revision.
    assert_eq!(s.revision().await.unwrap(), 5);
}

#[tokio::test]
async fn range_pages_by_prefix_limit_and_start_after() {
    let t = open();
    let s = &t.store;
    for key in ["/a/3", "/a/1", "/b/1", "/a/5", "/ab", "/a/2", "/a/4", "/"] {
        s.create(key, key.as_bytes().to_vec(), 0).await.unwrap();
    }
    let all = s.range(range("/a/", None, 0, 0)).await.unwrap();
    assert_eq!(keys(&all.kvs), ["/a/1", "/a/2", "/a/3", "/a/4", "/a/5"]);
    assert_eq!((all.more, all.remaining, all.revision), (false, 0, 8));

    let page = s.range(range("/a/", None, 2, 0)).await.unwrap();
    assert_eq!(keys(&page.kvs), ["/a/1", "/a/2"]);
    assert_eq!((page.more, page.remaining), (true, 3));
    let page = s.range(range("/a/", Some("/a/2"), 2, 0)).await.unwrap();
    assert_eq!(keys(&page.kvs), ["/a/3", "/a/4"]);
    assert_eq!((page.more, page.remaining), (true, 1));
    let page = s.range(range("/a/", Some("/a/4"), 2, 0)).await.unwrap();
    assert_eq!(keys(&page.kvs), ["/a/5"]);
    assert_eq!((page.more, page.remaining), (false, 0));
    // A continue token past the prefix, or before it.
    assert!(s
        .range(range("/a/", Some("/a0"), 0, 0))
        .await
        .unwrap()
        .kvs
        .is_empty());
    assert_eq!(
        s.range(range("/a/", Some("/"), 1, 0))
            .await
            .unwrap()
            .remaining,
        4
    );

    let everything = s.range(range("", None, 0, 0)).await.unwrap();
    assert_eq!(
        keys(&everything.kvs),
        ["/", "/a/1", "/a/2", "/a/3", "/a/4", "/a/5", "/ab", "/b/1"]
    );
    assert!(s
        .range(range("/c", None, 0, 0))
        .await
        .unwrap()
        .kvs
        .is_empty());
}

#[tokio::test]
async fn range_at_an_old_revision_reads_that_revision() {
    let t = open();
    let s = &t.store;
    s.create("/k/1", b"one".to_vec(), 0).await.unwrap(); // 1
    s.create("/k/2", b"two".to_vec(), 0).await.unwrap(); // 2
    s.create("/k/4", b"four".to_vec(), 0).await.unwrap(); // 3
    s.update("/k/1", b"one'".to_vec(), 1).await.unwrap(); // 4
    s.delete("/k/2", 0).await.unwrap(); // 5
    s.create("/k/3", b"three".to_vec(), 0).await.unwrap(); // 6
    s.create("/other", b"x".to_vec(), 0).await.unwrap(); // 7
    s.delete("/k/4", 0).await.unwrap(); // 8

    let at3 = s.range(range("/k/", None, 0, 3)).await.unwrap();
    assert_eq!(at3.revision, 3);
    assert_eq!(keys(&at3.kvs), ["/k/1", "/k/2", "/k/4"]);
    assert_eq!(at3.kvs[0].value, b"one");
    assert_eq!((at3.kvs[0].mod_revision, at3.kvs[1].mod_revision), (1, 2));

    let at6 = s.range(range("/k/", None, 0, 6)).await.unwrap();
    assert_eq!(keys(&at6.kvs), ["/k/1", "/k/3", "/k/4"]);
    assert_eq!(
        (at6.kvs[0].value.as_slice(), at6.kvs[0].mod_revision),
        (&b"one'"[..], 4)
    );

    // Paged at a fixed revision, the way a list with a resourceVersion pages.
    let page = s.range(range("/k/", None, 2, 3)).await.unwrap();
    assert_eq!(keys(&page.kvs), ["/k/1", "/k/2"]);
    assert_eq!((page.more, page.remaining), (true, 1));
    let page = s.range(range("/k/", Some("/k/2"), 2, 3)).await.unwrap();
    assert_eq!(keys(&page.kvs), ["/k/4"]);
    assert!(!page.more);

    // The newest revision, asked for by number, is the same read as 0.
    assert_eq!(
        keys(&s.range(range("/k/", None, 0, 8)).await.unwrap().kvs),
        ["/k/1", "/k/3"]
    );
    assert!(matches!(
        s.range(range("/k/", None, 0, 9)).await,
        Err(StoreError::FutureRevision {
            requested: 9,
            current: 8
        })
    ));

    s.compact(4).await.unwrap();
    assert_eq!(s.compacted().await.unwrap(), 4);
    assert!(matches!(
        s.range(range("/k/", None, 0, 3)).await,
        Err(StoreError::Compacted {
            requested: 3,
            compacted: 4
        })
    ));
    // The compacted revision itself can still be read: its later history is held.
    assert_eq!(
        keys(&s.range(range("/k/", None, 0, 4)).await.unwrap().kvs),
        ["/k/1", "/k/2", "/k/4"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_replays_then_follows_concurrent_writers_exactly_once() {
    let t = open();
    let s = &t.store;
    for i in 0..50 {
        s.create(&format!("/w/pre{i:03}"), vec![1], 0)
            .await
            .unwrap();
    }
    let writer = {
        let s = Arc::clone(s);
        tokio::spawn(async move {
            for i in 0..500 {
                // Every fifth write is outside the prefix: watchers must not see it.
                let key = if i % 5 == 0 {
                    format!("/x/{i:03}")
                } else {
                    format!("/w/{i:03}")
                };
                s.create(&key, vec![2], 0).await.unwrap();
                if i % 3 == 0 {
                    s.update(&key, vec![3], 0).await.unwrap();
                }
                if i % 7 == 0 {
                    s.delete(&key, 0).await.unwrap();
                }
            }
            s.revision().await.unwrap()
        })
    };
    while s.revision().await.unwrap() < 300 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Established while the writer runs: one replaying from revision 20, one only new events.
    let mut replaying = s.watch("/w/", 20).await.unwrap();
    let mut fresh = s.watch("/w/", 0).await.unwrap();
    let last = writer.await.unwrap();

    let history = s.history(0).await.unwrap();
    assert_eq!(history.len() as i64, last, "one log row per revision");
    let want: Vec<Revision> = history
        .iter()
        .filter(|e| e.key().starts_with("/w/") && e.revision() > 20)
        .map(Event::revision)
        .collect();
    let mut got = Vec::new();
    while got.last() != want.last() {
        let event = next(&mut replaying.events).await;
        assert_eq!(
            Some(&event),
            history.get(event.revision() as usize - 1),
            "the event as logged"
        );
        got.push(event.revision());
    }
    assert_eq!(got, want);

    let first = next(&mut fresh.events).await.revision();
    assert!(
        first > 300,
        "a fresh watch starts after the revision it was made at, not {first}"
    );
    let mut got = vec![first];
    while got.last() != want.last() {
        got.push(next(&mut fresh.events).await.revision());
    }
    let want_fresh: Vec<Revision> = want.iter().copied().filter(|r| *r >= first).collect();
    assert_eq!(got, want_fresh);
    // Nothing after the end.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), fresh.events.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn watch_sees_puts_and_deletes_with_their_previous_values() {
    let t = open();
    let s = &t.store;
    let mut w = s.watch("/p/", 0).await.unwrap();
    s.create("/p/a", b"1".to_vec(), 0).await.unwrap();
    s.create("/q/a", b"1".to_vec(), 0).await.unwrap();
    s.update("/p/a", b"2".to_vec(), 0).await.unwrap();
    s.delete("/p/a", 0).await.unwrap();
    match next(&mut w.events).await {
        Event::Put { kv, prev: None } => {
            assert_eq!((kv.key.as_str(), kv.mod_revision), ("/p/a", 1))
        }
        other => panic!("want the create, got {other:?}"),
    }
    match next(&mut w.events).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(
                (kv.value, kv.mod_revision, kv.create_revision),
                (b"2".to_vec(), 3, 1)
            );
            assert_eq!((prev.value, prev.mod_revision), (b"1".to_vec(), 1));
        }
        other => panic!("want the update, got {other:?}"),
    }
    match next(&mut w.events).await {
        Event::Delete { prev, revision } => assert_eq!((prev.value, revision), (b"2".to_vec(), 4)),
        other => panic!("want the delete, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_before_compaction_is_compacted() {
    let t = open();
    let s = &t.store;
    for i in 0..10 {
        s.create(&format!("/c/{i}"), vec![], 0).await.unwrap();
    }
    s.compact(5).await.unwrap();
    assert!(matches!(
        s.watch("/c/", 4).await,
        Err(StoreError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    assert!(matches!(
        s.history(0).await,
        Err(StoreError::Compacted { .. })
    ));
    // At the compacted revision every later event is still held.
    let mut w = s.watch("/c/", 5).await.unwrap();
    for rev in 6..=10 {
        assert_eq!(next(&mut w.events).await.revision(), rev);
    }
    assert_eq!(s.history(5).await.unwrap().len(), 5);
    // Compacting again at or before is nothing; past the newest is refused.
    s.compact(3).await.unwrap();
    assert_eq!(s.compacted().await.unwrap(), 5);
    assert!(matches!(
        s.compact(11).await,
        Err(StoreError::FutureRevision { .. })
    ));
    // Keys stay.
    assert_eq!(
        s.range(range("/c/", None, 0, 0)).await.unwrap().kvs.len(),
        10
    );
}

#[tokio::test]
async fn compactor_keeps_the_newest_revisions() {
    let t = open();
    let s = &t.store;
    for i in 0..20 {
        s.create(&format!("/k/{i}"), vec![], 0).await.unwrap();
    }
    let compactor = s.spawn_compactor(5, Duration::from_millis(20));
    for _ in 0..500 {
        if s.compacted().await.unwrap() == 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.compacted().await.unwrap(), 15);
    assert_eq!(s.history(15).await.unwrap().len(), 5);
    compactor.abort();
}

#[tokio::test]
async fn expired_lease_deletes_its_keys_with_delete_events() {
    let t = open();
    let s = &t.store;
    let lease = s.lease_grant(1).await.unwrap();
    s.create("/l/a", b"a".to_vec(), lease).await.unwrap();
    s.create("/l/b", b"b".to_vec(), lease).await.unwrap();
    s.create("/l/c", b"c".to_vec(), 0).await.unwrap();
    // An update keeps the key's lease.
    s.update("/l/b", b"b2".to_vec(), 0).await.unwrap();
    assert_eq!(s.get("/l/b").await.unwrap().unwrap().lease, lease);
    let mut w = s.watch("/l/", 0).await.unwrap();

    // The reaper that open started deletes them: each key one Delete event.
    let mut deleted = Vec::new();
    for _ in 0..2 {
        match next(&mut w.events).await {
            Event::Delete { prev, revision } => {
                assert_eq!(prev.lease, lease);
                deleted.push((prev.key, revision));
            }
            other => panic!("want a delete, got {other:?}"),
        }
    }
    assert_eq!(deleted, [("/l/a".to_string(), 5), ("/l/b".to_string(), 6)]);
    assert_eq!(
        keys(&s.range(range("/l/", None, 0, 0)).await.unwrap().kvs),
        ["/l/c"]
    );
    assert!(
        matches!(s.lease_keepalive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease)
    );
    assert!(matches!(
        s.create("/l/d", vec![], lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        s.create("/l/d", vec![], 9999).await,
        Err(StoreError::LeaseNotFound(9999))
    ));
    assert!(matches!(
        s.lease_revoke(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

#[tokio::test]
async fn keepalive_holds_a_lease_and_revoke_ends_it() {
    let t = open();
    let s = &t.store;
    let lease = s.lease_grant(1).await.unwrap();
    s.create("/l/a", vec![], lease).await.unwrap();
    s.create("/l/b", vec![], lease).await.unwrap();
    // A key deleted by hand leaves the lease: revoking does not delete it again.
    s.delete("/l/b", 0).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.lease_keepalive(lease).await.unwrap();
    }
    assert!(
        s.get("/l/a").await.unwrap().is_some(),
        "kept alive past its ttl"
    );
    let before = s.revision().await.unwrap();
    s.lease_revoke(lease).await.unwrap();
    assert_eq!(
        s.revision().await.unwrap(),
        before + 1,
        "one delete, for the one key left"
    );
    assert_eq!(s.get("/l/a").await.unwrap(), None);
    assert!(matches!(
        s.lease_keepalive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // Ids are not reused.
    assert!(s.lease_grant(5).await.unwrap() > lease);
}

#[tokio::test]
async fn reopen_keeps_revision_keys_history_and_leases() {
    let t = open();
    let path = t.dir.path().join("store.redb");
    let lease = t.store.lease_grant(60).await.unwrap();
    t.store.create("/r/a", b"a".to_vec(), 0).await.unwrap();
    t.store.create("/r/b", b"b".to_vec(), lease).await.unwrap();
    t.store.update("/r/a", b"a2".to_vec(), 1).await.unwrap();
    t.store.delete("/r/a", 0).await.unwrap();
    t.store.create("/r/c", b"c".to_vec(), 0).await.unwrap();
    t.store.compact(2).await.unwrap();
    let revision = t.store.revision().await.unwrap();
    let kvs = t.store.range(range("", None, 0, 0)).await.unwrap().kvs;
    let history = t.store.history(2).await.unwrap();
    let mut w = t.store.watch("", 0).await.unwrap();
    drop(t.store);
    // Dropping the store closes its watches.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), w.events.recv())
            .await
            .unwrap()
            .is_none()
    );

    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.revision().await.unwrap(), revision);
    assert_eq!(s.compacted().await.unwrap(), 2);
    assert_eq!(s.range(range("", None, 0, 0)).await.unwrap().kvs, kvs);
    assert_eq!(s.history(2).await.unwrap(), history);
    assert_eq!(
        keys(&s.range(range("/r/", None, 0, 3)).await.unwrap().kvs),
        ["/r/a", "/r/b"]
    );
    s.lease_keepalive(lease).await.unwrap();
    assert!(s.lease_grant(1).await.unwrap() > lease);
    assert_eq!(s.create("/r/d", vec![], lease).await.unwrap(), revision + 1);
    s.lease_revoke(lease).await.unwrap();
    assert_eq!(
        keys(&s.range(range("/r/", None, 0, 0)).await.unwrap().kvs),
        ["/r/c"]
    );
}
