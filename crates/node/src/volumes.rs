//! A pod's volumes on the host, and its containers' mounts of them.
//!
//! Each pod has a directory `ROOT/kubelet/pods/<uid>/volumes/<kind>/<name>` per volume:
//! - `emptyDir`: a directory (with `medium: Memory`, a tmpfs of `sizeLimit` mounted there);
//! - `configMap`, `secret`, `downwardAPI`, `projected`: a directory of files written from the
//!   objects (`items` with their paths and modes, `defaultMode`, `optional`), rewritten on
//!   every resync so that changes reach running containers (each file by rename, so a reader
//!   sees the old or the new file, never half; unlike the kubelet's `..data` swap, several keys
//!   changed at once may be seen one by one), always mounted read-only. A projected
//!   `serviceAccountToken` is an empty file: the agent mints no tokens;
//! - `hostPath`: the host path itself, after its `type` check (`DirectoryOrCreate` makes it);
//! - `persistentVolumeClaim`: what the claim's bound volume holds (see [`crate::claims`]): a
//!   corral named volume, or a host directory.
//!
//! `volumeMounts` become bind mounts (`subPath` a path inside the volume, made for writable
//! volumes when absent, as the kubelet does). Removing the pod unmounts what is mounted under
//! its directory and removes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use corral_engine::spec::{Mount, MountSource};
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};

use crate::claims::ClaimSource;
use crate::env::{self, FieldContext, Sources};
use crate::quantity;

/// A volume made ready on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// A host directory (or file).
    Dir {
        /// Where.
        path: PathBuf,
        /// Always mounted read-only (files the agent writes).
        read_only: bool,
        /// `subPath`s that do not exist are made.
        make_subpaths: bool,
    },
    /// An engine named volume.
    Named {
        /// Its name.
        name: String,
        /// Mounted read-only.
        read_only: bool,
    },
}

/// A volume that could not be made: the pod's `FailedMount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeError {
    /// The volume.
    pub volume: String,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume \"{}\" : {}",
            self.volume, self.message
        )
    }
}

/// The pod's directory on the host.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("kubelet").join("pods").join(uid)
}

/// The ConfigMaps and Secrets the pod's volumes read: (configmaps, secrets).
pub fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// One file of a volume the agent writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct File {
    path: String,
    data: Vec<u8>,
    mode: u32,
    uid: Option<u32>,
}

fn err(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError {
        volume: volume.to_owned(),
        message: message.into(),
    }
}

/// A relative path that stays inside its directory.
fn safe_rel(p: &str) -> bool {
    let p = Path::new(p);
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The files of a ConfigMap's or Secret's keys: all of them, or `items`.
fn key_files(
    volume: &str,
    what: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: u32,
) -> Result<Vec<File>, VolumeError> {
    let Some(data) = data else {
        if optional {
            return Ok(Vec::new());
        }
        return Err(err(volume, format!("{what} \"{name}\" not found")));
    };
    let mut out = Vec::new();
    match items {
        None => {
            for (k, v) in data {
                out.push(File {
                    path: k.clone(),
                    data: v.clone(),
                    mode: default_mode,
                    uid: None,
                });
            }
        }
        Some(items) => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    let kind = if what == "configmap" {
                        "config"
                    } else {
                        "secret"
                    };
                    return Err(err(
                        volume,
                        format!("{what} references non-existent {kind} key: {}", it.key),
                    ));
                };
                out.push(File {
                    path: it.path.clone(),
                    data: v.clone(),
                    mode: it.mode.map_or(default_mode, |m| m as u32 & 0o7777),
                    uid: it.user.map(|u| u as u32),
                });
            }
        }
    }
    for f in &out {
        if !safe_rel(&f.path) {
            return Err(err(
                volume,
                format!("invalid path {:?}: must be relative, without '..'", f.path),
            ));
        }
    }
    Ok(out)
}

