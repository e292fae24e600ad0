//! The VirtualMachines placed on this node (`corral.dev/v1`, `status.nodeName`), run through
//! the engine as the VMs `corral vm` knows (named `NAME.NAMESPACE`) and kept as their
//! `runStrategy` says:
//!
//! - `Always`: started, and started again whenever it stops — QEMU killed, the guest powered
//!   off, `corral vm stop` — after Kubernetes' back-off (at once, then 10 s doubling to
//!   5 min; a VM that ran a minute counts from zero again);
//! - `RerunOnFailure`: started, and started again only when it failed (an error, or a main
//!   process that exited non-zero), with the same back-off;
//! - `Manual`: made, not started; `corral vm start|stop` is the user's;
//! - `Halted`: stopped.
//!
//! The agent puts its finalizer ([`FINALIZER`]) on each VirtualMachine before it makes the
//! VM, and takes it off once the VM is removed: `kubectl delete vm --wait` and the deletion
//! of a namespace end when the VM is gone.
//!
//! What the agent owns is recorded per VM in `CORRAL_ROOT/kubelet/vms/NAME.NAMESPACE.json`
//! (the object's uid, the engine's VM id, the spec it was made from, the restarts): an agent
//! that starts again adopts what runs, and removes the VMs whose object is gone. A VM of the
//! same name that the record does not name is the user's and is never touched.
//!
//! Everything but the run strategy is fixed when the VM is made; a later change of it sets
//! the `RestartRequired` condition, as KubeVirt does.
//!
//! Status: `printableStatus` (Starting, Running, Stopping, Stopped, CrashLoopBackOff,
//! Failed), `vmName`, `interfaces` (network, address, MAC, from corral's network
//! endpoints), `restartCount`, and the conditions `Ready` (the guest runs; for an image VM,
//! its agent answered), `AgentConnected` and `RestartRequired`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::virtualmachines::{engine_name, VirtualMachineSpec};
use corral_container::config::RestartPolicy;
use corral_store::{registry, StoreError};
use corral_vm::lifecycle::{self, CreateSpec, Source};
use corral_vm::store::{NetRequest, Status, VmState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::events::{EventType, PodRef};

mod copies;
use crate::{blocking, clock, kv, NodeAgent};

/// How long a VM is given to power off before QEMU is ended.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an image VM's agent may take to answer (TCG boots are slow).
const BOOT_TIMEOUT_SECS: u64 = 300;
/// The back-off's first step and its ceiling, seconds.
const BACKOFF_FIRST: i64 = 10;
const BACKOFF_MAX: i64 = 300;
/// A VM that ran this long starts its back-off from zero again.
const BACKOFF_RESET: i64 = 60;
/// The finalizer that holds a VirtualMachine until its VM is removed.
pub const FINALIZER: &str = "corral.dev/vm";
/// How often the VMs are looked at when nothing in the store changed.
const RESYNC: Duration = Duration::from_secs(2);

/// What the agent keeps of a VM it made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    uid: String,
    namespace: String,
    name: String,
    /// The engine's VM id ("" while it is being made).
    id: String,
    /// The spec's fingerprint when the VM was made.
    fingerprint: String,
    /// Starts by the agent; restarts are those after the first.
    starts: u32,
    /// The last start, Unix seconds.
    last_start: i64,
    /// The wait before the next restart, seconds (0: at once).
    backoff: i64,
    /// Stopped by its run strategy: the next start is not a restart.
    #[serde(default)]
    halted: bool,
}

