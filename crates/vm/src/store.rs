//! VMs on disk: `CORRAL_ROOT/vms/<id>/` holds `config.json` (what the VM is: written once
//! at create, durable), `state.json` (what it is doing: written by the monitor and the CLI),
//! its writable disk, and the logs (`console.log` from the serial port, `main.log` from the
//! main process). Sockets live under `/run/corral/vm-<id>/` (unix socket paths are short).
//! Every change to a VM happens under its lock (`vms/<id>/lock`).
//!
//! A VM exists when its directory holds `config.json`, written last when it is made: its disks
//! are built in place first ([`Vms::begin`] marks the directory with its maker's pid and start
//! time in `creating`), then `state.json`, then `config.json`. A directory without
//! `config.json` whose maker is gone was left by a crash; [`Vms::ids`] sweeps it (one without
//! the mark, from an older version, once it is an hour old). Removal renames the directory to
//! a trash name first (from then on the VM does not exist), then deletes it; a removal that
//! crashed leaves trash the next sweep takes ([`corral_net::fsutil::sweep`]).

use std::fs;
use std::path::{Path, PathBuf};

use corral_guest::proto;
use corral_net::fsutil::{self, FsError, Lock};
use serde::{Deserialize, Serialize};

/// A VM's state files could not be read or written, or the VM is unknown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No VM by that name or id.
    #[error("no such VM: {0} (see `corral vm ls`)")]
    NotFound(String),
    /// A prefix of an id matches several VMs.
    #[error("{0} matches several VMs: give more of the id, or the name")]
    Ambiguous(String),
    /// The name is taken.
    #[error("the name {0:?} is already used by VM {1}: choose another or remove it (`corral vm rm {0}`)")]
    NameTaken(String, String),
    /// The name is not valid.
    #[error("invalid VM name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters")]
    BadName(String),
    /// A file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A plain I/O error.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

type Result<T> = std::result::Result<T, StoreError>;

/// The mark of a VM directory being created: its maker's `<pid>-<start>`.
const CREATING: &str = "creating";

/// Where a sandbox VM's guest mounts its share.
pub const SANDBOX_SHARE_AT: &str = "/run/pod";
/// The share's virtio-fs tag.
pub const SANDBOX_SHARE_TAG: &str = "corral-pod";

/// How the guest boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BootSource {
    /// An OCI image: corral's kernel and initramfs (the agent as init), the image as a
    /// read-only ext4 disk and a writable disk joined by overlayfs in the guest.
    Image {
        /// The image as the user named it.
        image: String,
        /// The image's digest.
        digest: String,
        /// The cached ext4 disk of the image.
        image_disk: PathBuf,
        /// The guest kernel.
        kernel: PathBuf,
        /// The initramfs corral built.
        initrd: PathBuf,
    },
    /// A kernel and initramfs of the user's (the agent answers only if their init runs it).
    Kernel {
        /// The kernel.
        kernel: PathBuf,
        /// The initramfs, if any.
        initrd: Option<PathBuf>,
        /// The kernel command line.
        cmdline: String,
    },
    /// A pod's VM: corral's kernel and initramfs (the agent as init, on the initramfs as its
    /// root) and a host directory shared over virtio-fs, mounted at [`SANDBOX_SHARE_AT`],
    /// in which the pod's members have their root filesystems.
    Sandbox {
        /// The guest kernel.
        kernel: PathBuf,
        /// The initramfs corral built.
        initrd: PathBuf,
        /// The host directory shared into the guest.
        share: PathBuf,
        /// The guest's hostname, when it is not the VM's name (a Kubernetes pod's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
    },
    /// A bootable disk image, through the firmware.
    Disk {
        /// The disk (raw or qcow2).
        path: PathBuf,
        /// `raw` or `qcow2`.
        format: String,
        /// Boot through UEFI (OVMF) rather than the BIOS.
        uefi: bool,
    },
}

