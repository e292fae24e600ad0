//! Starting one run of a container, the kubelet's `startContainer`: the image pulled as
//! `imagePullPolicy` says (with `Pulling`/`Pulled` events, and `ErrImagePull` then
//! `ImagePullBackOff` under a back-off per image), the environment resolved (a missing
//! ConfigMap or Secret key is `CreateContainerConfigError`), the mounts made, the engine
//! container created (`Created`) and started (`Started`, or `Failed` with the engine's reason:
//! a command that does not exist is a run that ended with `StartError`). The run before the
//! latest is kept for `logs --previous`; older ones are removed.

use std::time::Instant;

use corral_engine::containers::{chain, PullOptions};
use corral_engine::spec::PullPolicy;
use corral_engine::Engine;
use k8s_openapi::api::core::v1::Container;

use crate::events::EventType;
use crate::runspec::{self, ImagePull, RunContext};
use crate::runtime::{self, Instance};
use crate::worker::{Worker, CONFIG_RETRY};
use crate::{blocking, env, volumes};

/// The `USER` of an image.
fn image_user(i: &corral_image::Image) -> String {
    i.config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default()
}

impl Worker {
    /// Marks a container as waiting for `reason`, to be tried again after a while; records
    /// `Failed` when the reason is new.
    async fn wait_for(&mut self, c: &str, reason: &str, message: String, event: Option<String>) {
        let Some(slot) = self.slots.get_mut(c) else {
            return;
        };
        let new = slot.waiting.as_ref() != Some(&(reason.to_owned(), message.clone()));
        slot.waiting = Some((reason.to_owned(), message.clone()));
        slot.retry_at = Some(Instant::now() + CONFIG_RETRY);
        if new {
            let text = event.unwrap_or_else(|| format!("Error: {message}"));
            self.event(Some(c), EventType::Warning, "Failed", &text)
                .await;
        }
    }