impl Record {
    fn restarts(&self) -> u32 {
        self.starts.saturating_sub(1)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The VMs' side of the agent.
struct Vms {
    agent: Arc<NodeAgent>,
    dir: PathBuf,
    /// Uids with a create, start, stop or removal under way.
    busy: Mutex<HashSet<String>>,
    /// Uids whose VM could not be made: why, and when to try again.
    failed: Mutex<HashMap<String, (String, i64)>>,
    wake: mpsc::Sender<()>,
}

impl NodeAgent {
    /// Runs the VirtualMachines placed on this node until `shutdown` turns true; they keep
    /// running after it.
    pub(crate) async fn run_vms(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (wake, mut woken) = mpsc::channel::<()>(1);
        let vms = Arc::new(Vms {
            dir: self.engine.root().join("kubelet").join("vms"),
            agent: self,
            busy: Default::default(),
            failed: Default::default(),
            wake: wake.clone(),
        });
        let prefix = registry::prefix("corral.dev", "virtualmachines", None);
        loop {
            let watch = match vms.agent.store.watch(&prefix, 0).await {
                Ok(mut w) => {
                    let wake = wake.clone();
                    Some(tokio::spawn(async move {
                        while w.events.recv().await.is_some() {
                            let _ = wake.try_send(());
                        }
                    }))
                }
                Err(e) => {
                    tracing::warn!("watching virtual machines: {e}");
                    None
                }
            };
            loop {
                vms.pass().await;
                tokio::select! {
                    _ = woken.recv() => {}
                    _ = tokio::time::sleep(RESYNC) => {}
                    _ = shutdown.changed() => {
                        if let Some(w) = watch { w.abort() }
                        return;
                    }
                }
                if watch.as_ref().is_none_or(|w| w.is_finished()) {
                    break;
                }
            }
        }
    }
}

impl Vms {
    fn record_path(&self, vm_name: &str) -> PathBuf {
        self.dir.join(format!("{vm_name}.json"))
    }

    fn user_data_path(&self, vm_name: &str) -> PathBuf {
        self.dir.join(format!("{vm_name}.user-data"))
    }

    fn records(&self) -> HashMap<String, Record> {
        let mut out = HashMap::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "json") {
                if let Some(r) = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                {
                    out.insert(r.uid.clone(), r);
                }
            }
        }
        out
    }

