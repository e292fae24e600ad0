//! Image archives: `load` reads docker-archive and OCI-archive tarballs (what `docker save`,
//! `podman save` and `skopeo copy` write, plain or compressed); `save` writes an OCI archive
//! that also carries docker's `manifest.json`, so podman, skopeo and docker all load it.
//!
//! An archive is hostile input. It is read in one pass: each regular file is staged as a blob
//! while its digest is computed; nothing becomes visible until the manifest, the config and
//! every layer check out (OCI blob names against their content, layers against their diff
//! ids). Only the archive's metadata files are held in memory, bounded by
//! [`MAX_METADATA_BYTES`].

use std::collections::HashMap;
use std::io::{self, Read, Write};

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::Deserialize;
use serde_json::json;

use crate::compression::{self, Compression};
use crate::digest::Digest;
use crate::manifest::{self, LayerDesc};
use crate::reference::{self, ImageName};
use crate::store::{Image, Result, StagedBlob, Store, StoreError, MAX_METADATA_BYTES};

/// Why an archive cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive failed.
    #[error("reading the archive")]
    Read(#[source] io::Error),
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The archive is neither a docker nor an OCI archive.
    #[error("not an image archive: no index.json or manifest.json at its top")]
    NotAnArchive,
    /// A file the archive's metadata names is absent.
    #[error("the archive lacks {0}")]
    Missing(String),
    /// Metadata does not parse.
    #[error("invalid {what} in the archive")]
    Invalid {
        /// Which file.
        what: String,
        /// The cause.
        #[source]
        err: serde_json::Error,
    },
    /// The archive's structure is wrong.
    #[error("invalid archive: {0}")]
    Malformed(String),
    /// A blob's content does not match the digest in its name.
    #[error("digest mismatch: {name} holds content with digest {actual}")]
    BlobMismatch {
        /// The file name in the archive.
        name: String,
        /// The digest of its content.
        actual: Digest,
    },
    /// Writing the archive failed.
    #[error("writing the archive")]
    Write(#[source] io::Error),
}

/// What `load` brought in: one entry per image.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The image id.
    pub id: Digest,
    /// Its names (short form); empty if the archive named none.
    pub names: Vec<String>,
}

struct Staged {
    blob: StagedBlob,
    /// The content, when small enough to be metadata.
    small: Option<Vec<u8>>,
    /// The diff id it unpacked to, if it was unpacked while the archive was still being read.
    early: Option<Digest>,
}

/// Files at least this big are unpacked in the background as soon as they are staged, while
/// the rest of the archive is read: they can only be layers.
const EARLY_UNPACK_BYTES: u64 = 64 << 10;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Loads every image of a docker-archive or OCI-archive tarball.
///
/// Layers are unpacked in background threads while the archive is still being read (their
/// diff ids are checked against the config afterwards); if the load fails, layers it unpacked
/// that no image uses are removed again.
pub fn load<R: Read>(store: &Store, input: R) -> Result<Vec<Loaded>, ArchiveError> {
    let _content = store.content_lock()?;
    let mut early = Vec::new();
    let res = load_inner(store, input, &mut early);
    if res.is_err() && !early.is_empty() {
        let used: std::collections::BTreeSet<Digest> = store
            .images()
            .unwrap_or_default()
            .iter()
            .flat_map(|i| i.diff_ids().unwrap_or_default())
            .collect();
        for d in early.iter().filter(|d| !used.contains(*d)) {
            store.remove_layer(d);
        }
    }
    res
}