/// The files of a volume the agent writes (configMap, secret, downwardAPI, projected);
/// `None` for other kinds.
fn files_of(
    pod: &Pod,
    v: &Volume,
    src: &Sources,
    ctx: &FieldContext,
) -> Option<Result<Vec<File>, VolumeError>> {
    let name = &v.name;
    let mode = |m: Option<i32>| m.map_or(0o644, |m| m as u32 & 0o7777);
    let downward = |items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile], def: u32| {
        let mut out = Vec::new();
        for it in items {
            let data = if let Some(f) = &it.field_ref {
                env::field_value(pod, f, ctx)
            } else if let Some(r) = &it.resource_field_ref {
                env::resource_value(pod, None, r, ctx)
            } else {
                Err(format!(
                    "item {}: neither fieldRef nor resourceFieldRef",
                    it.path
                ))
            }
            .map_err(|m| err(name, m))?;
            if !safe_rel(&it.path) {
                return Err(err(name, format!("invalid path {:?}", it.path)));
            }
            out.push(File {
                path: it.path.clone(),
                data: data.into_bytes(),
                mode: it.mode.map_or(def, |m| m as u32 & 0o7777),
                uid: it.user.map(|u| u as u32),
            });
        }
        Ok(out)
    };
    if let Some(c) = &v.config_map {
        return Some(key_files(
            name,
            "configmap",
            &c.name,
            src.configmaps.get(&c.name).and_then(Option::as_ref),
            c.items.as_ref(),
            c.optional == Some(true),
            mode(c.default_mode),
        ));
    }
    if let Some(s) = &v.secret {
        let sname = s.secret_name.clone().unwrap_or_default();
        return Some(key_files(
            name,
            "secret",
            &sname,
            src.secrets.get(&sname).and_then(Option::as_ref),
            s.items.as_ref(),
            s.optional == Some(true),
            mode(s.default_mode),
        ));
    }
    if let Some(d) = &v.downward_api {
        return Some(downward(
            d.items.as_deref().unwrap_or_default(),
            mode(d.default_mode),
        ));
    }
    let p = v.projected.as_ref()?;
    let def = mode(p.default_mode);
    let mut all = Vec::new();
    for s in p.sources.iter().flatten() {
        let files = if let Some(c) = &s.config_map {
            key_files(
                name,
                "configmap",
                &c.name,
                src.configmaps.get(&c.name).and_then(Option::as_ref),
                c.items.as_ref(),
                c.optional == Some(true),
                def,
            )
        } else if let Some(c) = &s.secret {
            key_files(
                name,
                "secret",
                &c.name,
                src.secrets.get(&c.name).and_then(Option::as_ref),
                c.items.as_ref(),
                c.optional == Some(true),
                def,
            )
        } else if let Some(d) = &s.downward_api {
            downward(d.items.as_deref().unwrap_or_default(), def)
        } else if let Some(t) = &s.service_account_token {
            Ok(vec![File {
                path: t.path.clone(),
                data: Vec::new(),
                mode: def,
                uid: None,
            }])
        } else {
            Err(err(name, "unsupported projected volume source"))
        };
        match files {
            Ok(f) => all.extend(f),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(all))
}

/// Writes `files` into `dir` (only those that changed, each by rename) and removes files
/// that are no longer there. `gid`: the group the files get (`fsGroup`).
fn sync_dir(dir: &Path, files: &[File], gid: Option<u32>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut keep = BTreeSet::new();
    for f in files {
        let path = dir.join(&f.path);
        keep.insert(path.clone());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let same = std::fs::read(&path).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode);
        if same {
            continue;
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("f")
        ));
        {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(&f.data)?;
            out.set_permissions(std::fs::Permissions::from_mode(f.mode))?;
        }
        if f.uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(&tmp, f.uid, gid)?;
        }
        std::fs::rename(&tmp, &path)?;
    }
    remove_stale(dir, &keep)
}

fn remove_stale(dir: &Path, keep: &BTreeSet<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_stale(&p, keep)?;
            if std::fs::read_dir(&p)?.next().is_none() {
                let _ = std::fs::remove_dir(&p);
            }
        } else if !keep.contains(&p) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Whether `path` is a mount point (in this process's mount namespace).
fn mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == p))
}

fn host_path(v: &str, path: &str, kind: &str) -> Result<(), VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    let bad = |what: &str| {
        Err(err(
            v,
            format!("hostPath type check failed: {path} is not a {what}"),
        ))
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p).map_err(|e| err(v, format!("creating {path}: {e}")))?;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return bad("directory");
            }
            Ok(())
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => bad("directory"),
        },
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| err(v, format!("creating {path}: {e}")))?;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
            } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return bad("file");
            }
            Ok(())
        }
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => bad("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => bad("socket"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => bad("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => bad("block device"),
        },
        other => Err(err(v, format!("unknown hostPath type {other:?}"))),
    }
}

