//! A pod's status, computed from what runs: each container's state (running, terminated with
//! its exit code and reason, waiting with why), its last state, restart count and readiness;
//! the pod's phase by the kubelet's rules (`getPhase` in `kubelet_pods.go`); its conditions
//! (`PodReadyToStartContainers`, `Initialized`, `Ready`, `ContainersReady`, `PodScheduled`)
//! with transition times kept while a condition holds.
//!
//! Everything here is pure: the worker gathers the engine's states and the probes' results
//! into [`ContainerView`]s and writes what comes out.

use std::time::SystemTime;

use corral_container::{State, Status};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition,
};

use crate::clock;

/// One run of a container, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunView {
    /// The engine container.
    pub id: String,
    /// Its image's id.
    pub image_id: String,
    /// It runs.
    pub running: bool,
    /// Made, never started.
    pub created: bool,
    /// Its exit code, once exited.
    pub exit_code: Option<i32>,
    /// The OOM killer ended it.
    pub oom_killed: bool,
    /// When it started.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub finished_at: Option<SystemTime>,
    /// Why it could not start (it never ran).
    pub start_error: Option<String>,
}

impl RunView {
    /// The view of an engine container's state.
    pub fn of(s: &State) -> RunView {
        let never_ran = s.started_at.is_none();
        RunView {
            id: s.id.clone(),
            image_id: s.image_id.clone(),
            running: s.status == Status::Running,
            created: s.status == Status::Created && s.error.is_none(),
            exit_code: s.exit_code,
            oom_killed: s.oom_killed,
            started_at: s.started_at.as_deref().and_then(clock::parse),
            finished_at: s.finished_at.as_deref().and_then(clock::parse),
            start_error: s.error.clone().filter(|_| never_ran),
        }
    }

    /// It ended (or failed to start).
    pub fn exited(&self) -> bool {
        !self.running && !self.created
    }

    /// How it ended, as a terminated state.
    pub fn terminated(&self) -> ContainerStateTerminated {
        let (code, reason, message) = match &self.start_error {
            Some(m) => (128, "StartError", Some(m.clone())),
            None => {
                let code = self.exit_code.unwrap_or(-1);
                let reason = if self.oom_killed {
                    "OOMKilled"
                } else if code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                (code, reason, None)
            }
        };
        let started = self.started_at.or(self.finished_at);
        ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            message,
            started_at: started.map(clock::k8s_time),
            finished_at: self.finished_at.or(started).map(clock::k8s_time),
            container_id: Some(format!("corral://{}", self.id)),
            signal: None,
        }
    }

    /// Its exit code for restart decisions (a start failure counts as a failure).
    pub fn code(&self) -> i32 {
        if self.start_error.is_some() {
            128
        } else {
            self.exit_code.unwrap_or(-1)
        }
    }
}

/// A container as status shows it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// Its name.
    pub name: String,
    /// Its image, as the spec names it.
    pub image: String,
    /// The latest run.
    pub current: Option<RunView>,
    /// The run before it.
    pub previous: Option<RunView>,
    /// Restarts so far.
    pub restart_count: u32,
    /// Why it waits, when it is not running (`ErrImagePull`, `CrashLoopBackOff` ...).
    pub waiting: Option<(String, String)>,
    /// The latest run exited and will be started again.
    pub will_restart: bool,
    /// Its readiness probe passes (or it has none).
    pub ready: bool,
    /// Its startup probe passed (or it has none).
    pub started: bool,
}

