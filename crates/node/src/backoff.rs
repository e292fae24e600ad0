//! Kubernetes' restart back-off, per container (and per image for pulls): the first restart
//! comes at once, then each waits 10 s, doubling to at most 300 s; a container that ran for
//! 10 minutes before it exited starts the schedule again (kubelet `pkg/kubelet/kuberuntime`,
//! `flowcontrol.Backoff` with `initial 10s, max 300s`).
//!
//! The state is a delay and a deadline, rebuilt after a restart of the agent from the number
//! of restarts and the last exit's time: nothing here needs to survive the process.

use std::time::{Duration, Instant};

/// The first back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts the schedule again.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// One back-off schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the next failure will wait (`None`: no failure yet: the next restart is
    /// immediate).
    next_delay: Option<Duration>,
    /// The delay now being waited, and until when.
    waiting: Option<(Duration, Instant)>,
}

impl Backoff {
    /// The schedule after `restarts` restarts, the last exit `since` ago: what a restarted
    /// agent resumes.
    pub fn resume(restarts: u32, since: Duration, now: Instant) -> Backoff {
        let mut b = Backoff::default();
        for _ in 0..restarts.min(16) {
            b.failed(Duration::ZERO, now);
        }
        b.waiting = None;
        b.failed(Duration::ZERO, now.checked_sub(since).unwrap_or(now));
        b
    }

    /// A failure (an exit that will be restarted, a failed pull) at `at`, after running for
    /// `ran`: sets when the next attempt may come.
    pub fn failed(&mut self, ran: Duration, at: Instant) {
        if ran >= RESET_AFTER {
            *self = Backoff::default();
        }
        match self.next_delay {
            None => {
                self.waiting = None;
                self.next_delay = Some(INITIAL);
            }
            Some(d) => {
                self.waiting = Some((d, at + d));
                self.next_delay = Some((d * 2).min(MAX));
            }
        }
    }

    /// Whether the next attempt may come now.
    pub fn ready(&self, now: Instant) -> bool {
        self.waiting.is_none_or(|(_, until)| now >= until)
    }

    /// The delay being waited, while it is.
    pub fn current(&self, now: Instant) -> Option<Duration> {
        self.waiting
            .filter(|(_, until)| now < *until)
            .map(|(d, _)| d)
    }

    /// Forgets every failure (a success).
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// A back-off as Kubernetes prints it in messages: `10s`, `1m20s`, `5m0s`.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t0));
        b.failed(Duration::from_secs(1), t0);
        assert!(b.ready(t0), "the first restart comes at once");
        let mut delays = Vec::new();
        for i in 0..8 {
            let t = t0 + Duration::from_secs(1000 * (i + 1));
            b.failed(Duration::from_secs(1), t);
            delays.push(b.current(t).unwrap().as_secs());
            assert!(!b.ready(t));
            assert!(b.ready(t + b.current(t).unwrap()));
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn backoff_resets_after_ten_minutes_running() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.failed(Duration::from_secs(1), t0);
        }
        assert_eq!(b.current(t0), Some(Duration::from_secs(40)));
        b.failed(RESET_AFTER, t0);
        assert!(b.ready(t0), "a long run restarts at once");
        b.failed(Duration::from_secs(1), t0);
        assert_eq!(b.current(t0), Some(INITIAL));
    }

    #[test]
    fn backoff_resumes_from_restart_count() {
        let now = Instant::now() + Duration::from_secs(3600);
        // Three restarts so far, exited 5 s ago: the next waits 20 s from the exit.
        let b = Backoff::resume(2, Duration::from_secs(5), now);
        assert_eq!(b.current(now), Some(Duration::from_secs(20)));
        assert!(b.ready(now + Duration::from_secs(15)));
        let b = Backoff::resume(0, Duration::from_secs(5), now);
        assert!(b.ready(now));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