    fn save(&self, r: &Record) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.record_path(&engine_name(&r.namespace, &r.name));
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(r).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    }

    fn forget(&self, r: &Record) {
        let vm = engine_name(&r.namespace, &r.name);
        let _ = std::fs::remove_file(self.record_path(&vm));
        let _ = std::fs::remove_file(self.user_data_path(&vm));
    }

    /// Runs `op` for `uid` in the background unless one runs already; wakes the loop after.
    fn spawn<F>(self: &Arc<Self>, uid: &str, op: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if !self.busy.lock().expect("busy lock").insert(uid.to_owned()) {
            return;
        }
        let me = self.clone();
        let uid = uid.to_owned();
        tokio::spawn(async move {
            op.await;
            me.busy.lock().expect("busy lock").remove(&uid);
            let _ = me.wake.try_send(());
        });
    }

    fn is_busy(&self, uid: &str) -> bool {
        self.busy.lock().expect("busy lock").contains(uid)
    }

    async fn event(&self, vm: &Value, kind: EventType, reason: &str, message: &str) {
        let r = PodRef {
            namespace: vm["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            name: vm["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            uid: vm["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
            kind: "VirtualMachine",
        };
        self.agent
            .events
            .record(&r, None, kind, reason, message)
            .await;
    }

    async fn pass(self: &Arc<Self>) {
        let prefix = registry::prefix("corral.dev", "virtualmachines", None);
        let listed = self
            .agent
            .store
            .range(corral_store::RangeRequest {
                prefix,
                ..Default::default()
            })
            .await;
        let Ok(listed) = listed else { return };
        let node = self.agent.cfg.node_name.as_str();
        let mine: Vec<Value> = listed
            .kvs
            .iter()
            .filter_map(registry::decode)
            .filter(|v| v["status"]["nodeName"].as_str() == Some(node))
            .collect();
        let me = self.clone();
        let records = tokio::task::spawn_blocking(move || me.records())
            .await
            .unwrap_or_default();
        let live: HashSet<&str> = mine
            .iter()
            .filter(|v| v["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|v| v["metadata"]["uid"].as_str())
            .collect();
        for r in records.values().filter(|r| !live.contains(r.uid.as_str())) {
            let (me, r) = (self.clone(), r.clone());
            self.spawn(&r.uid.clone(), async move { me.remove(r).await });
        }
        for vm in &mine {
            let uid = vm["metadata"]["uid"].as_str().unwrap_or("").to_owned();
            if self.is_busy(&uid) {
                continue;
            }
            if !live.contains(uid.as_str()) {
                // Being deleted: once its VM is gone (or was never made), the object goes.
                if !records.contains_key(&uid) {
                    self.release(vm).await;
                }
                continue;
            }
            self.sync(vm.clone(), records.get(&uid).cloned()).await;
        }
        self.copies(&mine, &records).await;
    }

    /// Takes the agent's finalizer off a VirtualMachine whose VM is gone; the object goes
    /// when no finalizer is left and it is being deleted.
    async fn release(&self, vm: &Value) {
        self.release_key(&vm_key(vm), vm).await
    }

    /// Takes the agent's finalizer off the object at `key` (if it is still `obj`, by uid).
    async fn release_key(&self, key: &str, obj: &Value) {
        let (key, vm) = (key.to_owned(), obj);
        let store = &*self.agent.store;
        for _ in 0..16 {
            let Ok(Some((mut v, rev))) = kv::get(store, &key).await else {
                return;
            };
            if v["metadata"]["uid"] != vm["metadata"]["uid"] {
                return;
            }
            let Some(list) = v["metadata"]["finalizers"].as_array_mut() else {
                return;
            };
            let before = list.len();
            list.retain(|f| f != FINALIZER);
            if list.len() == before {
                return;
            }
            let res = if list.is_empty() && !v["metadata"]["deletionTimestamp"].is_null() {
                store.delete(&key, rev).await.map(|_| ())
            } else {
                store
                    .update(&key, registry::encode(&v), rev)
                    .await
                    .map(|_| ())
            };
            match res {
                Ok(()) | Err(StoreError::NotFound(_)) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(%key, "releasing a VirtualMachine: {e}");
                    return;
                }
            }
        }
    }

    /// Puts the agent's finalizer on a VirtualMachine (before its VM is made); false if the
    /// object is gone or being deleted.
    async fn hold(&self, vm: &Value) -> bool {
        self.hold_key(&vm_key(vm), vm).await
    }

    /// Puts the agent's finalizer on the object at `key` (if it is still `vm`, by uid, and
    /// not being deleted).
    async fn hold_key(&self, key: &str, vm: &Value) -> bool {
        let mut ok = false;
        let res = kv::update(&*self.agent.store, key, |v| {
            ok = v["metadata"]["uid"] == vm["metadata"]["uid"]
                && v["metadata"]["deletionTimestamp"].is_null();
            if !ok {
                return false;
            }
            let m = v["metadata"].as_object_mut().expect("metadata");
            let list = m.entry("finalizers").or_insert(json!([]));
            match list.as_array_mut() {
                Some(l) if !l.iter().any(|f| f == FINALIZER) => {
                    l.push(json!(FINALIZER));
                    true
                }
                Some(_) => false,
                None => {
                    *list = json!([FINALIZER]);
                    true
                }
            }
        })
        .await;
        res.is_ok_and(|v| v.is_some()) && ok
    }

    /// Stops and removes the VM of an object that is gone or being deleted, then lets the
    /// object go.
    async fn remove(self: Arc<Self>, r: Record) {
        let name = engine_name(&r.namespace, &r.name);
        if !r.id.is_empty() {
            let id = r.id.clone();
            let res = blocking(&self.agent.engine, move |e| {
                let _ = e.stop_vm(&id, STOP_TIMEOUT);
                e.remove_vm(&id, true)
            })
            .await;
            if let Err(e) = res {
                if e.to_string().contains("no such") || e.to_string().contains("not found") {
                    tracing::debug!(vm = %name, "already gone");
                } else {
                    tracing::warn!(vm = %name, "removing the VM of a deleted VirtualMachine: {e}");
                    return;
                }
            }
        }
        tracing::info!(vm = %name, "removed the VM of a deleted VirtualMachine");
        self.forget(&r);
        let vm = json!({"metadata": {"namespace": r.namespace, "name": r.name, "uid": r.uid}});
        self.release(&vm).await;
    }

    async fn sync(self: &Arc<Self>, vm: Value, rec: Option<Record>) {
        let uid = vm["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let Ok(spec) = serde_json::from_value::<VirtualMachineSpec>(vm["spec"].clone()) else {
            return;
        };
        let rec = match rec {
            Some(r) if !r.id.is_empty() => r,
            _ => {
                let failed = self.failed.lock().expect("failed lock").get(&uid).cloned();
                match failed {
                    Some((why, at)) if unix_now() < at => {
                        self.write_status(&vm, None, None, &spec, Some(("Failed", &why)))
                            .await;
                    }
                    _ => {
                        let me = self.clone();
                        self.spawn(&uid, async move { me.create(vm, spec).await });
                    }
                }
                return;
            }
        };
        let id = rec.id.clone();
        let state = blocking(&self.agent.engine, move |e| {
            lifecycle::current_state(&e.vms(), &id)
        })
        .await;
        let Ok(state) = state else {
            // Removed behind the agent's back (`corral vm rm`): made again.
            tracing::info!(vm = %engine_name(&rec.namespace, &rec.name), "the VM is gone; making it again");
            self.forget(&rec);
            return;
        };
        let running = matches!(state.status, Status::Running | Status::Starting);
        let never = state.status == Status::Created && rec.starts == 0;
        let failed = state.error.is_some() || state.exit_code.is_some_and(|c| c != 0);
        let want_run = match spec.run_strategy() {
            "Always" => Some(true),
            "Halted" => Some(false),
            "RerunOnFailure" if !running => Some(never || failed),
            _ => None,
        };
        let now = unix_now();
        let mut shown: Option<(&str, String)> = None;
        match want_run {
            Some(true) if !running => {
                let wait_until = rec.last_start + rec.backoff;
                if rec.starts > 0 && !rec.halted && now < wait_until {
                    let why = format!(
                        "back-off {}s restarting the failed VM (it stopped: {})",
                        rec.backoff,
                        state.error.as_deref().unwrap_or("the guest powered off")
                    );
                    shown = Some(("CrashLoopBackOff", why));
                } else {
                    let me = self.clone();
                    let (vm, rec) = (vm.clone(), rec.clone());
                    self.spawn(&uid, async move { me.start(vm, rec).await });
                    shown = Some(("Starting", String::new()));
                }
            }
            Some(false) if running => {
                let me = self.clone();
                let (vm, rec) = (vm.clone(), rec.clone());
                self.spawn(&uid, async move { me.stop(vm, rec).await });
                shown = Some(("Stopping", String::new()));
            }
            _ => {}
        }
        if running && rec.backoff > 0 && now - rec.last_start >= BACKOFF_RESET {
            let mut r = rec.clone();
            r.backoff = 0;
            let _ = self.save(&r);
        }
        let shown = shown.as_ref().map(|(s, w)| (*s, w.as_str()));
        self.write_status(&vm, Some(&rec), Some(&state), &spec, shown)
            .await;
    }

    /// Makes the VM (and starts it unless the strategy says not to).
    async fn create(self: Arc<Self>, vm: Value, spec: VirtualMachineSpec) {
        let uid = vm["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let ns = vm["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = vm["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let vm_name = engine_name(&ns, &name);
        let mut rec = Record {
            uid: uid.clone(),
            namespace: ns,
            name,
            fingerprint: spec.fingerprint(),
            ..Default::default()
        };
        if !self.hold(&vm).await {
            return;
        }
        // Recorded before the VM is made, so that a crash in between adopts (or removes) it.
        let pending = self.records().contains_key(&uid);
        if let Err(e) = self.save(&rec) {
            tracing::warn!(vm = %vm_name, "recording a VM: {e}");
            return;
        }
        let user_data = self.user_data_path(&vm_name);
        let cspec = match create_spec(&spec, &vm_name, &self.agent.cfg.network, &user_data) {
            Ok(s) => s,
            Err(why) => return self.failed_create(&vm, &rec, why).await,
        };
        let made = blocking(&self.agent.engine, {
            let vm_name = vm_name.clone();
            move |e| {
                let vms = e.vms();
                match vms.resolve(&vm_name) {
                    Ok(id) if pending => Ok(id),
                    Ok(_) => Err(format!(
                        "a VM named {vm_name} already exists on this node and is not this object's: remove it (`corral vm rm {vm_name}`) or give the VirtualMachine another name"
                    )),
                    Err(_) => e.create_vm(&cspec).map(|c| c.id).map_err(|e| e.to_string()),
                }
            }
        })
        .await;
        let id = match made {
            Ok(id) => id,
            Err(why) => return self.failed_create(&vm, &rec, why).await,
        };
        self.failed.lock().expect("failed lock").remove(&uid);
        rec.id = id;
        let _ = self.save(&rec);
        self.event(
            &vm,
            EventType::Normal,
            "Created",
            &format!("Made VM {vm_name}"),
        )
        .await;
        if matches!(spec.run_strategy(), "Always" | "RerunOnFailure") {
            self.start(vm, rec).await;
        }
    }

    async fn failed_create(&self, vm: &Value, rec: &Record, why: String) {
        let uid = rec.uid.clone();
        let attempts = self
            .failed
            .lock()
            .expect("failed lock")
            .get(&uid)
            .map_or(0, |_| 1);
        let retry = unix_now() + BACKOFF_FIRST * (1 + attempts);
        self.forget(rec);
        self.event(vm, EventType::Warning, "FailedCreate", &why)
            .await;
        self.failed
            .lock()
            .expect("failed lock")
            .insert(uid, (why, retry));
    }

    async fn start(self: Arc<Self>, vm: Value, mut rec: Record) {
        let id = rec.id.clone();
        let res = blocking(&self.agent.engine, move |e| {
            e.start_vm(&id, false).map(|s| s.monitor.id())
        })
        .await;
        let now = unix_now();
        // A start after a crash is a restart, with the back-off; the first start, and one
        // after the run strategy stopped the VM, are not.
        let restart = rec.starts > 0 && !rec.halted;
        rec.halted = false;
        if restart {
            rec.starts += 1;
            rec.backoff = if rec.backoff == 0 {
                BACKOFF_FIRST
            } else {
                (rec.backoff * 2).min(BACKOFF_MAX)
            };
        } else {
            rec.starts = rec.starts.max(1);
        }
        rec.last_start = now;
        let _ = self.save(&rec);
        match res {
            Ok(pid) => {
                self.agent.reaper.watch(pid as i32);
                let (reason, msg) = if restart {
                    (
                        "Restarted",
                        format!("Started the VM again (restart {})", rec.restarts()),
                    )
                } else {
                    ("Started", "Started the VM".to_owned())
                };
                self.event(&vm, EventType::Normal, reason, &msg).await;
            }
            Err(e) => {
                self.event(&vm, EventType::Warning, "FailedStart", &e.to_string())
                    .await;
            }
        }
    }

    async fn stop(self: Arc<Self>, vm: Value, mut rec: Record) {
        let id = rec.id.clone();
        let res = blocking(&self.agent.engine, move |e| e.stop_vm(&id, STOP_TIMEOUT)).await;
        match res {
            Ok(()) => {
                rec.halted = true;
                rec.backoff = 0;
                let _ = self.save(&rec);
                self.event(
                    &vm,
                    EventType::Normal,
                    "Stopped",
                    "Stopped the VM (runStrategy: Halted)",
                )
                .await
            }
            Err(e) => {
                self.event(&vm, EventType::Warning, "FailedStop", &e.to_string())
                    .await
            }
        }
    }

    /// Writes the VM's status when it differs from what the object shows.
    async fn write_status(
        &self,
        vm: &Value,
        rec: Option<&Record>,
        state: Option<&VmState>,
        spec: &VirtualMachineSpec,
        shown: Option<(&str, &str)>,
    ) {
        let ns = vm["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = vm["metadata"]["name"].as_str().unwrap_or("");
        let vm_name = engine_name(ns, name);
        let interfaces = match (rec, state) {
            (Some(r), Some(s)) if matches!(s.status, Status::Running | Status::Starting) => {
                let id = r.id.clone();
                blocking(&self.agent.engine, move |e| {
                    e.networks().endpoints_of(&id).unwrap_or_default()
                })
                .await
                .into_iter()
                .enumerate()
                .map(|(i, ep)| {
                    json!({"name": format!("eth{i}"), "network": ep.network,
                           "ipAddress": ep.ip.to_string(), "mac": ep.mac})
                })
                .collect()
            }
            _ => Vec::new(),
        };
        let desired = status(
            vm,
            &vm_name,
            rec,
            state,
            spec.image.is_some(),
            rec.is_some_and(|r| r.fingerprint != spec.fingerprint()),
            interfaces,
            shown,
        );
        let key = registry::key("corral.dev", "virtualmachines", Some(ns), name);
        let uid = vm["metadata"]["uid"].clone();
        let res = kv::update(&*self.agent.store, &key, |v| {
            if v["metadata"]["uid"] != uid {
                return false;
            }
            let merged = merge_status(&v["status"], &desired);
            if merged == v["status"] {
                return false;
            }
            v["status"] = merged;
            true
        })
        .await;
        if let Err(e) = res {
            if !matches!(e, StoreError::NotFound(_)) {
                tracing::warn!(vm = %vm_name, "writing a VirtualMachine's status: {e}");
            }
        }
    }
}

/// A VirtualMachine's key in the store.
fn vm_key(vm: &Value) -> String {
    let ns = vm["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = vm["metadata"]["name"].as_str().unwrap_or("");
    registry::key("corral.dev", "virtualmachines", Some(ns), name)
}

/// The engine's spec for a VirtualMachine's VM.
fn create_spec(
    spec: &VirtualMachineSpec,
    vm_name: &str,
    default_network: &str,
    user_data: &Path,
) -> Result<CreateSpec, String> {
    let source = match (&spec.image, &spec.boot_disk) {
        (Some(image), _) => Source::Image {
            image: image.clone(),
            kernel: None,
        },
        (None, Some(disk)) => Source::BootDisk {
            path: PathBuf::from(disk),
            uefi: false,
            in_place: false,
        },
        (None, None) => return Err("the spec names neither an image nor a boot disk".into()),
    };
    let mut networks: Vec<NetRequest> = spec
        .networks
        .iter()
        .flatten()
        .map(|n| NetRequest {
            network: n.name.clone(),
            aliases: Vec::new(),
            ports: Vec::new(),
            ip: n.ip.as_deref().and_then(|ip| ip.parse().ok()),
            mac: None,
        })
        .collect();
    if networks.is_empty() {
        networks.push(NetRequest {
            network: default_network.to_owned(),
            aliases: Vec::new(),
            ports: Vec::new(),
            ip: None,
            mac: None,
        });
    }
    let cloud_init = match &spec.cloud_init {
        Some(ci) => {
            if let Some(d) = user_data.parent() {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            std::fs::write(user_data, &ci.user_data)
                .map_err(|e| format!("{}: {e}", user_data.display()))?;
            Some(user_data.to_owned())
        }
        None => None,
    };
    Ok(CreateSpec {
        name: Some(vm_name.to_owned()),
        cpus: spec.cpus.unwrap_or(1),
        memory_mib: spec.memory_mib(),
        accel: None,
        source,
        disk_bytes: spec.disk_bytes(),
        networks,
        command: spec.command.clone().unwrap_or_default(),
        entrypoint: None,
        env: spec
            .env
            .iter()
            .flatten()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect(),
        workdir: None,
        user: None,
        auto_remove: false,
        cloud_init,
        boot_timeout_secs: BOOT_TIMEOUT_SECS,
        tty: false,
        interactive: false,
        restart: RestartPolicy::No,
        cdrom: None,
        vnc: false,
    })
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// The status the agent wants the object to show (its own fields only).
#[allow(clippy::too_many_arguments)]
fn status(
    vm: &Value,
    vm_name: &str,
    rec: Option<&Record>,
    state: Option<&VmState>,
    image: bool,
    restart_required: bool,
    interfaces: Vec<Value>,
    shown: Option<(&str, &str)>,
) -> Value {
    let running = state.is_some_and(|s| s.status == Status::Running);
    let agent = state.is_some_and(|s| s.agent_ready);
    let ready = running && (agent || !image);
    let printable = match (shown, state) {
        (Some((s, _)), _) => s.to_owned(),
        (None, Some(s)) => match s.status {
            Status::Running if ready => "Running",
            Status::Running | Status::Starting => "Starting",
            Status::Created | Status::Stopped => "Stopped",
        }
        .to_owned(),
        (None, None) => "Provisioning".to_owned(),
    };
    let why = shown.map(|(_, w)| w).unwrap_or("");
    let (reason, message) = if ready {
        ("", String::new())
    } else if !why.is_empty() {
        (printable.as_str(), why.to_owned())
    } else if let Some(e) = state.and_then(|s| s.error.as_deref()) {
        ("Stopped", e.to_owned())
    } else {
        (printable.as_str(), String::new())
    };
    let mut conds = vec![condition("Ready", ready, reason, &message)];
    if image {
        conds.push(condition(
            "AgentConnected",
            agent && running,
            if agent && running {
                ""
            } else {
                "AgentNotConnected"
            },
            "",
        ));
    }
    if restart_required {
        conds.push(condition(
            "RestartRequired",
            true,
            "SpecChanged",
            "the spec changed after the VM was made: only runStrategy applies at once; delete and create the VirtualMachine again for the rest",
        ));
    }
    let mut st = json!({
        "printableStatus": printable,
        "vmName": vm_name,
        "restartCount": rec.map_or(0, Record::restarts),
        "interfaces": interfaces,
        "conditions": conds,
        "observedGeneration": vm["metadata"]["generation"],
    });
    if let Some(t) = state.and_then(|s| s.started_at.as_deref()) {
        st["startedAt"] = json!(t);
    }
    st
}

/// The object's status with the agent's fields replaced: placement's `nodeName` and
/// `PodScheduled` condition are kept, and a condition keeps its `lastTransitionTime` while
/// its status stays.
fn merge_status(old: &Value, desired: &Value) -> Value {
    let mut out = if old.is_object() {
        old.clone()
    } else {
        json!({})
    };
    for (k, v) in desired.as_object().into_iter().flatten() {
        if k != "conditions" {
            out[k] = v.clone();
        }
    }
    let old_conds = old["conditions"].as_array().cloned().unwrap_or_default();
    let mut conds: Vec<Value> = old_conds
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .cloned()
        .collect();
    for c in desired["conditions"].as_array().into_iter().flatten() {
        let mut c = c.clone();
        let before = old_conds.iter().find(|o| o["type"] == c["type"]);
        c["lastTransitionTime"] = match before {
            Some(o) if o["status"] == c["status"] => o["lastTransitionTime"].clone(),
            _ => json!(clock::now()),
        };
        conds.push(c);
    }
    out["conditions"] = json!(conds);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> VirtualMachineSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_engine_spec_follows_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = create_spec(
            &spec(json!({"image": "busybox", "memory": "1Gi", "cpus": 2,
                "command": ["httpd", "-f"], "env": [{"name": "A", "value": "b"}]})),
            "web.default",
            "corral",
            &dir.path().join("ud"),
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("web.default"));
        assert_eq!((s.cpus, s.memory_mib), (2, 1024));
        assert_eq!(s.networks[0].network, "corral");
        assert_eq!(s.env, vec!["A=b".to_string()]);
        assert_eq!(s.command, vec!["httpd".to_string(), "-f".to_string()]);
        assert!(
            matches!(s.restart, RestartPolicy::No),
            "restarts are the agent's"
        );

        let ud = dir.path().join("ud");
        let s = create_spec(
            &spec(
                json!({"bootDisk": "/d.qcow2", "cloudInit": {"userData": "#cloud-config\n"},
                "networks": [{"name": "lan", "ip": "10.9.0.5"}]}),
            ),
            "db.prod",
            "corral",
            &ud,
        )
        .unwrap();
        assert!(matches!(s.source, Source::BootDisk { .. }));
        assert_eq!(s.networks[0].ip, Some("10.9.0.5".parse().unwrap()));
        assert_eq!(std::fs::read_to_string(&ud).unwrap(), "#cloud-config\n");
    }

    #[test]
    fn status_keeps_placement_and_transition_times() {
        let old = json!({"nodeName": "n1", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "t0"}]});
        let vm = json!({"metadata": {"generation": 3}});
        let rec = Record {
            starts: 3,
            ..Default::default()
        };
        let mut st = VmState::created();
        st.status = Status::Stopped;
        let d = status(&vm, "x.y", Some(&rec), Some(&st), true, false, vec![], None);
        assert_eq!(d["printableStatus"], "Stopped");
        assert_eq!(d["restartCount"], 2);
        let m = merge_status(&old, &d);
        assert_eq!(m["nodeName"], "n1");
        assert_eq!(m["conditions"][0]["type"], "PodScheduled");
        assert_eq!(m["conditions"][1]["lastTransitionTime"], "t0");
        st.status = Status::Running;
        st.agent_ready = true;
        let d = status(&vm, "x.y", Some(&rec), Some(&st), true, true, vec![], None);
        assert_eq!(d["printableStatus"], "Running");
        let m = merge_status(&old, &d);
        assert_eq!(m["conditions"][1]["status"], "True");
        assert_ne!(m["conditions"][1]["lastTransitionTime"], "t0");
        assert!(m["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "RestartRequired"));
    }
}
