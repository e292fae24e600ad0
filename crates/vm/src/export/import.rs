//! `vm import`: a new, stopped VM from an archive that [`super::unpack`] checked, its files
//! placed (the shared ones in the cache), its config rewritten to this host.

use super::*;

/// What `vm import` asks for.
#[derive(Debug, Clone, Default)]
pub struct ImportSpec {
    /// The new VM's name (default: the exported one, unless taken here).
    pub name: Option<String>,
    /// Replace the VM's networks with this one (`none`: no NIC).
    pub network: Option<String>,
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The new VM's config.
    pub config: VmConfig,
    /// The name the archive gave, when it was taken here and the VM got another.
    pub renamed_from: Option<String>,
}

fn free_bytes(path: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(|e| io_err("statvfs", path)(e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The id of the VM called `name`, if any.
fn name_taken(vms: &Vms, name: &str) -> Result<Option<String>> {
    for id in vms.ids()? {
        if vms.config(&id).is_ok_and(|c| c.name == name) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Makes a new, stopped VM from the archive `input`: stages and checks every file, places
/// the kernel, initramfs and image disk in the shared cache, and records the VM with its
/// config rewritten to this host's paths. Leaves nothing behind on error.
pub fn import(
    root: &Path,
    input: impl Read,
    spec: &ImportSpec,
    progress: &dyn Progress,
) -> Result<Imported> {
    let vms = Vms::open(root);
    let vms_dir = root.join("vms");
    let mut staging = TempDir::new(&vms_dir, "import")?;
    let _span = tracing::info_span!("vm_import", staging = %staging.path.display()).entered();
    let free = free_bytes(&staging.path)?;
    let m = unpack(input, &staging.path, free, progress)?;
    let mut cfg = m.config.clone();

    // Networks: those named must exist here, unless replaced.
    match spec.network.as_deref() {
        Some("none") => cfg.networks.clear(),
        Some(net) => {
            let mut first = cfg
                .networks
                .first()
                .cloned()
                .unwrap_or(crate::store::NetRequest {
                    network: String::new(),
                    aliases: Vec::new(),
                    ports: Vec::new(),
                    ip: None,
                    mac: None,
                });
            first.network = net.to_owned();
            cfg.networks = vec![first];
        }
        None => {}
    }
    let store = corral_net::store::NetworkStore::open(root);
    let missing: Vec<String> = cfg
        .networks
        .iter()
        .map(|n| n.network.clone())
        .filter(|n| n != corral_net::store::DEFAULT_NETWORK && store.get(n).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(ExportError::MissingNetworks(missing));
    }
    if cfg.memory_mib > crate::lifecycle::host_memory_mib().unwrap_or(u64::MAX) {
        return Err(invalid(format!(
            "the VM has {}M of memory, more than this host has: import it elsewhere",
            cfg.memory_mib
        )));
    }

    // Disks in qcow2 must not point at files of this host.
    for (part, _) in parts_of(&cfg) {
        let qcow2 = match (&cfg.boot, part) {
            (_, Part::Upper) => true,
            (BootSource::Disk { format, .. }, Part::BootDisk) => format == "qcow2",
            _ => false,
        };
        if qcow2 {
            let refs = qcow2_references(&staging.path.join(part.name()))?;
            if !refs.is_empty() {
                return Err(invalid(format!(
                    "{} refers to another file ({}): refused",
                    part.name(),
                    refs.join(", ")
                )));
            }
        }
    }

    let id = crate::store::new_id();
    let dir = vms.dir(&id);
    let _names = vms.names_lock()?;
    let original = cfg.name.clone();
    let (name, renamed_from) = match &spec.name {
        Some(n) => {
            crate::store::check_name(n)?;
            if let Some(other) = name_taken(&vms, n)? {
                return Err(StoreError::NameTaken(n.clone(), other[..12].to_owned()).into());
            }
            (n.clone(), None)
        }
        None if name_taken(&vms, &original)?.is_some() => {
            (format!("vm-{}", &id[..8]), Some(original))
        }
        None => (original, None),
    };
    if name != cfg.name {
        // Under another name, the VM is another machine beside the one it was exported from:
        // it keeps its networks but not the DNS aliases, published ports and fixed addresses
        // that name that machine (a clone gets the same treatment).
        for n in &mut cfg.networks {
            n.aliases.clear();
            n.ports.clear();
            n.ip = None;
            n.mac = None;
        }
    }

    // Everything checked: move files into place.
    let cache = lifecycle::cache_dir(root).join(IMPORTED_DIR);
    let place = |part: Part| -> Result<PathBuf> {
        let from = staging.path.join(part.name());
        if !part.cached() {
            return Ok(dir.join(part.name()));
        }
        let sha = &m.entry(part).expect("checked").sha256;
        let d = cache.join(sha);
        fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        let to = d.join(part.name());
        fs::set_permissions(&from, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(io_err("chmod", &from))?;
        match fs::hard_link(&from, &to) {
            Ok(()) => {}
            // Already imported: the cache is by content.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("placing", &to)(e)),
        }
        let _ = fs::remove_file(&from);
        Ok(to)
    };
    cfg.boot = match cfg.boot.clone() {
        BootSource::Image { image, digest, .. } => BootSource::Image {
            image,
            digest,
            image_disk: place(Part::ImageDisk)?,
            kernel: place(Part::Kernel)?,
            initrd: place(Part::Initrd)?,
        },
        BootSource::Kernel {
            initrd, cmdline, ..
        } => BootSource::Kernel {
            kernel: place(Part::Kernel)?,
            initrd: initrd.map(|_| place(Part::Initrd)).transpose()?,
            cmdline,
        },
        BootSource::Disk { format, uefi, .. } => BootSource::Disk {
            path: place(Part::BootDisk)?,
            format,
            uefi,
        },
        BootSource::Sandbox { .. } => {
            return Err(invalid(
                "the archive holds a pod's VM, which cannot be imported",
            ))
        }
    };
    cfg.upper_disk = cfg.upper_disk.map(|_| place(Part::Upper)).transpose()?;
    cfg.seed = cfg.seed.map(|_| place(Part::Seed)).transpose()?;
    if cfg.seed.is_some() {
        // Under another name, another instance to cloud-init (a new machine-id and SSH host
        // keys): its seed made again with the name, from the user-data that came along.
        let ud = staging.path.join(Part::UserData.name());
        if name != cfg.name && m.entry(Part::UserData).is_some() {
            let data = fs::read(&ud).map_err(io_err("reading", &ud))?;
            let staged_seed = staging.path.join(Part::Seed.name());
            crate::seed::nocloud_seed_with(&staged_seed, &data, &name, None).map_err(invalid)?;
        }
    }
    // The CD-ROM is a file of the other host's, not in the archive.
    cfg.cdrom = None;
    cfg.id = id.clone();
    cfg.name = name;
    cfg.created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    cfg.accel = crate::qemu::detect_accel().best;
    corral_net::fsutil::write_json(&staging.path.join("config.json"), &cfg)
        .map_err(StoreError::from)?;
    corral_net::fsutil::write_json(&staging.path.join("state.json"), &VmState::created())
        .map_err(StoreError::from)?;
    if !m.snapshots.is_empty() && cfg.upper_disk.is_some() {
        // The snapshots are inside the disk that came along; they are this VM's now.
        let snaps: Vec<crate::snapshot::Snapshot> = m
            .snapshots
            .iter()
            .cloned()
            .map(|mut sn| {
                sn.vm_id = id.clone();
                sn
            })
            .collect();
        corral_net::fsutil::write_json(&staging.path.join("snapshots.json"), &snaps)
            .map_err(StoreError::from)?;
    }
    fs::rename(&staging.path, &dir).map_err(io_err("renaming into place", &dir))?;
    staging.keep = true;
    tracing::info!(vm = %id, name = %cfg.name, "imported VM");
    Ok(Imported {
        config: cfg,
        renamed_from,
    })
}
