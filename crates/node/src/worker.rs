//! One pod's worker: the kubelet's `syncPod` for one pod, run on every change of the pod and
//! every resync interval. Each sync reads the world afresh — the pod from the store, its
//! engine pod and containers' states from the engine, its probes' results — and converges:
//! the sandbox (engine pod) running, volumes made, init containers run to completion in
//! order, app containers started, exited ones restarted as `restartPolicy` says with the
//! back-off, containers whose liveness failed killed; then the pod's status written when it
//! changed. A pod with `deletionTimestamp` is torn down (`teardown`).
//!
//! What a worker holds in memory (back-offs, probe tasks, why a container waits) is rebuilt
//! from the engine's containers when the agent starts again.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use corral_store::registry;
use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP, PodStatus};
use serde_json::Value;
use tokio::sync::watch;

use crate::backoff::{self, Backoff};
use crate::events::{EventType, PodRef};
use crate::probe::Probes;
use crate::runtime::Instance;
use crate::status::{self, ContainerView, RunView};
use crate::volumes::Prepared;
use crate::{blocking, clock, kv, runtime, NodeAgent, PodRuntime};

/// How often volumes with files from the store (configMap, secret ...) are rewritten.
pub(crate) const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// How often a pod at rest is resynced (its containers' ends wake it at once).
const QUIET_RESYNC: Duration = Duration::from_secs(10);
/// How long a container whose configuration failed waits before it is tried again.
pub(crate) const CONFIG_RETRY: Duration = Duration::from_secs(5);

/// What the agent knows of one container of the pod.
#[derive(Default)]
pub(crate) struct Slot {
    /// An init container.
    pub init: bool,
    /// The latest run.
    pub current: Option<Instance>,
    /// The run before it (kept for `logs --previous`).
    pub previous: Option<Instance>,
    /// The next run's attempt number.
    pub next_attempt: u32,
    /// The restart back-off.
    pub backoff: Backoff,
    /// The exit of this run is counted in the back-off.
    pub counted_exit: Option<String>,
    /// A `BackOff` event was recorded for the exit of this run.
    pub backoff_event: Option<String>,
    /// Why it waits (`ErrImagePull`, `CreateContainerConfigError` ...), set when a start
    /// failed before a run existed; cleared by a start.
    pub waiting: Option<(String, String)>,
    /// No new start before this (a configuration that failed).
    pub retry_at: Option<Instant>,
    /// The probes of the running run (its engine id).
    pub probes: Option<(String, Probes)>,
    /// A kill in progress (a failed liveness probe).
    pub killing: Option<tokio::task::JoinHandle<()>>,
}

/// A pod's worker.
pub(crate) struct Worker {
    pub agent: Arc<NodeAgent>,
    pub uid: String,
    pub ns: String,
    pub name: String,
    pub key: String,
    pub pod_ref: PodRef,
    /// The pod as last read from the store.
    pub pod: Pod,
    /// Its JSON as stored.
    pub obj: Value,
    /// The engine pod's id.
    pub engine_pod: Option<String>,
    pub pod_ip: Option<IpAddr>,
    pub slots: BTreeMap<String, Slot>,
    /// Pull back-off per image.
    pub images: HashMap<String, Backoff>,
    pub prepared: Option<HashMap<String, Prepared>>,
    pub volumes_synced: Option<Instant>,
    pub volume_error: Option<String>,
    pub sandbox_error: Option<String>,
    /// The pod runs in a VM of its own (its RuntimeClass's handler is `corral-vm`).
    pub vm: bool,
    pub start_time: Option<String>,
    /// The pod reached Succeeded or Failed: nothing runs any more.
    pub terminal: bool,
    /// Finished: the pod is gone (its key deleted).
    pub done: bool,
}

