//! Watches: a replay from the log, then the live events, handed to one watcher's channel.
//!
//! Every commit publishes its events on one `broadcast` channel while the writer mutex is still
//! held, so the channel carries them in revision order. A watch starts under the same mutex:
//! it subscribes and opens a read snapshot at once, so no commit falls between the two. Every
//! revision up to the snapshot's is in the snapshot's log (the replay), every later one comes on
//! the channel, and the forwarder drops channel events at or before the last revision it has
//! sent: none missed, none twice.
//!
//! A watcher that falls behind is not skipped forward: when its forwarder lags the broadcast
//! buffer ([`super::BROADCAST_CAPACITY`] commits), the forwarder ends and the watcher's channel
//! closes; the watcher starts again from its last revision (the API server's watch does).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::{Event, Revision};

/// Sends `replay` to `tx`, then the live events under `prefix` after revision `last`.
pub(super) async fn forward(
    tx: mpsc::Sender<Event>,
    replay: Vec<Event>,
    mut live: broadcast::Receiver<Arc<[Event]>>,
    prefix: String,
    mut last: Revision,
) {
    // `last` starts at the snapshot's revision: the replay is at or before it, the channel
    // after it, but a commit racing the subscription is skipped here rather than trusted.
    for event in replay {
        if tx.send(event).await.is_err() {
            return;
        }
    }
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            () = tx.closed() => return,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    prefix,
                    last,
                    missed,
                    "watcher fell behind; closing its watch"
                );
                return;
            }
            // The store is gone.
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for event in batch.iter() {
            if event.revision() <= last {
                continue;
            }
            last = event.revision();
            if event.key().starts_with(&prefix) && tx.send(event.clone()).await.is_err() {
                return;
            }
        }
    }
}