fn load_inner<R: Read>(
    store: &Store,
    input: R,
    early: &mut Vec<Digest>,
) -> Result<Vec<Loaded>, ArchiveError> {
    let (_, plain) = compression::decompress(input).map_err(ArchiveError::Read)?;
    let mut files: HashMap<String, Staged> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut archive = tar::Archive::new(plain);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut running: std::collections::VecDeque<(String, std::thread::JoinHandle<Option<Digest>>)> =
        Default::default();
    let mut finished: HashMap<String, Digest> = HashMap::new();
    let join = |(name, h): (String, std::thread::JoinHandle<Option<Digest>>),
                finished: &mut HashMap<String, Digest>| {
        if let Ok(Some(d)) = h.join() {
            finished.insert(name, d);
        }
    };
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // Old docker archives link duplicate layers to the first copy.
                if let Some(t) = entry.link_name_bytes() {
                    let t = String::from_utf8_lossy(&t).into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        name.rsplit_once('/').map_or("", |(d, _)| d).to_owned()
                    } else {
                        String::new()
                    };
                    links.insert(name, clean(&format!("{base}/{t}")));
                }
                continue;
            }
            _ => continue,
        }
        let size = entry.header().size().map_err(ArchiveError::Read)?;
        let mut w = store.blob_writer()?;
        let small = if size <= MAX_METADATA_BYTES {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            w.write_all(&buf).map_err(ArchiveError::Read)?;
            Some(buf)
        } else {
            io::copy(&mut entry, &mut w).map_err(ArchiveError::Read)?;
            None
        };
        let blob = w.finish()?;
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            if blob.digest.hex() != hex {
                return Err(ArchiveError::BlobMismatch {
                    name,
                    actual: blob.digest.clone(),
                });
            }
        }
        if blob.size >= EARLY_UNPACK_BYTES {
            if running.len() >= workers {
                join(running.pop_front().expect("one running"), &mut finished);
            }
            let (st, path) = (store.clone(), blob.path().to_owned());
            let handle = std::thread::spawn(move || {
                let f = std::fs::File::open(path).ok()?;
                // Any failure is reported again, typed, by the checked unpack later.
                st.unpack_layer(f, None).ok()
            });
            running.push_back((name.clone(), handle));
        }
        files.insert(
            name,
            Staged {
                blob,
                small,
                early: None,
            },
        );
    }
    while let Some(r) = running.pop_front() {
        join(r, &mut finished);
    }
    for (name, d) in finished {
        early.push(d.clone());
        if let Some(s) = files.get_mut(&name) {
            s.early = Some(d);
        }
    }
    let resolve = |n: &str| -> String {
        let n = clean(n);
        links.get(&n).cloned().unwrap_or(n)
    };
    let mut plan: Vec<(ImagePlan, Vec<String>)> = Vec::new();
    if let Some(index) = files.get("index.json").and_then(|s| s.small.clone()) {
        let docker_tags = docker_names(&files);
        let index: ImageIndex = parse(&index, "index.json")?;
        for (i, desc) in index.manifests().iter().enumerate() {
            let d = parse_digest(desc.digest().as_ref())?;
            let mplan = oci_plan(&files, &d, Some(desc.media_type().to_string()), 0)?;
            let mut names = Vec::new();
            let ann = desc.annotations().clone().unwrap_or_default();
            for key in [
                "io.containerd.image.name",
                "org.opencontainers.image.ref.name",
            ] {
                if let Some(v) = ann.get(key) {
                    if let Ok(n) = ImageName::parse(v) {
                        if v.contains('/') || v.contains(':') || key.starts_with("io.") {
                            names.push(n.full());
                            break;
                        }
                    }
                }
            }
            if names.is_empty() {
                if let Some(tags) = docker_tags.get(i) {
                    names.extend(tags.iter().cloned());
                }
            }
            plan.push((mplan, names));
        }
    } else if let Some(mj) = files.get("manifest.json").and_then(|s| s.small.clone()) {
        let entries: Vec<DockerEntry> = parse(&mj, "manifest.json")?;
        for e in entries {
            let config_name = resolve(&e.config);
            let config = small(&files, &config_name)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let n = resolve(l);
                let s = files
                    .get(&n)
                    .ok_or_else(|| ArchiveError::Missing(n.clone()))?;
                let kind = sniff(s)?;
                layers.push((n, kind));
            }
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| ImageName::parse(t).ok().map(|n| n.full()))
                .collect();
            plan.push((
                ImagePlan::Docker {
                    config,
                    config_file: config_name,
                    layers,
                },
                names,
            ));
        }
    } else {
        return Err(ArchiveError::NotAnArchive);
    }

    let mut loaded = Vec::new();
    for (p, names) in plan {
        let (digest, id) = commit_plan(store, &files, p)?;
        if names.is_empty() {
            store.set_dangling(&digest)?;
        }
        for n in &names {
            store.set_name(&ImageName::parse(n).map_err(StoreError::from)?, &digest)?;
        }
        loaded.push(Loaded {
            id,
            names: names.iter().map(|n| reference::short(n)).collect(),
        });
    }
    Ok(loaded)
}

