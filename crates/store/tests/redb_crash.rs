//! Kill -9 during writes: the store reopens whole, at a revision, with every revision logged.
//!
//! The writer is this test binary run again with `CORRAL_STORE_CRASH_CHILD` set to the store's
//! path (re-exec, not fork: the test harness is multi-threaded). It writes forever; every value
//! names its own key and the revision it was written at, so a torn or misplaced write shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_store::redb::RedbStore;
use corral_store::{Event, KeyValue, RangeRequest, Store};

const CHILD_ENV: &str = "CORRAL_STORE_CRASH_CHILD";

/// The writer. Does nothing unless run as the child of `kill_during_writes_leaves_a_whole_store`.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = RedbStore::open(Path::new(&path)).unwrap();
        let start = store.revision().await.unwrap();
        for n in start.. {
            let expected = store.revision().await.unwrap() + 1;
            let key = format!("/crash/{:02}", n % 37);
            let value = format!("{key}@{expected}").into_bytes();
            let revision = match store.get(&key).await.unwrap() {
                None => store.create(&key, value, 0).await.unwrap(),
                Some(kv) if n % 5 == 0 => store.delete(&key, kv.mod_revision).await.unwrap().0,
                Some(kv) => store.update(&key, value, kv.mod_revision).await.unwrap(),
            };
            assert_eq!(revision, expected);
        }
    });
}

/// Kills the child when the test ends, whichever way it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn value_of(kv: &KeyValue) -> String {
    format!("{}@{}", kv.key, kv.mod_revision)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_writes_leaves_a_whole_store() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut previous = 0;
    for round in 0..5 {
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "crash_child_writer",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &path)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Let it get going, then kill it mid-write at a different moment each round.
        let begun = Instant::now();
        while !path.exists() && begun.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200 + 37 * round)).await;
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the writer was still writing"
        );
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();

        let store = RedbStore::open(&path).unwrap();
        let revision = store.revision().await.unwrap();
        let history = store.history(0).await.unwrap();
        assert_eq!(
            history.len() as i64,
            revision,
            "round {round}: one log row per revision"
        );
        let mut replayed: BTreeMap<String, KeyValue> = BTreeMap::new();
        for (event, want) in history.iter().zip(1..) {
            assert_eq!(
                event.revision(),
                want,
                "round {round}: no hole in the history"
            );
            match event {
                Event::Put { kv, prev } => {
                    assert_eq!(
                        String::from_utf8_lossy(&kv.value),
                        value_of(kv),
                        "round {round}: a whole value"
                    );
                    assert_eq!(
                        prev.as_ref(),
                        replayed.get(&kv.key),
                        "round {round}: prev as it was"
                    );
                    replayed.insert(kv.key.clone(), kv.clone());
                }
                Event::Delete { prev, .. } => {
                    assert_eq!(
                        Some(prev),
                        replayed.get(&prev.key),
                        "round {round}: deleted as it was"
                    );
                    replayed.remove(&prev.key);
                }
            }
        }
        let now = store.range(RangeRequest::default()).await.unwrap();
        for kv in &now.kvs {
            assert_eq!(
                String::from_utf8_lossy(&kv.value),
                value_of(kv),
                "round {round}: a whole value"
            );
        }
        assert_eq!(
            now.kvs,
            replayed.into_values().collect::<Vec<_>>(),
            "round {round}: keys are the history replayed"
        );
        assert!(
            revision > previous,
            "round {round}: the writer wrote (revision {revision})"
        );
        eprintln!("round {round}: killed at revision {revision}");
        previous = revision;
        drop(store);
    }
}