/// Which accelerator runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// The kernel's KVM (hardware virtualization).
    Kvm,
    /// QEMU's translator (software emulation).
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A network the VM joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRequest {
    /// The network's name.
    pub network: String,
    /// Extra DNS names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Published ports (`-p` syntax).
    #[serde(default)]
    pub ports: Vec<String>,
    /// The address asked for (`--ip`): reserved for the VM from its creation to its removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The MAC asked for (`--mac-address`; default: derived from the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// What a VM is; fixed at create (`vm set` changes cpus/memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// 64 hex digits.
    pub id: String,
    /// The VM's name (and the guest's hostname).
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The accelerator chosen at create.
    pub accel: Accel,
    /// How it boots.
    pub boot: BootSource,
    /// The writable disk (image boots): path and size.
    #[serde(default)]
    pub upper_disk: Option<PathBuf>,
    /// Extra kernel command line (image boots).
    #[serde(default)]
    pub extra_cmdline: String,
    /// Networks, in NIC order.
    #[serde(default)]
    pub networks: Vec<NetRequest>,
    /// The main process (image boots): the image's entrypoint and cmd or the user's command.
    #[serde(default)]
    pub main: Option<proto::Exec>,
    /// Remove the VM when it stops.
    #[serde(default)]
    pub auto_remove: bool,
    /// A NoCloud seed image (disk boots with `--cloud-init`).
    #[serde(default)]
    pub seed: Option<PathBuf>,
    /// How long to wait for the agent after QEMU starts, in seconds.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_secs: u64,
    /// When the monitor starts the VM again after it ends (`--restart`).
    #[serde(default)]
    pub restart: corral_container::config::RestartPolicy,
    /// Extra data disks (`vm disk add`), in the order they are attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_disks: Vec<DataDisk>,
    /// An ISO image in the VM's CD-ROM drive (`--cdrom`; the user's file, read-only), which the
    /// firmware boots when the disk does not (an installer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdrom: Option<PathBuf>,
    /// A screen: a VGA card whose display a VNC server on loopback shows, behind a password
    /// made at each start (`--graphics vnc`; `corral vm vnc VM` tells where).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vnc: bool,
}

/// An extra data disk of a VM: a qcow2 file in the VM's directory, attached as a virtio
/// disk whose serial is its name (`/dev/disk/by-id/virtio-NAME` in a Linux guest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDisk {
    /// Its name: `[a-z0-9-]`, at most 20 characters (the virtio serial's limit).
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

fn default_boot_timeout() -> u64 {
    90
}

/// Where a VM is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or removed state of a stopped one).
    Created,
    /// QEMU started, the guest is booting.
    Starting,
    /// The guest runs (the agent answered, or QEMU runs a guest without agent).
    Running,
    /// QEMU is not running.
    Stopped,
}

impl Status {
    /// The word `vm ls` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// What a VM is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmState {
    /// Its status as last recorded.
    pub status: Status,
    /// The monitor's pid while it runs.
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    /// QEMU's pid while it runs.
    #[serde(default)]
    pub qemu_pid: Option<i32>,
    /// When it last started (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it last stopped (RFC 3339).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The main process's exit code, when it had one and ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it stopped, when not by a clean power-off: for a person.
    #[serde(default)]
    pub error: Option<String>,
    /// The agent answered.
    #[serde(default)]
    pub agent_ready: bool,
    /// Milliseconds from QEMU's start to the agent's answer.
    #[serde(default)]
    pub boot_ms: Option<u64>,
    /// The guest's addresses (`IFACE ADDR/PREFIX`), as the agent was told.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Restarts by the restart policy since the VM was last started by hand.
    #[serde(default)]
    pub restart_count: u32,
}

impl VmState {
    /// A VM just made.
    pub fn created() -> VmState {
        VmState {
            status: Status::Created,
            monitor_pid: None,
            qemu_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            agent_ready: false,
            boot_ms: None,
            restart_count: 0,
            addresses: Vec::new(),
        }
    }
}

/// The VMs of one state root.
#[derive(Debug, Clone)]
pub struct Vms {
    root: PathBuf,
    run: PathBuf,
}

impl Vms {
    /// The VMs under `corral_root/vms`.
    pub fn open(corral_root: &Path) -> Vms {
        Vms {
            root: corral_root.join("vms"),
            run: PathBuf::from("/run/corral"),
        }
    }

    /// The state root (`CORRAL_ROOT`).
    pub fn corral_root(&self) -> &Path {
        self.root.parent().unwrap_or(Path::new("/"))
    }

    /// `vms/<id>`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Whether VM `id` exists or is being made (its directory is there: a VM being made or
    /// migrated in holds network endpoints before its config is written). What the engine
    /// tells `corral_net::Networks::reconcile` an endpoint's owner is alive by.
    pub fn exists(&self, id: &str) -> bool {
        !id.is_empty() && !id.contains('/') && !id.starts_with('.') && self.dir(id).is_dir()
    }

    /// The VM's name on this machine, for its runtime directory and cgroup:
    /// `vm-<first 16 of id>-<8 hex of the state root>` (the root's part keeps two state roots
    /// on one machine apart: a migrated VM keeps its id).
    pub fn instance(&self, id: &str) -> String {
        // FNV-1a of the root's path: stable, and enough to tell a machine's roots apart.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.root.as_os_str().as_encoded_bytes() {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        format!("vm-{}-{h:08x}", &id[..16.min(id.len())])
    }

