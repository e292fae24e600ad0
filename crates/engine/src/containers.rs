//! Containers: create (image pulled when the policy says so, volumes made), start (again, for
//! an exited one, as docker does), run, stop with the image's stop signal, kill, restart,
//! remove (with its anonymous volumes), exec, wait, rename, pause — each recording its event.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_container::container_create::{self, CreateRequest};
pub use corral_container::container_start::Attach;
use corral_container::container_start::{self, StartError};
use corral_container::state::StateError;
use corral_container::{container_delete, container_kill, container_pause, Containers, Status};
use corral_image::progress::Progress;

use crate::events::Event;
use crate::record::Record;
use crate::spec::{ContainerSpec, Isolation, PullPolicy};
use crate::{Engine, EngineError, Result, CGROUP_ROOT};

/// A container the engine made.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// How a started workload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// It runs in the background.
    Detached,
    /// It ran attached and exited with this code.
    Exited(i32),
}

/// How to pull images the store lacks.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Where progress goes (`None`: nowhere).
    pub progress: Option<Arc<dyn Progress>>,
    /// Registry options (TLS, credentials); `None`: the defaults under the state root.
    pub registry: Option<corral_image::registry::RegistryOptions>,
}

/// An `exec` request.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Command and arguments.
    pub command: Vec<String>,
    /// `K=V` additions.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, names resolved in the container.
    pub user: Option<String>,
    /// Keep stdin open.
    pub interactive: bool,
    /// A terminal.
    pub tty: bool,
    /// Do not wait.
    pub detach: bool,
    /// Every capability and no seccomp filter (`exec --privileged`).
    pub privileged: bool,
    /// With `-it`: the keys that detach, leaving the command running (docker's
    /// `--detach-keys`, default ctrl-p ctrl-q; empty: none).
    pub detach_keys: Vec<u8>,
}

