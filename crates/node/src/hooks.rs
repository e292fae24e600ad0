//! Container lifecycle hooks: a container's `lifecycle.postStart` runs right after it starts
//! (a failure kills it: `FailedPostStartHook`), and its `lifecycle.preStop` runs whenever the
//! kubelet would stop it — its pod deleted, or a failed liveness or startup probe about to
//! restart it — before the container gets SIGTERM, as the kubelet runs it — `exec` in the container,
//! `httpGet` against the pod (a probe's request), or `sleep`. The hook's time counts against
//! the termination grace period; a hook that fails or runs out of time is reported with a
//! `FailedPreStopHook` event and the container is stopped anyway, with at least 2 s left for
//! SIGTERM (the kubelet's extra grace).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use crate::events::{EventType, PodRef, Recorder};
use crate::probe::{self, Action, Outcome, ProbeSpec, Target};

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A probe's action (exec, httpGet, tcpSocket).
    Action(Action),
    /// A pause.
    Sleep(Duration),
}

/// Reads a lifecycle handler of container `c`.
pub fn hook_of(h: &LifecycleHandler, c: &Container) -> Result<Hook, String> {
    if let Some(s) = &h.sleep {
        return Ok(Hook::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    let as_probe = Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        ..Default::default()
    };
    ProbeSpec::from_k8s(&as_probe, c)
        .map(|p| Hook::Action(p.action))
        .map_err(|e| e.replace("a probe needs", "a hook needs"))
}

/// Runs `hook` against `target`, for at most `limit`.
pub async fn run(hook: &Hook, target: &Target, limit: Duration) -> Outcome {
    match hook {
        Hook::Sleep(d) => {
            tokio::time::sleep((*d).min(limit)).await;
            Outcome::Success
        }
        Hook::Action(a) => {
            match tokio::time::timeout(limit, probe::run_once(a, target, limit)).await {
                Ok(o) => o,
                Err(_) => Outcome::Failure(format!(
                    "the hook did not finish within {} s",
                    limit.as_secs()
                )),
            }
        }
    }
}

/// Runs a hook as read by [`hook_of`] for at most `limit`: why it failed, or `None`.
pub async fn failure(
    hook: Result<Hook, String>,
    target: &Target,
    limit: Duration,
) -> Option<String> {
    match hook {
        Err(e) => Some(e),
        Ok(h) => match run(&h, target, limit).await {
            Outcome::Success => None,
            Outcome::Failure(why) => Some(why),
        },
    }
}

/// Container `c`'s preStop hook, if it has one.
pub fn pre_stop_of(c: &Container) -> Option<Result<Hook, String>> {
    let h = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    Some(hook_of(h, c))
}

/// Who a stop is reported to: the pod's events, about container `container`.
pub(crate) struct Report {
    pub events: Arc<Recorder>,
    pub pod: PodRef,
    pub container: String,
}

/// [`stop`] of container `name` (engine container `id`) of the pod at `pod_ip`, in a task.
pub(crate) fn spawn_stop(
    agent: &crate::NodeAgent,
    pod: &PodRef,
    pod_ip: Option<std::net::IpAddr>,
    (name, id): (&str, &str),
    hook: Option<Result<Hook, String>>,
    grace: u64,
) -> tokio::task::JoinHandle<()> {
    let target = Target::new(&agent.engine, pod_ip, id);
    let report = Report {
        events: agent.events.clone(),
        pod: pod.clone(),
        container: name.to_owned(),
    };
    tokio::spawn(stop(agent.engine.clone(), hook, target, grace, report))
}

/// Stops the container `target` names as the kubelet stops one: its preStop `hook` first,
/// within `grace` seconds (a failure is a `FailedPreStopHook` event), then SIGTERM with what
/// is left of the grace (at least 2 s), then SIGKILL.
pub(crate) async fn stop(
    engine: corral_engine::Engine,
    hook: Option<Result<Hook, String>>,
    target: Target,
    grace: u64,
    report: Report,
) {
    let begun = Instant::now();
    if let Some(h) = hook {
        if let Some(why) = failure(h, &target, Duration::from_secs(grace)).await {
            let msg = format!("PreStopHook failed: {why}");
            let field = format!("spec.containers{{{}}}", report.container);
            report
                .events
                .record(
                    &report.pod,
                    Some(&field),
                    EventType::Warning,
                    "FailedPreStopHook",
                    &msg,
                )
                .await;
        }
    }
    let grace = grace_after(grace, begun.elapsed());
    let id = target.container_id;
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(err) = engine.stop(&id, Some(grace)) {
            tracing::warn!(container = %id, "stopping a container: {err}");
        }
    })
    .await;
}

/// The grace left for SIGTERM after a hook that took `spent` of `grace`.
pub fn grace_after(grace: u64, spent: Duration) -> u64 {
    grace.saturating_sub(spent.as_secs()).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, SleepAction};

    #[test]
    fn hooks_are_read_as_the_kubelet_reads_them() {
        let c = Container {
            name: "main".into(),
            ..Default::default()
        };
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..Default::default()
        };
        assert_eq!(
            hook_of(&sleep, &c).unwrap(),
            Hook::Sleep(Duration::from_secs(3))
        );
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), "echo bye".into()]),
            }),
            ..Default::default()
        };
        assert!(matches!(
            hook_of(&exec, &c).unwrap(),
            Hook::Action(Action::Exec(_))
        ));
        let e = hook_of(&LifecycleHandler::default(), &c).unwrap_err();
        assert!(e.contains("a hook needs"), "{e}");
        assert_eq!(grace_after(30, Duration::from_secs(5)), 25);
        assert_eq!(grace_after(3, Duration::from_secs(5)), 2);
    }
}