    /// The VM's runtime directory for sockets (short, for unix socket paths):
    /// `/run/corral/<instance>`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.run.join(self.instance(id))
    }

    /// The VM's lock.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        Ok(Lock::exclusive(&self.dir(id).join("lock"))?)
    }

    /// Makes the directory of a VM being created, marked with this process as its maker
    /// (see the module's doc). Idempotent.
    pub fn begin(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dir(id);
        if dir.is_dir() {
            return Ok(dir);
        }
        // Made with its mark under a temporary name, then renamed: never without the mark.
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| StoreError::Io(p, e)
        };
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let tmp = fsutil::temp_path(&self.root, id, fsutil::TMP);
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let pid = std::process::id() as i32;
        let tag = format!("{pid}-{}", fsutil::process_start(pid).unwrap_or(0));
        let made = fs::write(tmp.join(CREATING), tag)
            .and_then(|()| fs::rename(&tmp, &dir))
            .map_err(io(&dir));
        if made.is_err() {
            let _ = fsutil::remove_any(&tmp);
        }
        made?;
        Ok(dir)
    }

    /// Records a new VM; fails if the name is taken. Call under [`Vms::names_lock`]. The VM
    /// exists from the moment its `config.json` is in place (its last file).
    pub fn create(&self, cfg: &VmConfig) -> Result<()> {
        check_name(&cfg.name)?;
        if let Some(other) = self.find_by_name(&cfg.name)? {
            return Err(StoreError::NameTaken(
                cfg.name.clone(),
                other[..12].to_owned(),
            ));
        }
        let dir = self.begin(&cfg.id)?;
        fsutil::write_json(&dir.join("state.json"), &VmState::created())?;
        fsutil::write_json(&dir.join("config.json"), cfg)?;
        let _ = fs::remove_file(dir.join(CREATING));
        Ok(())
    }

    /// Whether the directory of `id` (without `config.json`) was left by a crashed create.
    fn abandoned(&self, id: &str) -> bool {
        let dir = self.dir(id);
        if dir.join("config.json").exists() {
            return false;
        }
        let maker = fs::read_to_string(dir.join(CREATING)).ok().and_then(|t| {
            let (pid, start) = t.trim().split_once('-')?;
            Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?))
        });
        let gone = match maker {
            Some((pid, start)) => fsutil::process_start(pid) != Some(start),
            None => {
                use std::os::unix::fs::MetadataExt;
                fs::metadata(&dir).is_ok_and(|m| {
                    let changed = std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(m.ctime().max(0) as u64);
                    std::time::SystemTime::now()
                        .duration_since(changed)
                        .is_ok_and(|a| a.as_secs() >= 3600)
                })
            }
        };
        // Checked again: a maker that ended may have committed just before.
        gone && !dir.join("config.json").exists()
    }

    /// The lock that makes name checks and creation one step.
    pub fn names_lock(&self) -> Result<Lock> {
        Ok(Lock::exclusive(&self.root.join("names.lock"))?)
    }

    /// A VM's config.
    pub fn config(&self, id: &str) -> Result<VmConfig> {
        fsutil::read_json(&self.dir(id).join("config.json"))?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// Replaces a VM's config (`vm set`).
    pub fn save_config(&self, cfg: &VmConfig) -> Result<()> {
        Ok(fsutil::write_json(
            &self.dir(&cfg.id).join("config.json"),
            cfg,
        )?)
    }

    /// A VM's recorded state. A VM whose state file is missing (an older version wrote it
    /// after the config and was killed in between) is stopped, and says so.
    pub fn state(&self, id: &str) -> Result<VmState> {
        match fsutil::read_json(&self.dir(id).join("state.json"))? {
            Some(st) => Ok(st),
            None if self.dir(id).join("config.json").is_file() => Ok(VmState {
                status: Status::Stopped,
                error: Some("the VM's state file is missing".into()),
                ..VmState::created()
            }),
            None => Err(StoreError::NotFound(id.to_owned())),
        }
    }

    /// Records a VM's state.
    pub fn save_state(&self, id: &str, st: &VmState) -> Result<()> {
        Ok(fsutil::write_json_runtime(
            &self.dir(id).join("state.json"),
            st,
        )?)
    }

    /// Every VM's id.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::Io(self.root.display().to_string(), e)),
        };
        let mut ids = Vec::new();
        for n in rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            if self.dir(&n).join("config.json").is_file() {
                ids.push(n);
            } else if self.abandoned(&n) {
                tracing::info!(vm = %n, "removing what a crashed create left");
                if let Err(e) = self.trash(&n) {
                    tracing::warn!(vm = %n, error = %e, "removing what a crashed create left");
                }
            }
        }
        fsutil::sweep(&self.root);
        ids.sort();
        Ok(ids)
    }

    /// Renames a VM's directory to a trash name (from then on it does not exist), then
    /// deletes it; what cannot be deleted is left to the next sweep.
    fn trash(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let trash = fsutil::temp_path(&self.root, id, fsutil::RM);
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Io(dir.display().to_string(), e)),
        }
        if let Err(e) = fsutil::remove_any(&trash) {
            tracing::warn!(vm = %id, path = %trash.display(), error = %e, "deleting a removed VM's files");
        }
        Ok(())
    }

    fn find_by_name(&self, name: &str) -> Result<Option<String>> {
        for id in self.ids()? {
            if self.config(&id).is_ok_and(|c| c.name == name) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The id of the VM called `what`, or whose id starts with `what`.
    pub fn resolve(&self, what: &str) -> Result<String> {
        if let Some(id) = self.find_by_name(what)? {
            return Ok(id);
        }
        let hits: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| !what.is_empty() && id.starts_with(what))
            .collect();
        match hits.len() {
            0 => Err(StoreError::NotFound(what.to_owned())),
            1 => Ok(hits.into_iter().next().expect("one")),
            _ => Err(StoreError::Ambiguous(what.to_owned())),
        }
    }

    /// Deletes a VM's directory and runtime directory (the caller has stopped it): the
    /// directory is renamed away first, so a crash leaves the VM whole or gone.
    pub fn remove_files(&self, id: &str) -> Result<()> {
        self.trash(id)?;
        let _ = fs::remove_dir_all(self.run_dir(id));
        Ok(())
    }
}