impl Worker {
    /// A worker for `obj`, adopting `adopted` engine containers and engine pod.
    pub fn new(
        agent: Arc<NodeAgent>,
        obj: Value,
        pod: Pod,
        engine_pod: Option<String>,
        adopted: Vec<Instance>,
    ) -> Worker {
        let m = &pod.metadata;
        let uid = m.uid.clone().unwrap_or_default();
        let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
        let name = m.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        for c in spec.init_containers.iter().flatten() {
            slots.insert(
                c.name.clone(),
                Slot {
                    init: true,
                    ..Default::default()
                },
            );
        }
        for c in &spec.containers {
            slots.entry(c.name.clone()).or_default();
        }
        let mut by_name: HashMap<String, Vec<Instance>> = HashMap::new();
        for i in adopted {
            by_name.entry(i.container.clone()).or_default().push(i);
        }
        let mut stale = Vec::new();
        for (cname, mut runs) in by_name {
            runs.sort_by_key(|r| r.attempt);
            let Some(slot) = slots.get_mut(&cname) else {
                stale.extend(runs.into_iter().map(|r| r.id));
                continue;
            };
            slot.next_attempt = runs.last().map_or(0, |r| r.attempt + 1);
            slot.current = runs.pop();
            slot.previous = runs.pop();
            stale.extend(runs.into_iter().map(|r| r.id));
            if let Some(cur) = &slot.current {
                let view = RunView::of(&cur.state);
                if view.exited() {
                    let since = view
                        .finished_at
                        .and_then(|f| SystemTime::now().duration_since(f).ok())
                        .unwrap_or_default();
                    slot.backoff = Backoff::resume(cur.attempt, since, Instant::now());
                    slot.counted_exit = Some(cur.id.clone());
                    slot.backoff_event = Some(cur.id.clone());
                }
            }
        }
        if !stale.is_empty() {
            let e = agent.engine.clone();
            tokio::task::spawn_blocking(move || {
                for id in stale {
                    let _ = e.remove(&id, true, true);
                }
            });
        }
        let start_time = obj["status"]["startTime"].as_str().map(str::to_owned);
        let terminal = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        Worker {
            key: registry::key("", "pods", Some(&ns), &name),
            pod_ref: PodRef {
                namespace: ns.clone(),
                name: name.clone(),
                uid: uid.clone(),
                kind: "Pod",
            },
            agent,
            uid,
            ns,
            name,
            pod,
            obj,
            engine_pod,
            pod_ip: None,
            slots,
            images: HashMap::new(),
            prepared: None,
            volumes_synced: None,
            volume_error: None,
            sandbox_error: None,
            vm: false,
            start_time,
            terminal,
            done: false,
        }
    }

