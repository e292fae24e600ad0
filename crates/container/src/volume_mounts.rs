//! Volumes with driver options (`volume create -o type=tmpfs -o device=tmpfs -o
//! o=size=100m`, `-o type=nfs -o device=:/export -o o=addr=10.0.0.1`, `-o type=none -o
//! device=/srv/data -o o=bind`): docker's local driver, whose volume is a filesystem mounted
//! on the volume's `_data` instead of a plain directory.
//!
//! The mount is made when the volume is created (so that bad options fail `volume create`,
//! not a later `run`), made again before a container that uses it starts if it is gone (after
//! a reboot), and taken off before the volume is removed, so that removal never deletes what
//! a mounted filesystem holds. Unlike docker's, the mount stays while no container uses it:
//! a tmpfs volume keeps its content between runs, until `volume rm` or a reboot.

use std::collections::BTreeMap;
use std::path::Path;

use rustix::mount::MountFlags;

use crate::volumes::VolumeError;

/// The option keys of the local driver.
pub const KEYS: &[&str] = &["type", "device", "o"];

/// What a volume's options mount: `mount -t TYPE DEVICE _data -o O`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The filesystem type; `None` for a bind (`type=none`, `o=bind`).
    pub fstype: Option<String>,
    /// The source: a device, `tmpfs`, `host:/export`, or a host directory for a bind.
    pub device: String,
    /// mount(2)'s flags from `o`.
    pub flags: MountFlags,
    /// The rest of `o`, handed to the filesystem.
    pub data: String,
}

fn bad(msg: String) -> VolumeError {
    VolumeError::BadOption(msg)
}

/// Reads a volume's options; `None` for a plain volume (no options).
pub fn parse(options: &BTreeMap<String, String>) -> Result<Option<MountSpec>, VolumeError> {
    if options.is_empty() {
        return Ok(None);
    }
    if let Some(k) = options.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "{k}: the local driver takes type, device and o (as `mount -t TYPE DEVICE -o O`)"
        )));
    }
    let fstype = options
        .get("type")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            bad("type is missing: give -o type=tmpfs|nfs|none|... with device and o".into())
        })?;
    let mut flags = MountFlags::empty();
    let mut data = Vec::new();
    let mut bind = false;
    for o in options
        .get("o")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
    {
        match o {
            "" | "rw" | "defaults" => {}
            "ro" => flags |= MountFlags::RDONLY,
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => flags |= MountFlags::DIRSYNC,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "bind" | "rbind" => {
                bind = true;
                if o == "rbind" {
                    flags |= MountFlags::REC;
                }
            }
            other => data.push(other),
        }
    }
    let device = options.get("device").cloned().unwrap_or_default();
    if bind {
        if !Path::new(&device).is_absolute() {
            return Err(bad(format!(
                "device={device}: a bind volume's device is an absolute host directory"
            )));
        }
        if !Path::new(&device).is_dir() {
            return Err(bad(format!(
                "device={device}: no such directory on this host"
            )));
        }
        return Ok(Some(MountSpec {
            fstype: None,
            device,
            flags: flags | MountFlags::BIND,
            data: String::new(),
        }));
    }
    if fstype == "none" {
        return Err(bad(
            "type=none mounts nothing unless o=bind (a host directory as device)".into(),
        ));
    }
    if device.is_empty() {
        return Err(bad(format!(
            "device is missing: give -o device=... for type={fstype} (docker's: device=tmpfs for tmpfs)"
        )));
    }
    Ok(Some(MountSpec {
        fstype: Some(fstype.clone()),
        device,
        flags,
        data: data.join(","),
    }))
}

/// Whether something is mounted on `data`.
pub fn is_mounted(data: &Path) -> bool {
    crate::mountinfo::is_mount_point(data)
}

/// Mounts `spec` on `data` unless something is mounted there.
pub fn ensure(spec: &MountSpec, data: &Path) -> Result<(), VolumeError> {
    if is_mounted(data) {
        return Ok(());
    }
    let r = match &spec.fstype {
        None => rustix::mount::mount(spec.device.as_str(), data, "", spec.flags, None),
        Some(t) => rustix::mount::mount(
            spec.device.as_str(),
            data,
            t.as_str(),
            spec.flags,
            Some(
                std::ffi::CString::new(spec.data.clone())
                    .unwrap_or_default()
                    .as_c_str(),
            ),
        ),
    };
    r.map_err(|e| {
        bad(format!(
            "mounting {} {} on the volume: {e}",
            spec.fstype.as_deref().unwrap_or("bind of"),
            spec.device
        ))
    })?;
    if spec.flags.contains(MountFlags::BIND) && spec.flags.contains(MountFlags::RDONLY) {
        // A bind ignores RDONLY until remounted.
        let _ = rustix::mount::mount_remount(data, MountFlags::BIND | MountFlags::RDONLY, "");
    }
    Ok(())
}

/// Takes every mount off `data` (detached: a process still inside keeps its view); an error
/// if one stays, so that the caller does not delete through it.
pub fn unmount_all(data: &Path) -> Result<(), VolumeError> {
    crate::mountinfo::unmount_under(data).map_err(|e| bad(format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_read_as_mount_reads_them() {
        assert_eq!(parse(&opts(&[])).unwrap(), None);
        let t = parse(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=10m,uid=1000,noexec"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(t.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(t.data, "size=10m,uid=1000");
        assert!(t.flags.contains(MountFlags::NOEXEC));
        let b = parse(&opts(&[
            ("type", "none"),
            ("device", "/tmp"),
            ("o", "bind,ro"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(b.fstype, None);
        assert!(b.flags.contains(MountFlags::BIND | MountFlags::RDONLY));
    }

    #[test]
    fn bad_options_name_what_is_wrong() {
        for (o, needle) in [
            (opts(&[("size", "1m")]), "size"),
            (opts(&[("device", "tmpfs")]), "type is missing"),
            (opts(&[("type", "tmpfs")]), "device is missing"),
            (opts(&[("type", "none"), ("device", "/tmp")]), "o=bind"),
            (
                opts(&[("type", "none"), ("device", "rel"), ("o", "bind")]),
                "absolute",
            ),
            (
                opts(&[("type", "none"), ("device", "/no/such/dir"), ("o", "bind")]),
                "no such directory",
            ),
        ] {
            let e = parse(&o).unwrap_err().to_string();
            assert!(e.contains(needle), "{o:?}: {e}");
        }
    }
}