enum ImagePlan {
    /// An OCI manifest stored in the archive under its digest.
    Oci { manifest: Digest },
    /// A docker-archive image: a config file and layer files.
    Docker {
        config: Vec<u8>,
        config_file: String,
        layers: Vec<(String, Compression)>,
    },
}

fn clean(p: &str) -> String {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn parse<'a, T: Deserialize<'a>>(b: &'a [u8], what: &str) -> Result<T, ArchiveError> {
    serde_json::from_slice(b).map_err(|err| ArchiveError::Invalid {
        what: what.to_owned(),
        err,
    })
}

fn parse_digest(s: &str) -> Result<Digest, ArchiveError> {
    s.parse()
        .map_err(|_| ArchiveError::Malformed(format!("bad digest {s:?}")))
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn small(files: &HashMap<String, Staged>, name: &str) -> Result<Vec<u8>, ArchiveError> {
    let s = files
        .get(name)
        .ok_or_else(|| ArchiveError::Missing(name.to_owned()))?;
    s.small
        .clone()
        .ok_or_else(|| ArchiveError::Malformed(format!("{name} is too large for metadata")))
}

fn sniff(s: &Staged) -> Result<Compression, ArchiveError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(s.blob.path()).map_err(ArchiveError::Read)?;
    let n = f.read(&mut head).map_err(ArchiveError::Read)?;
    Ok(Compression::sniff(&head[..n]))
}

/// Names from a docker `manifest.json` beside an OCI index (docker 25+ writes both).
fn docker_names(files: &HashMap<String, Staged>) -> Vec<Vec<String>> {
    let Some(b) = files.get("manifest.json").and_then(|s| s.small.as_ref()) else {
        return Vec::new();
    };
    let Ok(entries) = serde_json::from_slice::<Vec<DockerEntry>>(b) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .map(|e| {
            e.repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| ImageName::parse(t).ok().map(|n| n.full()))
                .collect()
        })
        .collect()
}

/// Follows an index (nested at most a few levels) to the linux/amd64 image manifest.
fn oci_plan(
    files: &HashMap<String, Staged>,
    d: &Digest,
    media_type: Option<String>,
    depth: u32,
) -> Result<ImagePlan, ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Malformed("indexes nested too deep".into()));
    }
    let body = small(files, &blob_name(d))?;
    if manifest::is_index(media_type.as_deref(), &body) {
        let idx: ImageIndex = parse(&body, &blob_name(d))?;
        let (sub, mt) = manifest::pick_platform(&idx)
            .ok_or_else(|| ArchiveError::Malformed("no linux/amd64 image in the index".into()))?;
        return oci_plan(files, &sub, mt, depth + 1);
    }
    Ok(ImagePlan::Oci {
        manifest: d.clone(),
    })
}

/// Unpacks and verifies an image's layers from the staged files, then makes its blobs
/// visible. Returns (manifest digest, image id).
fn commit_plan(
    store: &Store,
    files: &HashMap<String, Staged>,
    plan: ImagePlan,
) -> Result<(Digest, Digest), ArchiveError> {
    match plan {
        ImagePlan::Oci { manifest: md } => {
            let mbytes = small(files, &blob_name(&md))?;
            let m: ImageManifest = parse(&mbytes, &blob_name(&md))?;
            let cd = parse_digest(m.config().digest().as_ref())?;
            let cbytes = small(files, &blob_name(&cd))?;
            let diff_ids = config_diff_ids(&cbytes)?;
            if diff_ids.len() != m.layers().len() {
                return Err(ArchiveError::Malformed(format!(
                    "{} layers but {} diff ids",
                    m.layers().len(),
                    diff_ids.len()
                )));
            }
            for (l, diff) in m.layers().iter().zip(&diff_ids) {
                let ld = parse_digest(l.digest().as_ref())?;
                let s = files
                    .get(&blob_name(&ld))
                    .ok_or_else(|| ArchiveError::Missing(blob_name(&ld)))?;
                ensure_unpacked(store, s, diff)?;
            }
            for l in m.layers() {
                let ld = parse_digest(l.digest().as_ref())?;
                if !store.has_blob(&ld) {
                    install(store, files, &blob_name(&ld))?;
                }
            }
            store.put_blob(&cbytes, Some(&cd))?;
            store.put_blob(&mbytes, Some(&md))?;
            Ok((md, cd))
        }
        ImagePlan::Docker {
            config,
            config_file,
            layers,
        } => {
            let diff_ids = config_diff_ids(&config)?;
            if diff_ids.len() != layers.len() {
                return Err(ArchiveError::Malformed(format!(
                    "{config_file}: {} layers but {} diff ids",
                    layers.len(),
                    diff_ids.len()
                )));
            }
            let mut descs = Vec::new();
            for ((name, kind), diff) in layers.iter().zip(&diff_ids) {
                let s = &files[name];
                if *kind == Compression::None && s.blob.digest != *diff {
                    return Err(StoreError::DigestMismatch {
                        expected: diff.clone(),
                        actual: s.blob.digest.clone(),
                    }
                    .into());
                }
                ensure_unpacked(store, s, diff)?;
                descs.push(LayerDesc {
                    digest: s.blob.digest.clone(),
                    size: s.blob.size,
                    media_type: kind.layer_media_type().to_owned(),
                });
            }
            for (name, _) in &layers {
                if !store.has_blob(&files[name].blob.digest) {
                    install(store, files, name)?;
                }
            }
            Ok(manifest::write_image(store, &config, &descs)?)
        }
    }
}

