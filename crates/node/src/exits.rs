//! Waiting for processes that are not this process's children: one thread that holds a pidfd
//! per watched process in an epoll set and tells the waiter when its process ends. Workers use
//! it to sleep while their pod is at rest and wake the moment a container's monitor ends.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Mutex;

use rustix::event::epoll;
use rustix::event::{eventfd, EventfdFlags};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use tokio::sync::oneshot;

/// The key of the eventfd that says a registration waits.
const WAKE: u64 = u64::MAX;

/// The watcher; its thread starts with the first watch.
pub(crate) struct Exits {
    inner: Mutex<Option<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<(OwnedFd, oneshot::Sender<()>)>,
    wake: std::sync::Arc<OwnedFd>,
}

impl Exits {
    pub(crate) fn new() -> Exits {
        Exits {
            inner: Mutex::new(None),
        }
    }

    /// A receiver that resolves when process `pid` ends; `None` when it cannot be watched
    /// (it ended already, or pidfds are not available).
    pub(crate) fn watch(&self, pid: i32) -> Option<oneshot::Receiver<()>> {
        let fd = pidfd_open(Pid::from_raw(pid)?, PidfdFlags::empty()).ok()?;
        let mut inner = self.inner.lock().expect("exits lock");
        if inner.is_none() {
            *inner = Some(start().ok()?);
        }
        let i = inner.as_ref()?;
        let (tx, rx) = oneshot::channel();
        i.tx.send((fd, tx)).ok()?;
        rustix::io::write(&*i.wake, &1u64.to_ne_bytes()).ok()?;
        Some(rx)
    }
}

fn start() -> std::io::Result<Inner> {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let wake = std::sync::Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
    epoll::add(
        &ep,
        &*wake,
        epoll::EventData::new_u64(WAKE),
        epoll::EventFlags::IN,
    )?;
    let (tx, rx) = mpsc::channel::<(OwnedFd, oneshot::Sender<()>)>();
    let w = wake.clone();
    std::thread::Builder::new()
        .name("corral-exits".into())
        .spawn(move || run(ep, &w, rx))?;
    Ok(Inner { tx, wake })
}

fn run(ep: OwnedFd, wake: &OwnedFd, rx: mpsc::Receiver<(OwnedFd, oneshot::Sender<()>)>) {
    let mut watched: HashMap<u64, (OwnedFd, oneshot::Sender<()>)> = HashMap::new();
    let mut next: u64 = 0;
    let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
    let timeout = rustix::time::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    loop {
        events.clear();
        if epoll::wait(
            &ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        )
        .is_err()
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for ev in &events {
            let key = ev.data.u64();
            if key == WAKE {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(wake, &mut buf);
                continue;
            }
            if let Some((fd, tx)) = watched.remove(&key) {
                let _ = epoll::delete(&ep, &fd);
                let _ = tx.send(());
            }
        }
        loop {
            match rx.try_recv() {
                Ok((fd, tx)) => {
                    next += 1;
                    if epoll::add(
                        &ep,
                        &fd,
                        epoll::EventData::new_u64(next),
                        epoll::EventFlags::IN,
                    )
                    .is_ok()
                    {
                        watched.insert(next, (fd, tx));
                    }
                    // Not watchable: dropping `tx` wakes the waiter, which resyncs.
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        // Waiters that woke for another reason no longer listen.
        watched.retain(|_, (fd, tx)| {
            let keep = !tx.is_closed();
            if !keep {
                let _ = epoll::delete(&ep, &*fd);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watched_process_wakes_its_waiter_when_it_ends() {
        let exits = Exits::new();
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let rx = exits.watch(child.id() as i32).expect("watchable");
        let t = std::time::Instant::now();
        // The child is ours: reap it so that its pidfd turns readable.
        let reaper = std::thread::spawn(move || child.wait());
        tokio::time::timeout(std::time::Duration::from_secs(5), rx)
            .await
            .expect("woken")
            .expect("sent");
        assert!(t.elapsed() >= std::time::Duration::from_millis(250));
        reaper.join().unwrap().unwrap();
        assert!(exits.watch(i32::MAX - 1).is_none(), "no such process");
    }
}