    /// Makes sure the image is there; its `USER`. `None` while it is not (the container's
    /// waiting reason says why).
    async fn pull(&mut self, c: &Container) -> Option<String> {
        let name = c.name.clone();
        let image = c.image.clone().unwrap_or_default();
        let policy = runspec::pull_policy(c);
        let now = Instant::now();
        let backoff = self.images.entry(image.clone()).or_default();
        if !backoff.ready(now) {
            let slot = self.slots.get_mut(&name)?;
            let prev = slot.waiting.clone().unwrap_or_default();
            if prev.0 != "ImagePullBackOff" {
                let cause = if prev.1.is_empty() {
                    String::new()
                } else {
                    format!(": ErrImagePull: {}", prev.1)
                };
                slot.waiting = Some((
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image \"{image}\"{cause}"),
                ));
                let m = format!("Back-off pulling image \"{image}\"");
                self.event(Some(&name), EventType::Normal, "BackOff", &m)
                    .await;
            }
            return None;
        }
        let img = image.clone();
        let local = blocking(&self.agent.engine, move |e| {
            e.images().ok()?.resolve(&img).ok().map(|i| image_user(&i))
        })
        .await;
        match (policy, local) {
            (ImagePull::Never, None) => {
                let m =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.wait_for(&name, "ErrImageNeverPull", m.clone(), Some(m))
                    .await;
                None
            }
            (ImagePull::Never | ImagePull::IfNotPresent, Some(user)) => {
                let m = format!("Container image \"{image}\" already present on machine");
                self.event(Some(&name), EventType::Normal, "Pulled", &m)
                    .await;
                Some(user)
            }
            _ => {
                let m = format!("Pulling image \"{image}\"");
                self.event(Some(&name), EventType::Normal, "Pulling", &m)
                    .await;
                let t0 = Instant::now();
                let img = image.clone();
                let r = blocking(&self.agent.engine, move |e: &Engine| {
                    e.image_for_run(&img, PullPolicy::Always, &PullOptions::default())
                        .map(|(_, i)| image_user(&i))
                        .map_err(|err| chain(&err))
                })
                .await;
                match r {
                    Ok(user) => {
                        self.images.entry(image.clone()).or_default().reset();
                        let secs = t0.elapsed().as_secs_f64();
                        let m = format!(
                            "Successfully pulled image \"{image}\" in {secs:.3}s ({secs:.3}s including waiting)"
                        );
                        self.event(Some(&name), EventType::Normal, "Pulled", &m)
                            .await;
                        Some(user)
                    }
                    Err(err) => {
                        self.images
                            .entry(image.clone())
                            .or_default()
                            .failed(std::time::Duration::ZERO, Instant::now());
                        let m = format!("Failed to pull image \"{image}\": {err}");
                        self.event(Some(&name), EventType::Warning, "Failed", &m)
                            .await;
                        if let Some(slot) = self.slots.get_mut(&name) {
                            slot.waiting = Some(("ErrImagePull".into(), err));
                            slot.retry_at = None;
                        }
                        self.event(
                            Some(&name),
                            EventType::Warning,
                            "Failed",
                            "Error: ErrImagePull",
                        )
                        .await;
                        None
                    }
                }
            }
        }
    }

    /// Starts a new run of `c`.
    pub(crate) async fn start(&mut self, c: &Container) {
        let name = c.name.clone();
        let Some(engine_pod) = self.engine_pod.clone() else {
            return;
        };
        let Some(user) = self.pull(c).await else {
            return;
        };
        let (cms, secrets) = env::referenced(c);
        let sources = match self.sources(cms, secrets).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pod = %self.name, container = %name, "reading the environment's sources: {e}");
                return;
            }
        };
        let env = match env::resolve(&self.pod, c, &sources, &self.field_context()) {
            Ok(e) => e,
            Err(m) => {
                return self
                    .wait_for(&name, "CreateContainerConfigError", m, None)
                    .await
            }
        };
        if let Err(m) = runspec::check_non_root(&self.pod, c, &user) {
            return self
                .wait_for(&name, "CreateContainerConfigError", m, None)
                .await;
        }
        let prepared = self.prepared.clone().unwrap_or_default();
        let c2 = c.clone();
        let mounts =
            match tokio::task::spawn_blocking(move || volumes::mounts(&c2, &prepared)).await {
                Ok(Ok(m)) => m,
                Ok(Err(m)) => {
                    return self
                        .wait_for(&name, "CreateContainerConfigError", m, None)
                        .await
                }
                Err(e) => {
                    return self
                        .wait_for(&name, "CreateContainerError", e.to_string(), None)
                        .await
                }
            };
        let Some(slot) = self.slots.get(&name) else {
            return;
        };
        let (attempt, init) = (slot.next_attempt, slot.init);
        let cname = runtime::container_name(&name, &self.name, &self.ns, &self.uid, attempt);
        let seccomp_dir = self.agent.engine.root().join("kubelet").join("seccomp");
        let spec = match runspec::container_spec(
            &self.pod,
            c,
            RunContext {
                engine_pod: &engine_pod,
                name: cname.clone(),
                attempt,
                init,
                env,
                mounts,
                seccomp_dir: &seccomp_dir,
                image_user: &user,
                vm: self.vm,
            },
        ) {
            Ok(s) => s,
            Err(m) => {
                return self
                    .wait_for(&name, "CreateContainerConfigError", m, None)
                    .await
            }
        };
        let created = blocking(&self.agent.engine, move |e| {
            // A container of this name left by an earlier agent (made, its record lost).
            if let Ok(id) = e.resolve(&cname) {
                let _ = e.remove(&id, true, true);
            }
            e.create(&spec, &PullOptions::default())
                .map(|c| c.id)
                .map_err(|err| chain(&err))
        })
        .await;
        let id = match created {
            Ok(id) => id,
            Err(m) => return self.wait_for(&name, "CreateContainerError", m, None).await,
        };
        let m = format!("Created container: {name}");
        self.event(Some(&name), EventType::Normal, "Created", &m)
            .await;
        if let Some(slot) = self.slots.get_mut(&name) {
            slot.next_attempt = attempt + 1;
        }
        self.run_created(c, &id, attempt, init, true).await;
    }

    /// The container's `lifecycle.postStart`, run as the kubelet runs it: right after the
    /// start, while the worker waits (the pod is not Ready meanwhile), within the termination
    /// grace period. A hook that fails is a `FailedPostStartHook` event and kills the
    /// container, which then restarts as the pod's `restartPolicy` says.
    async fn post_start(&mut self, c: &Container, id: &str) {
        let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return;
        };
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(1) as u64;
        let target = crate::probe::Target::new(&self.agent.engine, self.pod_ip, id);
        let limit = std::time::Duration::from_secs(grace);
        let failed = crate::hooks::failure(crate::hooks::hook_of(h, c), &target, limit).await;
        if let Some(why) = failed {
            let msg = format!("PostStartHook failed: {why}");
            self.event(
                Some(&c.name),
                EventType::Warning,
                "FailedPostStartHook",
                &msg,
            )
            .await;
            let cid = id.to_owned();
            blocking(&self.agent.engine, move |e| {
                if let Err(err) = e.kill(&cid, "KILL") {
                    tracing::warn!(container = %cid, "killing after a failed postStart hook: {err}");
                }
            })
            .await;
        }
    }

    /// Starts a run that exists but never started.
    pub(crate) async fn start_existing(&mut self, c: &Container, id: &str) {
        let (attempt, init) = self
            .slots
            .get(&c.name)
            .and_then(|s| s.current.as_ref())
            .map_or((0, false), |i| (i.attempt, i.init));
        self.run_created(c, id, attempt, init, false).await;
    }

    /// Starts engine container `id` and records how it went. `new`: it becomes the
    /// container's current run (the current one becoming the previous, the previous removed);
    /// otherwise it already is the current run.
    async fn run_created(&mut self, c: &Container, id: &str, attempt: u32, init: bool, new: bool) {
        let name = c.name.clone();
        let cid = id.to_owned();
        let (started, state) = blocking(&self.agent.engine, move |e| {
            let r = e.start(&cid, false).map_err(|err| chain(&err));
            let state = e.containers().ok().and_then(|cs| cs.load(&cid).ok());
            (r, state)
        })
        .await;
        let Some(state) = state else {
            return self
                .wait_for(
                    &name,
                    "CreateContainerError",
                    format!("container {id} vanished while it started"),
                    None,
                )
                .await;
        };
        if let (Err(m), corral_container::Status::Created) = (&started, state.status) {
            // Nothing ran (the sandbox could not be joined): not a run; tried again later.
            let cid = id.to_owned();
            blocking(&self.agent.engine, move |e| {
                let _ = e.remove(&cid, true, true);
            })
            .await;
            return self
                .wait_for(&name, "RunContainerError", m.clone(), None)
                .await;
        }
        if let Some(pid) = state.monitor_pid {
            self.agent.reaper.watch(pid);
        }
        let Some(slot) = self.slots.get_mut(&name) else {
            return;
        };
        let stale = if new {
            let stale = slot.previous.take();
            slot.previous = slot.current.take();
            stale
        } else {
            None
        };
        slot.current = Some(Instance {
            id: id.to_owned(),
            container: name.clone(),
            attempt,
            init,
            state,
        });
        slot.waiting = None;
        slot.retry_at = None;
        slot.probes = None;
        if let Some(old) = stale {
            let e = self.agent.engine.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(err) = e.remove(&old.id, true, true) {
                    tracing::warn!(container = %old.id, "removing an old run: {err}");
                }
            });
        }
        match started {
            Ok(_) => {
                let m = format!("Started container {name}");
                self.event(Some(&name), EventType::Normal, "Started", &m)
                    .await;
                self.post_start(c, id).await;
            }
            Err(m) => {
                let text = format!("Error: failed to start container \"{name}\": {m}");
                self.event(Some(&name), EventType::Warning, "Failed", &text)
                    .await;
            }
        }
    }
}