impl ContainerView {
    /// Its status; `init` for an init container (ready once it completed).
    pub fn status(&self, init: bool) -> ContainerStatus {
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message,
            }),
            ..Default::default()
        };
        let terminated = |r: &RunView| ContainerState {
            terminated: Some(r.terminated()),
            ..Default::default()
        };
        let default_wait = || match &self.waiting {
            Some((r, m)) => waiting(r, (!m.is_empty()).then(|| m.clone())),
            None => waiting("ContainerCreating", None),
        };
        let (state, last) = match &self.current {
            None => (default_wait(), None),
            Some(r) if r.running => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: r.started_at.map(clock::k8s_time),
                    }),
                    ..Default::default()
                },
                self.previous
                    .as_ref()
                    .filter(|p| p.exited())
                    .map(terminated),
            ),
            Some(r) if r.created => (
                default_wait(),
                self.previous
                    .as_ref()
                    .filter(|p| p.exited())
                    .map(terminated),
            ),
            Some(r) if self.will_restart && self.waiting.is_some() => {
                (default_wait(), Some(terminated(r)))
            }
            Some(r) => (
                terminated(r),
                self.previous
                    .as_ref()
                    .filter(|p| p.exited())
                    .map(terminated),
            ),
        };
        let running = self.current.as_ref().is_some_and(|r| r.running);
        let completed = self
            .current
            .as_ref()
            .is_some_and(|r| r.exited() && r.code() == 0);
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self
                .current
                .as_ref()
                .map(|r| r.image_id.clone())
                .unwrap_or_default(),
            container_id: self.current.as_ref().map(|r| format!("corral://{}", r.id)),
            ready: if init {
                completed
            } else {
                running && self.ready && self.started
            },
            started: Some(running && self.started),
            restart_count: self.restart_count as i32,
            state: Some(state),
            last_state: Some(last.unwrap_or_default()),
            ..Default::default()
        }
    }

    /// What the phase computation needs.
    pub fn phase_state(&self) -> AppState {
        match &self.current {
            Some(r) if r.running => AppState::Running,
            Some(r) if r.exited() => AppState::Stopped(r.code()),
            // Made but not started, or waiting: restarting if it ran before.
            _ => match &self.previous {
                Some(p) if p.exited() => AppState::Stopped(p.code()),
                _ => AppState::Waiting,
            },
        }
    }
}

/// An app container's state for the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Never started yet.
    Waiting,
    /// Runs.
    Running,
    /// Exited with this code (restarting or not).
    Stopped(i32),
}