/// Makes sure layer `diff` is unpacked from staged file `s`, checking an early unpack's diff id.
fn ensure_unpacked(store: &Store, s: &Staged, diff: &Digest) -> Result<(), ArchiveError> {
    match &s.early {
        Some(actual) if actual != diff => Err(StoreError::DigestMismatch {
            expected: diff.clone(),
            actual: actual.clone(),
        }
        .into()),
        _ if store.has_layer(diff) => Ok(()),
        _ => {
            let f = std::fs::File::open(s.blob.path()).map_err(ArchiveError::Read)?;
            store.unpack_layer(f, Some(diff))?;
            Ok(())
        }
    }
}

/// Copies a staged file into the store (the same file may serve several images, so it is
/// linked, not moved).
fn install(store: &Store, files: &HashMap<String, Staged>, name: &str) -> Result<(), ArchiveError> {
    let s = files
        .get(name)
        .ok_or_else(|| ArchiveError::Missing(name.to_owned()))?;
    let dst = store.blob_path(&s.blob.digest);
    match std::fs::hard_link(s.blob.path(), &dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io {
            what: "storing blob",
            path: dst,
            err: e,
        }
        .into()),
    }
}

fn config_diff_ids(config: &[u8]) -> Result<Vec<Digest>, ArchiveError> {
    #[derive(Deserialize)]
    struct Rootfs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Cfg {
        rootfs: Rootfs,
    }
    let c: Cfg = parse(config, "image config")?;
    c.rootfs.diff_ids.iter().map(|d| parse_digest(d)).collect()
}

/// Writes `image` as an OCI archive (with docker's `manifest.json` too) to `out`.
pub fn save<W: Write>(store: &Store, image: &Image, out: W) -> Result<(), ArchiveError> {
    let mut tar = tar::Builder::new(out);
    let add_bytes = |tar: &mut tar::Builder<W>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data)
            .map_err(ArchiveError::Write)
    };
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let names: Vec<&String> = image.names.iter().filter(|n| !n.starts_with('@')).collect();
    let mbytes = store.read_blob(&image.digest)?;
    let mut ann = serde_json::Map::new();
    if let Some(n) = names.first() {
        ann.insert("org.opencontainers.image.ref.name".into(), json!(n));
        ann.insert("io.containerd.image.name".into(), json!(n));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest.media_type().as_ref().map(|m| m.to_string()).unwrap_or_else(|| manifest::OCI_MANIFEST.into()),
            "digest": image.digest.to_string(),
            "size": mbytes.len(),
            "annotations": ann,
        }],
    });
    add_bytes(
        &mut tar,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )?;
    let layers = image.layer_digests()?;
    let docker = json!([{
        "Config": blob_name(&image.id),
        "RepoTags": names.iter().map(|n| reference::short(n)).collect::<Vec<_>>(),
        "Layers": layers.iter().map(blob_name).collect::<Vec<_>>(),
    }]);
    add_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&docker).expect("json"),
    )?;
    let mut blobs = vec![image.digest.clone(), image.id.clone()];
    blobs.extend(layers);
    blobs.dedup();
    for d in blobs {
        let p = store.blob_path(&d);
        let mut f = std::fs::File::open(&p).map_err(|_| StoreError::MissingBlob(d.clone()))?;
        let len = f.metadata().map_err(ArchiveError::Read)?.len();
        let mut h = tar::Header::new_ustar();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, blob_name(&d), &mut f)
            .map_err(ArchiveError::Write)?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)
}