/// Makes (or refreshes) every volume of the pod under `dir` (blocking).
pub fn materialize(
    dir: &Path,
    pod: &Pod,
    src: &Sources,
    ctx: &FieldContext,
) -> Result<HashMap<String, Prepared>, VolumeError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let fs_group = spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group)
        .map(|g| g as u32);
    let mut out = HashMap::new();
    for v in spec.volumes.iter().flatten() {
        let name = &v.name;
        let io = |what: &str| {
            let name = name.clone();
            let what = what.to_owned();
            move |e: std::io::Error| err(&name, format!("{what}: {e}"))
        };
        if let Some(files) = files_of(pod, v, src, ctx) {
            let kind = if v.config_map.is_some() {
                "configmap"
            } else if v.secret.is_some() {
                "secret"
            } else if v.downward_api.is_some() {
                "downward-api"
            } else {
                "projected"
            };
            let path = dir.join("volumes").join(kind).join(name);
            sync_dir(&path, &files?, fs_group).map_err(io("writing the volume's files"))?;
            out.insert(
                name.clone(),
                Prepared::Dir {
                    path,
                    read_only: true,
                    make_subpaths: false,
                },
            );
        } else if let Some(e) = &v.empty_dir {
            let path = dir.join("volumes").join("empty-dir").join(name);
            std::fs::create_dir_all(&path).map_err(io("creating the directory"))?;
            if e.medium.as_deref() == Some("Memory") && !mounted(&path) {
                let mut opts = String::from("mode=777");
                if let Some(b) = e.size_limit.as_ref().and_then(quantity::bytes) {
                    opts.push_str(&format!(",size={b}"));
                }
                let data = std::ffi::CString::new(opts).expect("no NUL in mount options");
                rustix::mount::mount(
                    "tmpfs",
                    &path,
                    "tmpfs",
                    rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
                    data.as_c_str(),
                )
                .map_err(|e| err(name, format!("mounting a tmpfs: {e}")))?;
            } else {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
            }
            if let Some(g) = fs_group {
                let _ = std::os::unix::fs::chown(&path, None, Some(g));
            }
            out.insert(
                name.clone(),
                Prepared::Dir {
                    path,
                    read_only: false,
                    make_subpaths: true,
                },
            );
        } else if let Some(h) = &v.host_path {
            if !h.path.starts_with('/') {
                return Err(err(name, format!("hostPath {:?} is not absolute", h.path)));
            }
            host_path(name, &h.path, h.type_.as_deref().unwrap_or(""))?;
            out.insert(
                name.clone(),
                Prepared::Dir {
                    path: PathBuf::from(&h.path),
                    read_only: false,
                    make_subpaths: true,
                },
            );
        } else if let Some(c) = &v.persistent_volume_claim {
            let read_only = c.read_only == Some(true);
            let prepared = match src.claims.get(&c.claim_name) {
                Some(ClaimSource::Named(n)) => Prepared::Named {
                    name: n.clone(),
                    read_only,
                },
                Some(ClaimSource::Host(p)) => Prepared::Dir {
                    path: PathBuf::from(p),
                    read_only,
                    make_subpaths: true,
                },
                Some(ClaimSource::Unavailable(why)) => return Err(err(name, why.clone())),
                None => {
                    return Err(err(
                        name,
                        format!("persistentvolumeclaim {:?} was not read", c.claim_name),
                    ))
                }
            };
            out.insert(name.clone(), prepared);
        } else {
            return Err(err(name, "this volume type is not supported by corral's node agent (use emptyDir, hostPath, configMap, secret, downwardAPI, projected or persistentVolumeClaim)"));
        }
    }
    Ok(out)
}

/// A container's mounts of the prepared volumes (blocking: makes `subPath`s).
pub fn mounts(c: &Container, prepared: &HashMap<String, Prepared>) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let p = prepared.get(&vm.name).ok_or_else(|| {
            format!(
                "container {}: volumeMount {:?}: the pod has no volume of that name",
                c.name, vm.name
            )
        })?;
        if !vm.mount_path.starts_with('/') {
            return Err(format!(
                "container {}: mountPath {:?} must be absolute",
                c.name, vm.mount_path
            ));
        }
        let sub = vm.sub_path.clone().filter(|s| !s.is_empty());
        if let Some(s) = &sub {
            if !safe_rel(s) {
                return Err(format!(
                    "container {}: subPath {s:?} must be a relative path without '..'",
                    c.name
                ));
            }
        }
        let ro = vm.read_only == Some(true);
        match p {
            Prepared::Dir {
                path,
                read_only,
                make_subpaths,
            } => {
                let source = match &sub {
                    None => path.clone(),
                    Some(s) => {
                        let full = path.join(s);
                        if !full.exists() {
                            if *make_subpaths {
                                std::fs::create_dir_all(&full).map_err(|e| {
                                    format!("container {}: making subPath {s:?}: {e}", c.name)
                                })?;
                            } else {
                                return Err(format!(
                                    "container {}: subPath {s:?} does not exist in volume {:?}",
                                    c.name, vm.name
                                ));
                            }
                        }
                        full
                    }
                };
                out.push(Mount {
                    source: MountSource::Bind { source },
                    target: vm.mount_path.clone(),
                    readonly: ro || *read_only,
                });
            }
            Prepared::Named { name, read_only } => {
                if sub.is_some() {
                    return Err(format!(
                        "container {}: subPath is not supported on persistentVolumeClaim volume {:?}",
                        c.name, vm.name
                    ));
                }
                out.push(Mount {
                    source: MountSource::Volume {
                        name: Some(name.clone()),
                        nocopy: false,
                    },
                    target: vm.mount_path.clone(),
                    readonly: ro || *read_only,
                });
            }
        }
    }
    Ok(out)
}

