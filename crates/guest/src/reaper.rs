//! The one reaper: waits for every child (and, as PID 1, every orphan of the guest) and
//! hands each exit status to whoever registered the pid.
//!
//! `std::process::Command::spawn` itself waits for a child whose exec failed (it reads the
//! errno from a pipe, then reaps it). A reaper blocked in `waitpid(-1)` could steal that
//! status, and std would then panic on ECHILD. So the reaper first waits with `WNOWAIT`
//! (learning that some child is done without reaping it), then takes the write side of a
//! lock that every spawn holds for reading from fork until its pid is registered: a spawn's
//! own wait and the registration of a new pid both happen before the reaper reaps.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use rustix::io::Errno;
use rustix::process::{WaitId, WaitIdOptions, WaitOptions, WaitStatus};

use crate::log;
use crate::server::lock;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The exit code as a shell reports it: the code, or 128 + signal.
    pub code: i32,
    /// The signal that ended it.
    pub signal: Option<i32>,
}

impl Ended {
    fn from_status(s: WaitStatus) -> Ended {
        Ended::from_parts(s.exit_status(), s.terminating_signal())
    }

    fn from_parts(exit: Option<i32>, signal: Option<i32>) -> Ended {
        match (exit, signal) {
            (Some(code), _) => Ended { code, signal: None },
            (None, Some(sig)) => Ended {
                code: 128 + sig,
                signal: Some(sig),
            },
            (None, None) => Ended {
                code: 125,
                signal: None,
            },
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Held for reading by every spawn, for writing by the reaper while it reaps.
    spawning: RwLock<()>,
    /// Who waits for which pid.
    waiting: Mutex<HashMap<i32, Sender<Ended>>>,
    /// Counts spawns, so that a reaper with no children sleeps until there is one.
    spawned: Mutex<u64>,
    new_child: Condvar,
}

/// Hands exit statuses to the sessions that spawned the processes.
pub struct Reaper {
    inner: Arc<Inner>,
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> Reaper {
        let inner = Arc::new(Inner::default());
        let i = Arc::clone(&inner);
        if crate::server::spawn_thread("reaper", move || reap_forever(&i)).is_none() {
            log!("no reaper: exit statuses will not be reported");
        }
        Reaper { inner }
    }

    /// Runs `spawn` (which forks a child and returns its pid) so that the child's exit
    /// status is delivered on the returned receiver, never lost to a race.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> io::Result<(i32, T)>,
    ) -> io::Result<(T, Receiver<Ended>)> {
        let guard = self
            .inner
            .spawning
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let (pid, value) = spawn()?;
        let (tx, rx) = channel();
        lock(&self.inner.waiting).insert(pid, tx);
        drop(guard);
        *lock(&self.inner.spawned) += 1;
        self.inner.new_child.notify_all();
        Ok((value, rx))
    }
}

fn reap_forever(inner: &Inner) {
    loop {
        let generation = *lock(&inner.spawned);
        match rustix::process::waitid(WaitId::All, WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(Errno::CHILD) => {
                // No children: sleep until a spawn makes one.
                let mut g = lock(&inner.spawned);
                while *g == generation {
                    g = inner.new_child.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                continue;
            }
            Err(e) => {
                log!("waitid: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        }
        let _spawns_wait = inner.spawning.write().unwrap_or_else(|e| e.into_inner());
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if let Some(tx) = lock(&inner.waiting).remove(&pid.as_raw_nonzero().get()) {
                        let _ = tx.send(Ended::from_status(status));
                    }
                }
                Ok(None) | Err(Errno::CHILD) => break,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    log!("waitpid: {e}");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_shell_codes() {
        assert_eq!(
            Ended::from_parts(Some(3), None),
            Ended {
                code: 3,
                signal: None
            }
        );
        assert_eq!(
            Ended::from_parts(None, Some(9)),
            Ended {
                code: 137,
                signal: Some(9)
            }
        );
    }
}