/// Parses an archive from bytes without a store, for fuzzing: exercises the tar reader and
/// every metadata parser on hostile input.
pub fn fuzz_parse(data: &[u8]) {
    if let Ok((_, plain)) = compression::decompress(data) {
        let mut a = tar::Archive::new(plain);
        if let Ok(entries) = a.entries() {
            for e in entries.take(1000) {
                let Ok(mut e) = e else { break };
                let mut buf = Vec::new();
                if (&mut e)
                    .take(MAX_METADATA_BYTES)
                    .read_to_end(&mut buf)
                    .is_err()
                {
                    break;
                }
                let _ = serde_json::from_slice::<ImageIndex>(&buf);
                let _ = serde_json::from_slice::<ImageManifest>(&buf);
                let _ = serde_json::from_slice::<Vec<DockerEntry>>(&buf);
                let _ = config_diff_ids(&buf);
                let _ = manifest::is_index(None, &buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny valid OCI archive made by `save` from an imported one-file rootfs.
    fn sample(store: &Store) -> Vec<u8> {
        let mut rootfs = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        rootfs.append_data(&mut h, "hello", &b"world"[..]).unwrap();
        let rootfs = rootfs.into_inner().unwrap();
        let name = ImageName::parse("sample:1").unwrap();
        crate::import::import(store, &rootfs[..], &name).unwrap();
        let img = store.resolve("sample:1").unwrap();
        let mut out = Vec::new();
        save(store, &img, &mut out).unwrap();
        out
    }

    #[test]
    fn saved_archive_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = sample(&store);
        let other = tempfile::tempdir().unwrap();
        let store2 = Store::open(other.path()).unwrap();
        let loaded = load(&store2, &data[..]).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].names, vec!["sample:1".to_owned()]);
    }

    /// Deterministic mutation of a valid archive: every corrupted variant either loads an image
    /// whose content checks out or fails cleanly, leaving no blob behind and no name.
    #[test]
    fn corrupted_archives_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = sample(&store);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut d = data.clone();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let pos = (seed >> 33) as usize % d.len();
                d[pos] = (seed >> 24) as u8;
            }
            fuzz_parse(&d);
            let t = tempfile::tempdir().unwrap();
            let s = Store::open(t.path()).unwrap();
            if load(&s, &d[..]).is_err() {
                assert!(s.names().unwrap().is_empty());
                let blobs = std::fs::read_dir(t.path().join("blobs/sha256"))
                    .unwrap()
                    .count();
                assert_eq!(blobs, 0, "a failed load left blobs");
                let tmp = std::fs::read_dir(t.path().join("tmp")).unwrap().count();
                assert_eq!(tmp, 0, "a failed load left temporary files");
            }
        }
    }

    /// A docker archive whose big layer (unpacked early, in the background) does not match its
    /// diff id: the load fails and leaves neither blobs nor unpacked layers.
    #[test]
    fn early_unpacked_layer_with_wrong_diff_id_is_removed() {
        let mut layer = tar::Builder::new(Vec::new());
        let data = vec![7u8; 200 << 10];
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        layer.append_data(&mut h, "big", &data[..]).unwrap();
        let layer = layer.into_inner().unwrap();
        let wrong = Digest::of(b"not this layer");
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{wrong}"]}}}}"#
        );
        let manifest =
            r#"[{"Config":"config.json","RepoTags":["bad:1"],"Layers":["l/layer.tar"]}]"#;
        let mut ar = tar::Builder::new(Vec::new());
        for (name, body) in [
            ("l/layer.tar", &layer[..]),
            ("config.json", config.as_bytes()),
            ("manifest.json", manifest.as_bytes()),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            ar.append_data(&mut h, name, body).unwrap();
        }
        let ar = ar.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = load(&store, &ar[..]).unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("layers"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert!(store.names().unwrap().is_empty());
    }
}