/// The pod's phase (`Pending`, `Running`, `Succeeded`, `Failed`), the kubelet's rules.
/// `init_failed`: an init container failed and will not be restarted.
pub fn phase(
    restart_policy: &str,
    initialized: bool,
    init_failed: bool,
    app: &[AppState],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for s in app {
        match s {
            AppState::Waiting => waiting += 1,
            AppState::Running => running += 1,
            AppState::Stopped(code) => {
                stopped += 1;
                if *code == 0 {
                    succeeded += 1;
                }
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// What the conditions say.
#[derive(Debug, Clone, Default)]
pub struct ConditionInputs {
    /// The sandbox runs and is on its network.
    pub sandbox_ready: bool,
    /// Init containers not yet completed.
    pub uninitialized: Vec<String>,
    /// App containers not ready.
    pub unready: Vec<String>,
    /// The pod's phase.
    pub phase: String,
}

/// The conditions the agent owns, in the kubelet's order, keeping `old` transition times of
/// those whose status did not change; other conditions in `old` are kept as they are.
pub fn conditions(
    old: &[PodCondition],
    now: SystemTime,
    inp: &ConditionInputs,
) -> Vec<PodCondition> {
    let completed = inp.phase == "Succeeded";
    let make = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" }.to_owned();
        let transition = old
            .iter()
            .find(|c| c.type_ == t && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| clock::k8s_time(now));
        PodCondition {
            type_: t.into(),
            status,
            reason: if ok { None } else { reason.map(Into::into) },
            message: if ok { None } else { message },
            last_transition_time: Some(transition),
            ..Default::default()
        }
    };
    let list = |names: &[String]| format!("[{}]", names.join(" "));
    let (init_ok, ready_ok) = (
        inp.uninitialized.is_empty(),
        inp.unready.is_empty() && !completed,
    );
    let not_ready_reason = if completed {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let not_ready_msg =
        (!completed).then(|| format!("containers with unready status: {}", list(&inp.unready)));
    let mut out = vec![
        make("PodReadyToStartContainers", inp.sandbox_ready, None, None),
        make(
            "Initialized",
            init_ok,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                list(&inp.uninitialized)
            )),
        ),
        make(
            "Ready",
            ready_ok,
            Some(not_ready_reason),
            not_ready_msg.clone(),
        ),
        make(
            "ContainersReady",
            ready_ok,
            Some(not_ready_reason),
            not_ready_msg,
        ),
    ];
    match old.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) => out.push(c.clone()),
        None => out.push(make("PodScheduled", true, None, None)),
    }
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    out.extend(
        old.iter()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use AppState::*;

    #[test]
    fn phases_follow_the_kubelet() {
        assert_eq!(phase("Always", false, false, &[Running]), "Pending");
        assert_eq!(phase("Never", false, true, &[Waiting]), "Failed");
        assert_eq!(phase("Always", true, false, &[Waiting, Running]), "Pending");
        assert_eq!(
            phase("Always", true, false, &[Running, Stopped(1)]),
            "Running"
        );
        assert_eq!(phase("Always", true, false, &[Stopped(0)]), "Running");
        assert_eq!(
            phase("OnFailure", true, false, &[Stopped(0), Stopped(0)]),
            "Succeeded"
        );
        assert_eq!(phase("Never", true, false, &[Stopped(0)]), "Succeeded");
        assert_eq!(
            phase("Never", true, false, &[Stopped(0), Stopped(2)]),
            "Failed"
        );
        assert_eq!(phase("OnFailure", true, false, &[Stopped(2)]), "Running");
        assert_eq!(phase("Always", true, false, &[]), "Pending");
    }

    fn run(running: bool, code: Option<i32>) -> RunView {
        RunView {
            id: "abc".into(),
            image_id: "sha256:1".into(),
            running,
            exit_code: code,
            started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100)),
            finished_at: code.map(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(200)),
            ..Default::default()
        }
    }

    #[test]
    fn container_states_and_last_states() {
        let mut v = ContainerView {
            name: "web".into(),
            image: "busybox".into(),
            current: Some(run(false, Some(1))),
            previous: Some(run(false, Some(2))),
            restart_count: 3,
            waiting: Some(("CrashLoopBackOff".into(), "back-off 20s".into())),
            will_restart: true,
            ready: true,
            started: true,
        };
        let s = v.status(false);
        let st = s.state.unwrap();
        assert_eq!(
            st.waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = s.last_state.unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(last.container_id.as_deref(), Some("corral://abc"));
        assert_eq!(s.restart_count, 3);
        assert!(!s.ready);
        assert_eq!(v.phase_state(), Stopped(1));

        v.current = Some(run(true, None));
        v.waiting = None;
        v.will_restart = false;
        let s = v.status(false);
        assert!(s.state.unwrap().running.is_some());
        assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 2);
        assert!(s.ready && s.started == Some(true));

        let mut done = run(false, Some(0));
        done.oom_killed = true;
        v.current = Some(done);
        let t = v.status(true).state.unwrap().terminated.unwrap();
        assert_eq!(t.reason.as_deref(), Some("OOMKilled"));

        let mut failed = run(false, None);
        failed.started_at = None;
        failed.start_error = Some("exec: \"nope\": not found".into());
        v.current = Some(failed);
        let t = v.status(false).state.unwrap().terminated.unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (128, Some("StartError"))
        );
        assert!(t.message.unwrap().contains("nope"));

        let fresh = ContainerView {
            name: "x".into(),
            waiting: Some(("ErrImagePull".into(), "no such image".into())),
            ..Default::default()
        };
        let w = fresh.status(false).state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("ErrImagePull"));
        assert_eq!(fresh.phase_state(), Waiting);
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        let inp = ConditionInputs {
            sandbox_ready: true,
            uninitialized: vec![],
            unready: vec!["web".into()],
            phase: "Running".into(),
        };
        let first = conditions(&[], t0, &inp);
        let types: Vec<&str> = first.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(first[2].status, "False");
        assert_eq!(
            first[2].message.as_deref(),
            Some("containers with unready status: [web]")
        );
        let ready = ConditionInputs {
            unready: vec![],
            ..inp
        };
        let second = conditions(&first, t1, &ready);
        assert_eq!(second[2].status, "True");
        assert_eq!(second[2].last_transition_time, Some(clock::k8s_time(t1)));
        assert_eq!(second[1].last_transition_time, Some(clock::k8s_time(t0)));
    }
}