/// Unmounts what is mounted under the pod's directory and removes it (blocking).
pub fn teardown(dir: &Path) -> std::io::Result<()> {
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let prefix = format!("{}/", dir.display());
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        // Deepest first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            if let Err(e) = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH) {
                tracing::warn!(mount = m, "unmounting a pod volume: {e}");
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "image": "i", "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "scratch", "mountPath": "/data", "subPath": "sub"},
                    {"name": "info", "mountPath": "/info", "readOnly": true},
                    {"name": "claim", "mountPath": "/claim"}
                ]}],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 0o600,
                        "items": [{"key": "k1", "path": "dir/one.txt"}, {"key": "k2", "path": "two", "mode": 0o444}]}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}}
                ]
            }
        }))
        .unwrap()
    }

    fn sources(k1: &str) -> Sources {
        let mut s = Sources::default();
        s.configmaps.insert(
            "cm".into(),
            Some(
                [("k1", k1), ("k2", "two"), ("k3", "three")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        );
        s.claims
            .insert("data".into(), ClaimSource::Named("k8s-pvc-ns-data".into()));
        s
    }

    #[test]
    fn volumes_are_made_and_refreshed() {
        let t = tempfile::tempdir().unwrap();
        let p = pod();
        let ctx = FieldContext::default();
        let prepared = materialize(t.path(), &p, &sources("one"), &ctx).unwrap();
        let cfg = t.path().join("volumes/configmap/cfg");
        assert_eq!(
            std::fs::read_to_string(cfg.join("dir/one.txt")).unwrap(),
            "one"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cfg.join("dir/one.txt")), 0o600);
        assert_eq!(mode(&cfg.join("two")), 0o444);
        assert!(!cfg.join("k3").exists(), "only the items");
        assert_eq!(
            std::fs::read_to_string(t.path().join("volumes/downward-api/info/labels")).unwrap(),
            "a=\"b\""
        );
        // A changed key is rewritten.
        materialize(t.path(), &p, &sources("uno"), &ctx).unwrap();
        assert_eq!(
            std::fs::read_to_string(cfg.join("dir/one.txt")).unwrap(),
            "uno"
        );

        let c = &p.spec.as_ref().unwrap().containers[0];
        let ms = mounts(c, &prepared).unwrap();
        assert_eq!(ms.len(), 4);
        assert!(ms[0].readonly, "configMap volumes are read-only");
        assert_eq!(
            ms[1].source,
            MountSource::Bind {
                source: t.path().join("volumes/empty-dir/scratch/sub")
            }
        );
        assert!(t.path().join("volumes/empty-dir/scratch/sub").is_dir());
        assert!(!ms[1].readonly && ms[2].readonly);
        assert_eq!(
            ms[3].source,
            MountSource::Volume {
                name: Some("k8s-pvc-ns-data".into()),
                nocopy: false
            }
        );
        teardown(t.path()).unwrap();
        assert!(!t.path().exists());
    }

    #[test]
    fn missing_sources_fail_the_mount_unless_optional() {
        let t = tempfile::tempdir().unwrap();
        let mut p = pod();
        let e =
            materialize(t.path(), &p, &Sources::default(), &FieldContext::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"cm\" not found"
        );
        let mut s = sources("one");
        s.configmaps
            .get_mut("cm")
            .unwrap()
            .as_mut()
            .unwrap()
            .remove("k2");
        let e = materialize(t.path(), &p, &s, &FieldContext::default()).unwrap_err();
        assert_eq!(
            e.message,
            "configmap references non-existent config key: k2"
        );
        p.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
            .config_map
            .as_mut()
            .unwrap()
            .optional = Some(true);
        let mut only_claim = Sources {
            claims: sources("one").claims,
            ..Default::default()
        };
        materialize(t.path(), &p, &only_claim, &FieldContext::default()).unwrap();
        // A claim not bound yet fails the mount, saying so.
        only_claim.claims.insert(
            "data".into(),
            ClaimSource::Unavailable("persistentvolumeclaim \"data\" is not bound".into()),
        );
        let e = materialize(t.path(), &p, &only_claim, &FieldContext::default()).unwrap_err();
        assert_eq!(e.volume, "claim");
    }

    #[test]
    fn host_path_types_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("made");
        host_path("v", d.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        host_path("v", d.to_str().unwrap(), "Directory").unwrap();
        assert!(host_path("v", d.to_str().unwrap(), "File").is_err());
        let f = t.path().join("f");
        host_path("v", f.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(host_path("v", "/no/such", "Directory").is_err());
        assert!(!safe_rel("../x") && !safe_rel("/abs") && safe_rel("a/b"));
    }
}