    /// Runs until the pod is gone (`None` from the channel) or the agent stops (the
    /// channel's sender dropped: what runs is left running, for the next agent to adopt).
    pub async fn run(mut self, mut rx: watch::Receiver<Option<Value>>) {
        loop {
            let latest = rx.borrow_and_update().clone();
            match latest {
                None => {
                    self.remove_gone().await;
                    break;
                }
                Some(v) => {
                    if let Ok(p) = serde_json::from_value::<Pod>(v.clone()) {
                        self.pod = p;
                        self.obj = v;
                    }
                }
            }
            self.sync().await;
            self.publish();
            if self.done {
                break;
            }
            // A pod at rest (every container running, nothing to retry, no probes) is woken
            // by its containers' ends (their monitors' pidfds) and otherwise resynced seldom;
            // anything else is resynced every `resync_interval`.
            let exits = self.exit_watch();
            let wait = if exits.is_some() {
                QUIET_RESYNC
            } else {
                self.agent.cfg.resync_interval
            };
            let ended = async move {
                match exits {
                    Some(rxs) if !rxs.is_empty() => {
                        let _ = futures_util::future::select_all(rxs).await;
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The agent stops.
                        return;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = ended => {}
            }
        }
        self.unpublish();
        self.agent.events.forget(&self.uid);
    }

    /// When the pod is at rest, a receiver per running container's monitor that resolves
    /// when the monitor ends (after it recorded the container's exit); `None` when the pod
    /// needs the short resync.
    fn exit_watch(&self) -> Option<Vec<tokio::sync::oneshot::Receiver<()>>> {
        let spec = self.pod.spec.as_ref()?;
        let at_rest = self.pod.metadata.deletion_timestamp.is_none()
            && !self.terminal
            && self.sandbox_error.is_none()
            && self.volume_error.is_none()
            && self.pod_ip.is_some()
            && spec.containers.iter().all(|c| {
                c.liveness_probe.is_none()
                    && c.readiness_probe.is_none()
                    && c.startup_probe.is_none()
            });
        if !at_rest {
            return None;
        }
        let mut exits = Vec::new();
        for c in &spec.containers {
            let slot = self.slots.get(&c.name)?;
            if slot.waiting.is_some() || slot.killing.is_some() {
                return None;
            }
            let run = slot.current.as_ref()?;
            if run.state.status != corral_container::Status::Running {
                return None;
            }
            exits.push(self.agent.exits.watch(run.state.monitor_pid?)?);
        }
        Some(exits)
    }

    pub fn field_path(&self, c: &str) -> String {
        let init = self.slots.get(c).is_some_and(|s| s.init);
        if init {
            format!("spec.initContainers{{{c}}}")
        } else {
            format!("spec.containers{{{c}}}")
        }
    }

    pub async fn event(
        &self,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let fp = container.map(|c| self.field_path(c));
        self.agent
            .events
            .record(&self.pod_ref, fp.as_deref(), kind, reason, message)
            .await;
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// One sync.
    async fn sync(&mut self) {
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.terminate().await;
            return;
        }
        if self.terminal {
            return;
        }
        if !self.ensure_sandbox().await {
            self.write_status().await;
            return;
        }
        if !self.ensure_volumes().await {
            self.write_status().await;
            return;
        }
        self.refresh().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = self.restart_policy();
        // Init containers, in order, each to completion.
        let mut initialized = true;
        for c in spec.init_containers.iter().flatten() {
            let wanted = if policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            if !self.converge(c, wanted).await {
                initialized = false;
                break;
            }
        }
        if initialized {
            for c in &spec.containers {
                self.converge(c, &policy).await;
            }
        }
        self.write_status().await;
    }

    /// Reads the states of the pod's engine containers.
    pub async fn refresh(&mut self) {
        let ids: Vec<String> = self
            .slots
            .values()
            .flat_map(|s| [&s.current, &s.previous])
            .flatten()
            .map(|i| i.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let states = blocking(&self.agent.engine, move |e| runtime::states(e, &ids)).await;
        for slot in self.slots.values_mut() {
            for run in [&mut slot.current, &mut slot.previous] {
                if let Some(i) = run {
                    match states.get(&i.id) {
                        Some(s) => i.state = s.clone(),
                        // Removed behind the agent's back: a run that is no more.
                        None => *run = None,
                    }
                }
            }
        }
    }

    /// Drives one container towards what its policy wants. Returns whether it is done with
    /// (an init container that completed; for app containers the value is unused).
    async fn converge(&mut self, c: &Container, policy: &str) -> bool {
        enum Next {
            Wait,
            Done,
            Start,
            StartExisting(String),
            Probes,
        }
        let now = Instant::now();
        let name = c.name.clone();
        let who = format!("{}_{}({})", self.name, self.ns, self.uid);
        let mut backoff_event = None;
        let next = {
            let Some(slot) = self.slots.get_mut(&name) else {
                return false;
            };
            let killing = slot.killing.as_ref().is_some_and(|k| !k.is_finished());
            if !killing {
                slot.killing = None;
            }
            let view = slot.current.as_ref().map(|i| RunView::of(&i.state));
            let retry_ok = slot.retry_at.is_none_or(|t| now >= t);
            match view {
                _ if killing => Next::Wait,
                None if retry_ok => Next::Start,
                None => Next::Wait,
                // Made and never started (a crash between the two): start it now.
                Some(v) if v.created => Next::StartExisting(
                    slot.current
                        .as_ref()
                        .map(|i| i.id.clone())
                        .unwrap_or_default(),
                ),
                Some(v) if v.running => Next::Probes,
                Some(v) => {
                    slot.probes = None;
                    let id = slot
                        .current
                        .as_ref()
                        .map(|i| i.id.clone())
                        .unwrap_or_default();
                    let code = v.code();
                    let wants = match policy {
                        _ if slot.init && code == 0 => false,
                        "Always" => true,
                        "OnFailure" => code != 0,
                        _ => false,
                    };
                    if slot.init && code == 0 {
                        slot.waiting = None;
                        Next::Done
                    } else if !wants {
                        slot.waiting = None;
                        Next::Wait
                    } else {
                        if slot.counted_exit.as_deref() != Some(&id) {
                            let ran = match (v.started_at, v.finished_at) {
                                (Some(s), Some(f)) => f.duration_since(s).unwrap_or_default(),
                                _ => Duration::ZERO,
                            };
                            let ago = v
                                .finished_at
                                .and_then(|f| SystemTime::now().duration_since(f).ok())
                                .unwrap_or_default();
                            slot.backoff
                                .failed(ran, now.checked_sub(ago).unwrap_or(now));
                            slot.counted_exit = Some(id.clone());
                        }
                        match slot.backoff.current(now) {
                            Some(d) => {
                                let msg = format!(
                                    "back-off {} restarting failed container={name} pod={who}",
                                    backoff::go_duration(d)
                                );
                                slot.waiting = Some(("CrashLoopBackOff".into(), msg));
                                if slot.backoff_event.as_deref() != Some(&id) {
                                    slot.backoff_event = Some(id);
                                    backoff_event = Some(format!(
                                        "Back-off restarting failed container {name} in pod {who}"
                                    ));
                                }
                                Next::Wait
                            }
                            None if retry_ok => Next::Start,
                            None => Next::Wait,
                        }
                    }
                }
            }
        };
        if let Some(m) = backoff_event {
            self.event(Some(&name), EventType::Warning, "BackOff", &m)
                .await;
        }
        match next {
            Next::Wait => false,
            Next::Done => true,
            Next::Start => {
                self.start(c).await;
                false
            }
            Next::StartExisting(id) => {
                self.start_existing(c, &id).await;
                false
            }
            Next::Probes => {
                self.watch_probes(c).await;
                false
            }
        }
    }

    /// Starts the probes of a running container, and kills it when liveness fails.
    async fn watch_probes(&mut self, c: &Container) {
        let grace = self.grace_for_kill(c);
        let Some(slot) = self.slots.get_mut(&c.name) else {
            return;
        };
        let Some(cur) = slot.current.clone() else {
            return;
        };
        slot.waiting = None;
        if slot.probes.as_ref().is_none_or(|(id, _)| *id != cur.id) {
            slot.probes = None;
            let has_probes = c.liveness_probe.is_some()
                || c.readiness_probe.is_some()
                || c.startup_probe.is_some();
            if has_probes && !slot.init {
                let target = crate::probe::Target::new(&self.agent.engine, self.pod_ip, &cur.id);
                let started = cur
                    .state
                    .started_at
                    .as_deref()
                    .and_then(clock::parse)
                    .unwrap_or_else(SystemTime::now);
                let reporter = crate::probe::Reporter {
                    events: self.agent.events.clone(),
                    pod: self.pod_ref.clone(),
                    field_path: format!("spec.containers{{{}}}", c.name),
                };
                match Probes::start(c, target, started, reporter) {
                    Ok(p) => slot.probes = Some((cur.id.clone(), p)),
                    Err(e) => tracing::warn!(pod = %self.name, container = %c.name, "probes: {e}"),
                }
            }
        }
        let kill = slot.probes.as_ref().and_then(|(_, p)| p.results().kill);
        if let Some(why) = kill {
            if slot.killing.is_none() {
                slot.probes = None;
                // As the kubelet does: the preStop hook, then SIGTERM, within the grace.
                slot.killing = Some(crate::hooks::spawn_stop(
                    &self.agent,
                    &self.pod_ref,
                    self.pod_ip,
                    (&c.name, &cur.id),
                    crate::hooks::pre_stop_of(c),
                    grace,
                ));
                let msg = format!("Container {} {why}", c.name);
                self.event(Some(&c.name), EventType::Normal, "Killing", &msg)
                    .await;
            }
        }
    }

    fn grace_for_kill(&self, c: &Container) -> u64 {
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.termination_grace_period_seconds)
            .or(self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64
    }

    /// The status of one container.
    fn view(&self, c: &Container, init_done: bool) -> ContainerView {
        let slot = self.slots.get(&c.name);
        let current = slot.and_then(|s| s.current.as_ref());
        let results = slot
            .and_then(|s| s.probes.as_ref())
            .map(|(_, p)| p.results());
        let has_readiness = c.readiness_probe.is_some();
        let has_startup = c.startup_probe.is_some();
        let mut waiting = slot.and_then(|s| s.waiting.clone());
        let is_init = slot.is_some_and(|s| s.init);
        if current.is_none() && waiting.is_none() && !is_init && !init_done {
            waiting = Some(("PodInitializing".into(), String::new()));
        }
        let cur_view = current.map(|i| RunView::of(&i.state));
        ContainerView {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            restart_count: current.map_or(0, |i| i.attempt),
            will_restart: waiting
                .as_ref()
                .is_some_and(|(r, _)| r == "CrashLoopBackOff")
                && cur_view.as_ref().is_some_and(|v| v.exited()),
            current: cur_view,
            previous: slot
                .and_then(|s| s.previous.as_ref())
                .map(|i| RunView::of(&i.state)),
            waiting,
            ready: results.as_ref().map_or(!has_readiness, |r| r.ready),
            started: results.as_ref().map_or(!has_startup, |r| r.started),
        }
    }

    /// The pod's status as things are.
    pub fn status(&self, force_phase: Option<&str>) -> Value {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = self.restart_policy();
        let inits: Vec<(&Container, ContainerView)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c, self.view(c, false)))
            .collect();
        let uninitialized: Vec<String> = inits
            .iter()
            .filter(|(_, v)| {
                !v.current
                    .as_ref()
                    .is_some_and(|r| r.exited() && r.code() == 0)
            })
            .map(|(c, _)| c.name.clone())
            .collect();
        let init_failed = policy == "Never"
            && inits.iter().any(|(_, v)| {
                v.current
                    .as_ref()
                    .is_some_and(|r| r.exited() && r.code() != 0)
            });
        let initialized = uninitialized.is_empty();
        let apps: Vec<ContainerView> = spec
            .containers
            .iter()
            .map(|c| self.view(c, initialized))
            .collect();
        let app_states: Vec<status::AppState> = apps.iter().map(|v| v.phase_state()).collect();
        let phase = force_phase.map(str::to_owned).unwrap_or_else(|| {
            status::phase(&policy, initialized, init_failed, &app_states).to_owned()
        });
        let app_statuses: Vec<_> = apps.iter().map(|v| v.status(false)).collect();
        let unready: Vec<String> = app_statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.clone())
            .collect();
        let old_conditions = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let conditions = status::conditions(
            &old_conditions,
            SystemTime::now(),
            &status::ConditionInputs {
                sandbox_ready: self.engine_pod.is_some()
                    && self.sandbox_error.is_none()
                    && !self.terminal,
                uninitialized,
                unready,
                phase: phase.clone(),
            },
        );
        let host_ip = self.agent.host.ip.to_string();
        let pod_ip = self
            .pod_ip
            .map(|i| i.to_string())
            .or_else(|| self.pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
        let st = PodStatus {
            phase: Some(phase),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            pod_ip,
            start_time: self
                .start_time
                .as_deref()
                .and_then(clock::parse)
                .map(clock::k8s_time),
            qos_class: Some(crate::quantity::qos_class(&spec).into()),
            container_statuses: Some(app_statuses),
            init_container_statuses: (!inits.is_empty())
                .then(|| inits.iter().map(|(_, v)| v.status(true)).collect()),
            observed_generation: self.pod.metadata.generation,
            ..Default::default()
        };
        serde_json::to_value(st).expect("a pod status serializes")
    }

    /// Writes the status if it changed; the phase it wrote.
    pub async fn write_status_with(&mut self, force_phase: Option<&str>) -> Option<String> {
        if self.start_time.is_none() {
            self.start_time = Some(clock::now());
        }
        let new = self.status(force_phase);
        let phase = new["phase"].as_str().map(str::to_owned);
        let uid = self.uid.clone();
        let res = kv::update(&*self.agent.store, &self.key, |v| {
            if v["metadata"]["uid"].as_str() != Some(uid.as_str()) {
                return false;
            }
            let mut merged = new.clone();
            // Fields of the status the agent does not own stay (nominatedNodeName, resize ...).
            if let (Some(m), Some(old)) = (merged.as_object_mut(), v["status"].as_object()) {
                for (k, val) in old {
                    m.entry(k.clone()).or_insert_with(|| val.clone());
                }
            }
            if v["status"] == merged {
                return false;
            }
            v["status"] = merged;
            true
        })
        .await;
        match res {
            Ok(Some(v)) => {
                if let Ok(p) = serde_json::from_value::<Pod>(v.clone()) {
                    self.pod = p;
                    self.obj = v;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pod = %self.name, namespace = %self.ns, "writing the pod's status: {e}")
            }
        }
        phase
    }

    async fn write_status(&mut self) {
        let phase = self.write_status_with(None).await;
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) && !self.terminal {
            // Nothing will run again: the sandbox goes, its address with it.
            self.terminal = true;
            for slot in self.slots.values_mut() {
                slot.probes = None;
            }
            if let Some(id) = self.engine_pod.clone() {
                let r = blocking(&self.agent.engine, move |e| e.stop_pod(&id, Some(0))).await;
                if let Err(e) = r {
                    tracing::warn!(pod = %self.name, "stopping the sandbox of a finished pod: {e}");
                }
            }
            self.pod_ip = None;
        }
    }

    /// Tells the agent what runs (for [`NodeAgent::container_id`] and friends).
    fn publish(&self) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let rt = PodRuntime {
            uid: self.uid.clone(),
            ip: self.pod_ip,
            app: spec.containers.iter().map(|c| c.name.clone()).collect(),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect(),
            current: self
                .slots
                .iter()
                .filter_map(|(n, s)| s.current.as_ref().map(|i| (n.clone(), i.id.clone())))
                .collect(),
            previous: self
                .slots
                .iter()
                .filter_map(|(n, s)| s.previous.as_ref().map(|i| (n.clone(), i.id.clone())))
                .collect(),
        };
        self.agent
            .runtime
            .lock()
            .expect("runtime lock")
            .insert((self.ns.clone(), self.name.clone()), rt);
    }

    fn unpublish(&self) {
        let mut rt = self.agent.runtime.lock().expect("runtime lock");
        let k = (self.ns.clone(), self.name.clone());
        if rt.get(&k).is_some_and(|r| r.uid == self.uid) {
            rt.remove(&k);
        }
    }
}