impl Engine {
    /// Finds `reference` in the store, pulling it as `policy` says.
    pub fn image_for_run(
        &self,
        reference: &str,
        policy: PullPolicy,
        pull: &PullOptions,
    ) -> Result<(corral_image::Store, corral_image::Image)> {
        let store = self.images()?;
        let local = store.resolve(reference);
        let want_pull = match (policy, &local) {
            (PullPolicy::Never, _) => false,
            (PullPolicy::Missing, Ok(_)) => false,
            (PullPolicy::Missing, Err(_)) => true,
            (PullPolicy::Always | PullPolicy::Newer, _) => true,
        };
        if !want_pull {
            return match local {
                Ok(img) => Ok((store, img)),
                Err(corral_image::store::StoreError::NotFound(_)) => {
                    Err(EngineError::NotFound(format!(
                        "image {reference} is not in the store and --pull=never forbids pulling it"
                    )))
                }
                Err(e) => Err(e.into()),
            };
        }
        let name = match corral_image::reference::ImageName::parse(reference) {
            Ok(n) => n,
            // An id prefix that is not in the store: nothing to pull.
            Err(_) => return Ok((store.clone(), local?)),
        };
        let opts =
            pull.registry
                .clone()
                .unwrap_or_else(|| corral_image::registry::RegistryOptions {
                    tls_verify: true,
                    auth_file: self.root.join("auth.json"),
                });
        let progress = pull
            .progress
            .clone()
            .unwrap_or_else(|| Arc::new(corral_image::progress::NoProgress));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(crate::io_err(
                "starting the async runtime for",
                Path::new(reference),
            ))?;
        match rt.block_on(corral_image::registry::pull(&store, &name, &opts, progress)) {
            Ok(pulled) => {
                self.emit(
                    Event::new("image", "pull", &pulled.id.to_string()).attr("name", name.full()),
                );
                Ok((store.clone(), store.resolve(&name.full())?))
            }
            // `newer`: a registry that cannot be reached keeps the local image.
            Err(e) if policy == PullPolicy::Newer && local.is_ok() => {
                tracing::warn!("pulling {reference}: {e}; using the local image");
                Ok((store, local?))
            }
            Err(e) if local.is_err() => Err(EngineError::NotFound(format!(
                "image {reference} is not in the store, and pulling it failed: {}",
                chain(&e)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a container (or, with [`Isolation::Vm`], a VM that runs it); nothing runs yet.
    pub fn create(&self, spec: &ContainerSpec, pull: &PullOptions) -> Result<Created> {
        if spec.isolation == Isolation::Vm {
            return self.create_isolated(spec);
        }
        if let Some(p) = &spec.pod {
            if self.resolve_pod(p)?.isolation == Isolation::Vm {
                crate::pod_vm::check_member_spec(spec)?;
            }
        }
        let (store, img) = self.image_for_run(&spec.image, spec.pull, pull)?;
        let mut plan = crate::plan::plan(self, &store, &img, spec)?;
        let cs = self.containers()?;
        // Volumes first: the container's config names their directories.
        let vols = self.volumes()?;
        let mut made = Vec::new();
        for v in &plan.volumes {
            let name = match &v.name {
                Some(n) => n.clone(),
                None => {
                    let id = corral_container::state::new_id()
                        .map_err(crate::io_err("reading", Path::new("/dev/urandom")))?;
                    made.push(id.clone());
                    id
                }
            };
            let (_, new) = vols.create(&name)?;
            if new && v.name.is_some() {
                self.emit(Event::new("volume", "create", &name).attr("name", &name));
            }
            plan.config.binds[v.bind].source = vols.mountpoint(&name);
        }
        let undo_volumes = |made: &[String]| {
            for v in made {
                let _ = vols.remove(v, &cs);
            }
        };
        let entrypoint = plan.config.args[..plan.entrypoint_len].to_vec();
        // Everything the container's directory holds comes in with it, in one rename: a
        // crash leaves the container whole or absent (corral-container's commit point).
        plan.record.anonymous_volumes = made.clone();
        let mut files: Vec<(&str, Vec<u8>)> = vec![(
            crate::record::FILE,
            serde_json::to_vec_pretty(&plan.record).expect("serializable"),
        )];
        if !plan.attachments.is_empty() {
            files.push((
                corral_net::attach::REQUESTS,
                serde_json::to_vec(&plan.attachments).expect("serializable"),
            ));
        } else if !plan.record.extra_hosts.is_empty() && plan.record.pod.is_none() {
            // --add-host without a corral network: a hosts file of its own (docker's too).
            let mut hosts =
                String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
            for (name, ip) in &plan.record.extra_hosts {
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
            files.push(("hosts", hosts.into_bytes()));
        }
        if spec.dns_hold {
            files.push((crate::networks::DNS_HELD, Vec::new()));
        }
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let state = match container_create::create_with_files(
            &cs,
            CreateRequest {
                name: spec.name.clone(),
                image: spec.image.clone(),
                image_id: plan.image_id.clone(),
                config: plan.config,
                auto_remove: spec.auto_remove,
                entrypoint,
                userns_auto: plan.userns_auto,
            },
            &files,
        ) {
            Ok(s) => s,
            Err(e) => {
                undo_volumes(&made);
                return Err(e.into());
            }
        };
        self.emit(
            Event::new("container", "create", &state.id)
                .attr("name", &state.name)
                .attr("image", &state.image)
                .labels(&plan.record.labels),
        );
        Ok(Created {
            id: state.id,
            name: state.name,
        })
    }

    /// Resolves a container's name or id (prefix).
    pub fn resolve(&self, what: &str) -> Result<String> {
        Ok(self.containers()?.resolve(what)?)
    }

    /// Starts a container: a created one, or an exited one again with its configuration and
    /// its filesystem's changes (docker's `start`). Attached, waits for its end and returns
    /// its exit code.
    pub fn start(&self, id: &str, attach: bool) -> Result<Started> {
        self.start_with(
            id,
            if attach {
                Attach::Attached
            } else {
                Attach::Detached
            },
        )
    }

    /// [`Self::start`] with the attachment spelled out: [`Attach::Streams`] shows only some
    /// of the output streams (docker's `run -a stdout`).
    pub fn start_with(&self, id: &str, mode: Attach) -> Result<Started> {
        let cs = self.containers()?;
        let s = cs.load(id)?;
        match s.status {
            // docker: nothing to do, and no error.
            Status::Running => return Ok(Started::Detached),
            Status::Exited => self.reset_for_start(&cs, s)?,
            Status::Created => {}
        }
        // One read of the record: a container outside a VM pod pays nothing more to start.
        let record = Record::load(&cs.dir(id));
        if let Some(pod) = self.vm_pod_of(&record) {
            return self.start_guest_member(&cs, id, &pod, !matches!(mode, Attach::Detached));
        }
        self.mount_volumes(&cs, id)
            .map_err(|e| StartError::Prepare(chain(&e)))?;
        if record.healthcheck.is_some() {
            // `starting` from the moment `start` returns; the checker takes over from here.
            crate::health::reset(&cs.dir(id))?;
        }
        let shared_net = if record.shared.is_empty() {
            None
        } else {
            self.prepare_shared(&cs, id, &record.shared).transpose()
        };
        let netns = match (record.pod, shared_net) {
            (_, Some(shared)) => Some(shared),
            (Some(pod), None) => Some(self.prepare_pod_member(&cs, id, &pod)),
            (None, None) => self.attach_for_start(&cs, id).transpose(),
        }
        .transpose()
        .map_err(|e| StartError::Prepare(chain(&e)))?;
        let networked = netns.is_some();
        let res = container_start::start(&cs, id, &self.exe, Path::new(CGROUP_ROOT), mode, netns);
        if networked && matches!(res, Err(StartError::Spawn(_))) {
            let _ = self.release_networks(id);
        }
        match res? {
            None => Ok(Started::Detached),
            Some(code) => Ok(Started::Exited(code)),
        }
    }

    /// Mounts the filesystems of the volumes with driver options that the container binds
    /// (`volume create -o`), where they are not mounted (after a reboot).
    fn mount_volumes(&self, cs: &Containers, id: &str) -> Result<()> {
        let cfg = cs.config(id)?;
        // Only named volumes' `_data` can need a mount: the volume store (whose opening
        // sweeps it) is not touched on the start of a container without one.
        if !cfg
            .binds
            .iter()
            .any(|b| b.source.file_name().is_some_and(|n| n == "_data"))
        {
            return Ok(());
        }
        let vols = self.volumes()?;
        for b in &cfg.binds {
            if let Some(name) = vols.volume_of(&b.source) {
                vols.ensure_mounted(&name)?;
            }
        }
        Ok(())
    }

    /// An exited container back to created: what its last run left is forgotten (its
    /// networks' endpoints released, to be joined again), its filesystem kept.
    fn reset_for_start(&self, cs: &Containers, mut s: corral_container::State) -> Result<()> {
        self.release_networks(&s.id)?;
        s.status = Status::Created;
        s.pid = None;
        s.monitor_pid = None;
        s.monitor_start = None;
        s.exit_code = None;
        s.oom_killed = false;
        s.error = None;
        s.paused = false;
        s.stop_requested = false;
        s.cgroup_paths.clear();
        Ok(cs.save(&s)?)
    }

    /// Creates and starts: `run`. A container whose start failed before anything ran is
    /// removed again (its `start` error is returned).
    pub fn run(
        &self,
        spec: &ContainerSpec,
        detach: bool,
        pull: &PullOptions,
    ) -> Result<(Created, Started)> {
        if spec.isolation == Isolation::Vm {
            return Err(EngineError::invalid(
                "run --isolation vm goes through Engine::run_isolated",
            ));
        }
        let c = self.create(spec, pull)?;
        match self.start(&c.id, !detach) {
            Ok(st) => Ok((c, st)),
            Err(e @ EngineError::Start(StartError::Prepare(_))) => {
                // Nothing ran: `run` leaves nothing behind (`start` of a created one keeps it).
                let _ = self.remove(&c.id, true, true);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops a container: its stop signal (the spec's, the image's `STOPSIGNAL`, else
    /// SIGTERM), then SIGKILL after `timeout` (the spec's `--stop-timeout`, else 10 s).
    pub fn stop(&self, id: &str, timeout: Option<u64>) -> Result<()> {
        let cs = self.containers()?;
        let record = Record::load(&cs.dir(id));
        let secs = timeout.or(record.stop_timeout).unwrap_or(10);
        let sig = match &record.stop_signal {
            Some(s) => container_kill::parse_signal(s)?,
            None => rustix::process::Signal::TERM,
        };
        let s = cs.load(id)?;
        let was_running = s.status == Status::Running;
        if self.guest_pod(id).is_some() {
            self.stop_guest_member(id, sig.as_raw(), Duration::from_secs(secs))?;
        } else {
            container_pause::thaw_if_paused(&cs, id, Path::new(CGROUP_ROOT))
                .map_err(|e| EngineError::Conflict(e.to_string()))?;
            container_kill::stop_with(&cs, id, sig, Duration::from_secs(secs))?;
        }
        if was_running {
            self.emit(self.container_event("stop", &s, &record));
        }
        Ok(())
    }

    /// Sends a signal (a name or number).
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let sig = container_kill::parse_signal(signal)?;
        let cs = self.containers()?;
        if self.guest_pod(id).is_some() {
            self.signal_guest_member(id, sig.as_raw())?;
        } else {
            container_kill::kill(&cs, id, sig)?;
        }
        let s = cs.load(id)?;
        let record = Record::load(&cs.dir(id));
        self.emit(
            self.container_event("kill", &s, &record)
                .attr("signal", sig.as_raw().to_string()),
        );
        Ok(())
    }

    /// Stops (if running) and starts again.
    pub fn restart(&self, id: &str, timeout: Option<u64>) -> Result<()> {
        self.stop(id, timeout)?;
        // A running container with --rm is gone once stopped: nothing to start.
        let cs = self.containers()?;
        match cs.load(id) {
            Err(StateError::NotFound(_)) => {
                return Err(EngineError::NotFound(format!(
                    "container {id} was removed when it stopped (--rm): nothing to restart"
                )))
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        self.start(id, false)?;
        let s = cs.load(id)?;
        self.emit(self.container_event("restart", &s, &Record::load(&cs.dir(id))));
        Ok(())
    }

    /// Removes a container (a running one only with `force`), its networks' endpoints, and
    /// with `volumes` its anonymous volumes.
    pub fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let cs = self.containers()?;
        let dir = cs.dir(id);
        let record = Record::load(&dir);
        let s = cs.load_raw(id).ok();
        if let Some(pod) = self.guest_pod(id) {
            if cs.load(id)?.status == Status::Running {
                if !force {
                    return Err(EngineError::Conflict(format!(
                        "container {} is running: stop it first, or remove it with -f",
                        s.as_ref().map_or(id, |s| s.name.as_str())
                    )));
                }
                self.stop_guest_member(id, 9, Duration::from_secs(10))?;
            }
            self.unmount_member_root(&pod.id, id);
        }
        container_delete::delete(&cs, id, force, Path::new(CGROUP_ROOT))?;
        self.release_networks(id)?;
        // What a crash between the two steps above left (of this or any other owner).
        self.reconcile_networks();
        if volumes {
            crate::monitor::remove_anonymous_volumes(&self.root, &record);
        }
        if let Some(s) = s {
            self.emit(self.container_event("destroy", &s, &record));
        }
        Ok(())
    }

    /// Waits for a container to exit; its exit code (`None` if it was removed meanwhile).
    pub fn wait(&self, id: &str) -> Result<Option<i32>> {
        let cs = self.containers()?;
        container_kill::wait_exit(&cs, id, None)?;
        Ok(cs.load(id).ok().and_then(|s| s.exit_code))
    }

    /// Waits until a container is `running`, `healthy` or `unhealthy`; fails if it exits
    /// first (or, for a health condition, has no check).
    pub fn wait_for(&self, id: &str, condition: &str) -> Result<()> {
        let cs = self.containers()?;
        let dir = cs.dir(id);
        if condition != "running" && Record::load(&dir).healthcheck.is_none() {
            return Err(EngineError::Conflict(format!(
                "container {id} has no health check to wait for"
            )));
        }
        let mut delay = Duration::from_millis(5);
        loop {
            let s = cs.load(id)?;
            let met = match condition {
                "running" => s.status == Status::Running,
                c => crate::health::load(&dir).is_some_and(|h| h.status == c),
            };
            if met {
                return Ok(());
            }
            let may_restart = cs
                .config(id)
                .is_ok_and(|c| c.restart != corral_container::config::RestartPolicy::No);
            if s.status == Status::Exited && (!may_restart || s.stop_requested) {
                return Err(EngineError::Conflict(format!(
                    "container {} exited before it was {condition}",
                    s.name
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Freezes or thaws a container.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        if self.guest_pod(id).is_some() {
            return Err(EngineError::invalid(
                "pause/unpause of a container in a VM pod is not supported: pause the pod's VM with `corral vm pause`",
            ));
        }
        let cs = self.containers()?;
        container_pause::set_paused(&cs, id, paused, Path::new(CGROUP_ROOT))
            .map_err(|e| EngineError::Conflict(e.to_string()))?;
        let s = cs.load(id)?;
        let action = if paused { "pause" } else { "unpause" };
        self.emit(self.container_event(action, &s, &Record::load(&cs.dir(id))));
        Ok(())
    }

    /// Runs a command in a running container; its exit code. The calling process is left in
    /// the container's namespaces: call it last.
    pub fn exec(&self, id: &str, x: ExecSpec) -> Result<i32> {
        if let Some(w) = &x.workdir {
            if !w.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "working directory {w:?} must be an absolute path"
                )));
            }
        }
        if let Some(pod) = self.guest_pod(id) {
            return self.exec_guest_member(id, &pod, x);
        }
        let cs = self.containers()?;
        let user = match &x.user {
            None => None,
            Some(u) => {
                let cfg = cs.config(id)?;
                // The container's own files: its upper directory over the image's layers.
                let mut dirs = vec![cs.dir(id).join("upper")];
                dirs.extend(cfg.layers.iter().rev().cloned());
                let r = crate::users::resolve(u, &dirs)?;
                Some(r)
            }
        };
        let groups = user.as_ref().map(|r| r.groups.clone());
        let user = user.map(|r| (r.uid, r.gid));
        let req = corral_container::container_exec::ExecRequest {
            args: x.command,
            env: x.env,
            cwd: x.workdir,
            user,
            groups,
            interactive: x.interactive,
            detach: x.detach,
            pid_file: None,
            replace_env: false,
            keep_stdio: false,
            tty: x.tty,
            console_socket: None,
            detach_keys: x.detach_keys,
        };
        let opts = corral_container::container_exec::ExecOptions {
            privileged: x.privileged,
            ..Default::default()
        };
        match corral_container::container_exec::exec_with(&cs, id, req, &opts) {
            Ok(code) => Ok(code),
            Err(corral_container::container_exec::ExecError::Command { code, message }) => {
                Err(EngineError::Failed { code, message })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Renames a container; the new name must be free.
    pub fn rename(&self, id: &str, new: &str) -> Result<()> {
        let cs = self.containers()?;
        let mut s = cs.load(id)?;
        let old = s.name.clone();
        if old == new {
            return Ok(());
        }
        cs.reserve_name(new, id)?;
        s.name = new.to_owned();
        if let Err(e) = cs.save(&s) {
            cs.release_name(new);
            return Err(e.into());
        }
        cs.release_name(&old);
        // Its DNS names and /etc/hosts follow.
        if s.status == Status::Running {
            let _ = self.write_hosts(&cs, id);
        }
        self.emit(
            self.container_event("rename", &s, &Record::load(&cs.dir(id)))
                .attr("oldName", old),
        );
        Ok(())
    }

    /// Removes an image's names (and its content once no name is left). Refused while a
    /// container uses it, unless `force`, which removes those containers first (podman's
    /// `rmi -f`). Layers a container still uses are never deleted.
    pub fn remove_image(&self, what: &str, force: bool) -> Result<(Vec<String>, Vec<String>)> {
        let store = self.images()?;
        let img = store.resolve(what)?;
        let cs = self.containers()?;
        let id = img.id.to_string();
        let users: Vec<(String, String)> = cs
            .ids()?
            .into_iter()
            .filter_map(|c| cs.load_raw(&c).ok())
            .filter(|s| s.image_id == id)
            .map(|s| (s.id, s.name))
            .collect();
        // Removing one of several names leaves the image, so its containers keep it.
        let by_name = corral_image::reference::ImageName::parse(what)
            .ok()
            .is_some_and(|n| img.names.contains(&n.full()));
        let last_name = !by_name || img.names.len() <= 1;
        if last_name && !users.is_empty() {
            if !force {
                let names: Vec<&str> = users.iter().map(|(_, n)| n.as_str()).collect();
                return Err(EngineError::Conflict(format!(
                    "image {what} is in use by container {}: remove the container first, or use rmi -f to remove it with the image",
                    names.join(", ")
                )));
            }
            for (cid, _) in &users {
                self.remove(cid, true, true)?;
            }
        }
        let keep = self.layers_in_use()?;
        let (untagged, deleted) = store.remove_keeping(what, force, &keep)?;
        for n in &untagged {
            self.emit(Event::new("image", "untag", &id).attr("name", n));
        }
        for d in &deleted {
            self.emit(Event::new("image", "delete", &d.to_string()));
        }
        Ok((untagged, deleted.iter().map(|d| d.to_string()).collect()))
    }

    /// The unpacked layers (their diff ids' hex) that some container mounts.
    pub fn layers_in_use(&self) -> Result<std::collections::BTreeSet<String>> {
        let cs = self.containers()?;
        let mut keep = std::collections::BTreeSet::new();
        for id in cs.ids()? {
            if let Ok(cfg) = cs.config(&id) {
                for l in cfg.layers {
                    // `layers/<diff id hex>/diff`.
                    if let Some(n) = l.parent().and_then(Path::file_name) {
                        keep.insert(n.to_string_lossy().into_owned());
                    }
                }
            }
        }
        Ok(keep)
    }

    pub(crate) fn container_event(
        &self,
        action: &str,
        s: &corral_container::State,
        r: &Record,
    ) -> Event {
        Event::new("container", action, &s.id)
            .attr("name", &s.name)
            .attr("image", &s.image)
            .labels(&r.labels)
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !m.contains(&t) {
            m.push_str(": ");
            m.push_str(&t);
        }
        src = s.source();
    }
    m
}

/// What `update` changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct UpdateSpec {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPUs, as a quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight.
    pub cpu_shares: Option<u64>,
    /// Allowed CPUs.
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
    /// Restart policy.
    pub restart: Option<String>,
}

impl Engine {
    /// Changes a container's limits (applied to its cgroup at once when it runs, and kept for
    /// its later starts) or its restart policy.
    pub fn update(&self, id: &str, u: &UpdateSpec) -> Result<()> {
        if self.guest_pod(id).is_some() {
            return Err(EngineError::invalid(
                "update of a container in a VM pod is not supported: its pod's VM holds the resources (`corral vm set`)",
            ));
        }
        let cs = self.containers()?;
        let mut cfg = cs.config(id)?;
        let mut r = corral_container::config::Resources::default();
        if let Some(m) = u.memory {
            if m < 256 << 10 {
                return Err(EngineError::invalid("the smallest memory limit is 256k"));
            }
            r.memory = Some(m);
        }
        if let Some(c) = u.cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(EngineError::invalid(format!(
                    "--cpus {c}: must be a positive number"
                )));
            }
            r.cpu_quota = Some((c * 100_000.0) as i64);
            r.cpu_period = Some(100_000);
        }
        r.cpu_shares = u.cpu_shares;
        r.cpuset_cpus = u.cpuset_cpus.clone();
        r.cpuset_mems = u.cpuset_mems.clone();
        r.pids_limit = u.pids_limit;
        if let Some(p) = &u.restart {
            cfg.restart = corral_container::config::RestartPolicy::parse(p).ok_or_else(|| {
                EngineError::invalid(format!(
                    "--restart {p:?}: expected no, on-failure[:N], always or unless-stopped"
                ))
            })?;
        }
        let s = cs.load(id)?;
        if s.auto_remove && cfg.restart != corral_container::config::RestartPolicy::No {
            return Err(EngineError::invalid(
                "--restart: the container is removed when it exits (--rm): it cannot restart",
            ));
        }
        if s.status == Status::Running && !s.cgroup_paths.is_empty() {
            let root = Path::new(CGROUP_ROOT);
            corral_container::cgroups::Cgroup::from_dirs(root, s.cgroup_paths.clone())
                .update(root, &r)
                .map_err(|e| {
                    EngineError::Conflict(format!(
                        "updating the cgroup of {}: {}",
                        s.name,
                        chain(&e)
                    ))
                })?;
        }
        fn keep<T>(new: Option<T>, old: &mut Option<T>) {
            if new.is_some() {
                *old = new;
            }
        }
        keep(r.memory, &mut cfg.resources.memory);
        keep(r.cpu_quota, &mut cfg.resources.cpu_quota);
        keep(r.cpu_period, &mut cfg.resources.cpu_period);
        keep(r.cpu_shares, &mut cfg.resources.cpu_shares);
        keep(r.pids_limit, &mut cfg.resources.pids_limit);
        keep(r.cpuset_cpus, &mut cfg.resources.cpuset_cpus);
        keep(r.cpuset_mems, &mut cfg.resources.cpuset_mems);
        cs.save_config(id, &cfg)?;
        self.emit(self.container_event("update", &s, &Record::load(&cs.dir(id))));
        Ok(())
    }
}
