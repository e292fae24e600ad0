//! `RUN` with `--isolation vm`: the step runs in a VM of its own (its own kernel, for builds
//! that are not trusted), started through the engine as `corral run --isolation vm` starts
//! one. When its command has ended and the VM is down, the VM's upper disk (a qcow2 over an
//! ext4 whose `upper/` is the guest's overlayfs upper directory) is copied to a sparse raw
//! file, mounted read-only on the host, and that directory becomes the step's layer, as a container's upper directory does. The VM is
//! removed whatever happened.
//!
//! Limits: `RUN --mount` is refused (a VM takes no host mounts yet); the step's network is
//! `none` unless `--network` names a corral network (a VM cannot share the host's stack).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_engine::containers::PullOptions;
use corral_engine::spec::{ContainerSpec, Isolation, Networking, PullPolicy};
use corral_engine::Engine;
use corral_image::Store;

use crate::run::{RunOutput, RunSpec};
use crate::BuildError;

/// What the guest writes into its root that is not the step's: the files its agent makes
/// (`/etc/hosts` ...) and the mount points it makes where the image has none.
const AGENT_FILES: [&str; 4] = [
    "etc/hostname",
    "etc/hosts",
    "etc/machine-id",
    "etc/resolv.conf",
];
const MOUNT_POINTS: [&str; 5] = ["proc", "sys", "dev", "tmp", "run"];

struct RemoveVm<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for RemoveVm<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove_vm(&self.id, true) {
            tracing::warn!(vm = %self.id, "removing the build step's VM: {e}");
        }
    }
}

/// The upper disk (a qcow2 over an ext4) as a sparse raw copy, mounted read-only (journal
/// not replayed); unmounted and deleted on drop.
struct UpperMount {
    dir: PathBuf,
    raw: PathBuf,
}

impl UpperMount {
    fn new(disk: &Path, dir: PathBuf) -> Result<Self, BuildError> {
        let raw = dir.with_extension("raw");
        let out = Command::new("qemu-img")
            .args(["convert", "-O", "raw", "-S", "4k"])
            .arg(disk)
            .arg(&raw)
            .output()
            .map_err(|e| BuildError::Run(format!("running qemu-img: {e}")))?;
        if !out.status.success() {
            let _ = fs::remove_file(&raw);
            return Err(BuildError::Run(format!(
                "reading the VM's upper disk {}: {}",
                disk.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        fs::create_dir_all(&dir).map_err(|e| BuildError::Run(format!("{}: {e}", dir.display())))?;
        let m = UpperMount { dir, raw };
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", "ro,loop,noload"])
            .arg(&m.raw)
            .arg(&m.dir)
            .output()
            .map_err(|e| BuildError::Run(format!("running mount: {e}")))?;
        if !out.status.success() {
            return Err(BuildError::Run(format!(
                "mounting the VM's upper disk {}: {}",
                disk.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(m)
    }
}

impl Drop for UpperMount {
    fn drop(&mut self) {
        // `umount` frees the loop device it was mounted with (autoclear).
        if fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.contains(&format!(" {} ", self.dir.display())))
        {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::remove_file(&self.raw);
    }
}

/// Runs one `RUN` step in a VM and stores its layer.
pub fn run(engine: &Engine, store: &Store, r: &RunSpec<'_>) -> Result<RunOutput, BuildError> {
    if !r.mounts.is_empty() {
        return Err(BuildError::Run(
            "RUN --mount is not supported with --isolation vm (a VM takes no host mounts yet)"
                .into(),
        ));
    }
    let network = match r.network {
        "host" | "none" | "" => "none",
        n => n,
    };
    let spec = ContainerSpec {
        image: r.image.to_string(),
        pull: PullPolicy::Never,
        entrypoint: Some(Vec::new()),
        command: r.args.clone(),
        env: r.env.clone(),
        networking: Networking {
            networks: vec![network.to_owned()],
            ..Default::default()
        },
        isolation: Isolation::Vm,
        ..Default::default()
    };
    let created = engine
        .create(&spec, &PullOptions::default())
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    let _remove = RemoveVm {
        engine,
        id: created.id.clone(),
    };
    if r.cancel.cancelled() {
        return Err(BuildError::Interrupted);
    }
    let mut started = engine
        .start_vm(&created.id, true)
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    let vms = engine.vms();
    let cfg = vms
        .config(&created.id)
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    let paths = corral_vm::qemu::Paths::new(&vms.run_dir(&created.id), &vms.dir(&created.id));
    let mut captured: Vec<u8> = Vec::new();
    let code = {
        let mut client = corral_vm::client::Client::connect(&paths.ctl)
            .map_err(|e| BuildError::Engine(format!("connecting to the step's VM: {e}")))?;
        let (mut out, mut err): (Box<dyn Write>, Box<dyn Write>) = if r.show_output {
            (Box::new(std::io::stdout()), Box::new(std::io::stderr()))
        } else {
            (Box::new(&mut captured), Box::new(std::io::sink()))
        };
        let res = client.attach(
            None,
            corral_vm::client::Sinks {
                stdout: &mut out,
                stderr: &mut err,
            },
        );
        drop((out, err));
        res.map_err(|e| BuildError::Engine(format!("the step's VM: {e}")))?
    };
    let _ = started.monitor.wait();
    if r.cancel.cancelled() {
        return Err(BuildError::Interrupted);
    }
    if code != 0 {
        return Err(BuildError::RunFailed {
            code,
            output: String::from_utf8_lossy(&captured).into_owned(),
        });
    }
    let disk = cfg
        .upper_disk
        .clone()
        .ok_or_else(|| BuildError::Run("the step's VM has no upper disk".into()))?;
    let mnt = UpperMount::new(&disk, store.tmp_path("build-vm-upper"))?;
    let upper = mnt.dir.join("upper");
    let mut skip: Vec<&str> = AGENT_FILES.to_vec();
    for m in MOUNT_POINTS {
        if r.view.lookup(m, false).ok().flatten().is_none() {
            skip.push(m);
        }
    }
    let stored = crate::state::store_layer(store, |w| {
        corral_container::container_diff::write_dir_layer(&upper, &skip, w)
            .map_err(|e| BuildError::Run(format!("reading the step's changes: {e}")))
    });
    drop(mnt);
    let (diff_id, size) = stored?;
    Ok(RunOutput { diff_id, size })
}