/// Checks a VM name: docker's rule for container names, and short enough to be a hostname.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_owned()))
    }
}

/// A new VM id: 64 hex digits.
pub fn new_id() -> String {
    fsutil::random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("vm-1.a_b").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    fn test_config(name: &str) -> VmConfig {
        VmConfig {
            id: new_id(),
            name: name.into(),
            created: "2026-01-01T00:00:00Z".into(),
            cpus: 1,
            memory_mib: 256,
            accel: Accel::Tcg,
            boot: BootSource::Kernel {
                kernel: "/k".into(),
                initrd: None,
                cmdline: String::new(),
            },
            upper_disk: None,
            extra_cmdline: String::new(),
            networks: vec![],
            main: None,
            auto_remove: false,
            seed: None,
            data_disks: Vec::new(),
            cdrom: None,
            vnc: false,
            restart: Default::default(),
            boot_timeout_secs: 90,
        }
    }

    #[test]
    fn create_resolve_remove() {
        let t = tempfile::tempdir().unwrap();
        let vms = Vms::open(t.path());
        let cfg = test_config("one");
        vms.create(&cfg).unwrap();
        assert_eq!(vms.resolve("one").unwrap(), cfg.id);
        assert_eq!(vms.resolve(&cfg.id[..6]).unwrap(), cfg.id);
        assert!(matches!(vms.create(&cfg), Err(StoreError::NameTaken(..))));
        assert_eq!(vms.state(&cfg.id).unwrap().status, Status::Created);
        vms.remove_files(&cfg.id).unwrap();
        assert!(matches!(vms.resolve("one"), Err(StoreError::NotFound(_))));
        assert_eq!(fs::read_dir(t.path().join("vms")).unwrap().count(), 0);
    }

    #[test]
    fn crashed_creates_are_swept_and_leave_the_name_free() {
        let t = tempfile::tempdir().unwrap();
        let vms = Vms::open(t.path());
        // A create killed while building disks: the mark names a maker that is gone.
        let dead = new_id();
        fs::create_dir_all(vms.dir(&dead)).unwrap();
        fs::write(vms.dir(&dead).join("upper.qcow2"), b"x").unwrap();
        fs::write(vms.dir(&dead).join(CREATING), b"999999999-1").unwrap();
        // One in progress in this process.
        let live = new_id();
        vms.begin(&live).unwrap();
        // A removal killed after the rename.
        fs::create_dir_all(
            t.path()
                .join("vms")
                .join(format!(".{dead}.rm-999999999-1-0")),
        )
        .unwrap();
        assert!(vms.ids().unwrap().is_empty());
        assert!(!vms.dir(&dead).exists());
        assert!(vms.dir(&live).exists(), "its maker runs");
        let left: Vec<_> = fs::read_dir(t.path().join("vms"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![live.clone()]);
        // A config without state (an older version's crash): listed, stopped, removable.
        let mut cfg = test_config("old");
        cfg.id = live.clone();
        fs::write(
            vms.dir(&live).join("config.json"),
            serde_json::to_vec(&cfg).unwrap(),
        )
        .unwrap();
        assert_eq!(vms.resolve("old").unwrap(), live);
        assert_eq!(vms.state(&live).unwrap().status, Status::Stopped);
        vms.remove_files(&live).unwrap();
        vms.create(&test_config("old")).unwrap();
    }
}
