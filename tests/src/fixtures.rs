//! Images built at test time from Debian's busybox-static (`/bin/busybox`), with no network.
//!
//! - [`busybox_rootfs_tar`]: a minimal rootfs tarball, what `corral image import` takes;
//! - [`three_layer_oci_archive`] / [`three_layer_docker_archive`]: the same three-layer image
//!   as an OCI archive (layers gzip and zstd) and as a docker-archive (plain tar layers). The
//!   layers exercise what unpacking must get right: a whiteout, a file replaced in an upper
//!   layer, and an opaque directory;
//! - [`tampered_oci_archive`] / [`tampered_docker_archive`]: the same, with the top layer's
//!   content swapped for another while the manifest and config still declare the original
//!   digests — loading them must fail;
//! - [`multi_arch_oci_layout`]: an OCI layout directory whose tag names an image index of two
//!   images, linux/arm64 (listed first) and linux/amd64, for platform selection on pull.
//!
//! Everything is deterministic (fixed mtimes, owners, compression settings), so digests are
//! known before corral sees the archive and tests can compare them with `image inspect`.

use std::path::Path;

use serde_json::json;

use crate::tarball::{Compression, TarWriter};
use crate::{sha256_digest, sha256_hex};

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Applets linked in `bin/` of the rootfs, each a symlink to `busybox`.
pub const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "true", "false", "sleep", "env", "id", "mkdir", "rm", "touch", "ps",
    "grep", "hostname", "mount", "umount", "wc", "head", "tail", "kill", "stat", "test", "printf",
    "pwd", "sed", "ip", "ping", "wget", "nc", "uname", "date", "chmod", "cp", "mv", "ln", "find",
    "dd", "df", "du", "free", "top", "vi", "tee", "xargs", "sync", "hexdump", "httpd", "nslookup",
    "ifconfig", "route",
];

/// Content of `etc/removed` in layer 1 (deleted by a whiteout in layer 2).
pub const REMOVED_CONTENT: &[u8] = b"gone\n";
/// Content of `etc/replaced` in layer 1.
pub const REPLACED_OLD: &[u8] = b"old\n";
/// Content of `etc/replaced` after layer 2.
pub const REPLACED_NEW: &[u8] = b"new\n";
/// Content that the tampered fixtures put where the genuine top layer's `data/opaque/c` was.
pub const TAMPERED_CONTENT: &[u8] = b"TAMPERED: this content does not match any declared digest\n";

/// Appends the busybox rootfs entries (directories, `bin/busybox`, applet links, `etc/passwd`,
/// `etc/group`) to `tar`.
///
/// # Panics
/// If `/bin/busybox` cannot be read (install Debian's `busybox-static`).
pub fn add_busybox_rootfs(tar: &mut TarWriter) {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX} (install busybox-static): {e}"));
    tar.dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/group", 0o644, b"root:x:0:\n")
        .dir("tmp", 0o1777)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("dev", 0o755)
        .dir("root", 0o700);
    for applet in APPLETS {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
}

/// The busybox rootfs as plain tar bytes.
pub fn busybox_rootfs_bytes() -> Vec<u8> {
    let mut tar = TarWriter::new();
    add_busybox_rootfs(&mut tar);
    tar.finish()
}

/// Writes the busybox rootfs tarball to `path` (plain tar) and returns its bytes.
pub fn busybox_rootfs_tar(path: &Path) -> Vec<u8> {
    let bytes = busybox_rootfs_bytes();
    write(path, &bytes);
    bytes
}

/// The busybox rootfs plus `big.bin`, `size` bytes of incompressible data: for tests that need
/// a large layer (interrupted pulls, full disks). Returns the plain tar bytes.
pub fn busybox_rootfs_with_random(size: usize, seed: u64) -> Vec<u8> {
    let mut tar = TarWriter::new();
    add_busybox_rootfs(&mut tar);
    tar.file(
        "big.bin",
        0o644,
        &crate::tarball::pseudo_random_bytes(size, seed),
    );
    tar.finish()
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// What a fixture archive declares, for comparison with `corral image inspect`.
#[derive(Debug, Clone)]
pub struct ArchiveFixture {
    /// The name written into the archive (`name:tag`).
    pub name: String,
    /// `sha256:` digests of the uncompressed layers, bottom first (the config's diff ids).
    pub diff_ids: Vec<String>,
    /// `sha256:` digests of the layer blobs as stored in the archive, bottom first.
    pub layer_digests: Vec<String>,
    /// `sha256:` digest of the config blob.
    pub config_digest: String,
    /// `sha256:` digest of the OCI manifest (OCI archives only).
    pub manifest_digest: Option<String>,
    /// SHA-256 hexes of content that must never be stored (tampered fixtures only): the
    /// tampered blob and its uncompressed tar.
    pub forbidden_sha256: Vec<String>,
}

/// The three uncompressed layers of the fixture image, bottom first.
pub fn three_layers() -> [Vec<u8>; 3] {
    let mut l1 = TarWriter::new();
    add_busybox_rootfs(&mut l1);
    l1.file("etc/removed", 0o644, REMOVED_CONTENT)
        .file("etc/replaced", 0o644, REPLACED_OLD)
        .dir("data", 0o755)
        .dir("data/opaque", 0o755)
        .file("data/opaque/a", 0o644, b"a\n")
        .file("data/opaque/b", 0o644, b"b\n");

    let mut l2 = TarWriter::new();
    l2.dir("etc", 0o755)
        .whiteout("etc/removed")
        .file("etc/replaced", 0o644, REPLACED_NEW);

    [l1.finish(), l2.finish(), top_layer(b"c\n")]
}

/// Layer 3: `data/opaque` made opaque, holding only `c` with `c_content`.
fn top_layer(c_content: &[u8]) -> Vec<u8> {
    let mut l3 = TarWriter::new();
    l3.dir("data", 0o755)
        .dir("data/opaque", 0o755)
        .opaque("data/opaque")
        .file("data/opaque/c", 0o644, c_content);
    l3.finish()
}

/// A valid OCI image config for `diff_ids`: amd64, linux, `Cmd ["/bin/sh"]`.
pub fn image_config(diff_ids: &[String]) -> Vec<u8> {
    image_config_for(diff_ids, "amd64")
}

/// As [`image_config`], for another `architecture` (still `os` linux).
pub fn image_config_for(diff_ids: &[String], architecture: &str) -> Vec<u8> {
    let history: Vec<_> = (0..diff_ids.len())
        .map(|i| {
            json!({
                "created": "2024-01-01T00:00:00Z",
                "created_by": format!("corral-e2e fixture layer {}", i + 1),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    }))
    .expect("config json")
}

/// Compression of each fixture layer in the OCI archive: gzip, zstd, gzip.
const OCI_COMPRESSION: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::Gzip];

/// Writes the three-layer image as an OCI archive named `name` (`name:tag`, written as the
/// `org.opencontainers.image.ref.name` annotation).
pub fn three_layer_oci_archive(path: &Path, name: &str) -> ArchiveFixture {
    write_oci_archive(path, name, false)
}

/// As [`three_layer_oci_archive`], but the top layer's blob holds other content than its
/// declared digest (the blob file is still named after the declared digest).
pub fn tampered_oci_archive(path: &Path, name: &str) -> ArchiveFixture {
    write_oci_archive(path, name, true)
}

fn write_oci_archive(path: &Path, name: &str, tamper: bool) -> ArchiveFixture {
    let layers = three_layers();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let blobs: Vec<Vec<u8>> = layers
        .iter()
        .zip(OCI_COMPRESSION)
        .map(|(l, c)| c.apply(l))
        .collect();
    let layer_digests: Vec<String> = blobs.iter().map(|b| sha256_digest(b)).collect();
    let config = image_config(&diff_ids);
    let config_digest = sha256_digest(&config);

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": blobs.iter().zip(OCI_COMPRESSION).map(|(b, c)| json!({
            "mediaType": c.oci_layer_media_type(),
            "digest": sha256_digest(b),
            "size": b.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest json");
    let manifest_digest = sha256_digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": name },
        }],
    }))
    .expect("index json");

    let mut forbidden = Vec::new();
    let mut stored_blobs = blobs.clone();
    if tamper {
        let evil_tar = top_layer(crate::fixtures::TAMPERED_CONTENT);
        let evil_blob = OCI_COMPRESSION[2].apply(&evil_tar);
        forbidden.push(sha256_hex(&evil_tar));
        forbidden.push(sha256_hex(&evil_blob));
        stored_blobs[2] = evil_blob;
    }

    let mut tar = TarWriter::new();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", 0o644, &index)
        .dir("blobs", 0o755)
        .dir("blobs/sha256", 0o755);
    let mut add_blob = |digest: &str, data: &[u8]| {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, data);
    };
    add_blob(&manifest_digest, &manifest);
    add_blob(&config_digest, &config);
    for (digest, data) in layer_digests.iter().zip(&stored_blobs) {
        add_blob(digest, data);
    }
    write(path, &tar.finish());

    ArchiveFixture {
        name: name.to_owned(),
        diff_ids,
        layer_digests,
        config_digest,
        manifest_digest: Some(manifest_digest),
        forbidden_sha256: forbidden,
    }
}

/// Writes the three-layer image as a docker-archive (`docker save` layout, plain tar layers)
/// tagged `name` (`name:tag`, in `manifest.json` `RepoTags`).
pub fn three_layer_docker_archive(path: &Path, name: &str) -> ArchiveFixture {
    write_docker_archive(path, name, false)
}

/// As [`three_layer_docker_archive`], but the top `layer.tar` is not the layer the config's
/// `diff_ids` declare.
pub fn tampered_docker_archive(path: &Path, name: &str) -> ArchiveFixture {
    write_docker_archive(path, name, true)
}

fn write_docker_archive(path: &Path, name: &str, tamper: bool) -> ArchiveFixture {
    let mut layers = three_layers().to_vec();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
    let config = image_config(&diff_ids);
    let config_digest = sha256_digest(&config);
    let config_hex = sha256_hex(&config);

    let mut forbidden = Vec::new();
    if tamper {
        let evil = top_layer(TAMPERED_CONTENT);
        forbidden.push(sha256_hex(&evil));
        layers[2] = evil;
    }

    let layer_dirs: Vec<String> = diff_ids
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_owned())
        .collect();
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [name],
        "Layers": layer_dirs.iter().map(|d| format!("{d}/layer.tar")).collect::<Vec<_>>(),
    }]))
    .expect("manifest.json");
    let repositories = serde_json::to_vec(&json!({
        repo: { tag: layer_dirs.last().expect("a layer") }
    }))
    .expect("repositories");

    let mut tar = TarWriter::new();
    for (dir, layer) in layer_dirs.iter().zip(&layers) {
        tar.dir(dir, 0o755)
            .file(&format!("{dir}/VERSION"), 0o644, b"1.0")
            .file(&format!("{dir}/layer.tar"), 0o644, layer);
    }
    tar.file(&format!("{config_hex}.json"), 0o644, &config)
        .file("manifest.json", 0o644, &manifest)
        .file("repositories", 0o644, &repositories);
    write(path, &tar.finish());

    ArchiveFixture {
        name: name.to_owned(),
        layer_digests: diff_ids.clone(),
        diff_ids,
        config_digest,
        manifest_digest: None,
        forbidden_sha256: forbidden,
    }
}

/// One platform's image in [`MultiArchFixture`].
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// `architecture` of its config and of its index entry's platform.
    pub architecture: String,
    /// `sha256:` digest of its OCI manifest.
    pub manifest_digest: String,
    /// `sha256:` digest of its config: the image id a pull of this platform gives.
    pub config_digest: String,
    /// `sha256:` digest of its one layer, uncompressed (the config's only diff id).
    pub diff_id: String,
    /// `sha256:` digest of its one layer blob (gzip).
    pub layer_digest: String,
}

/// What [`multi_arch_oci_layout`] wrote.
#[derive(Debug, Clone)]
pub struct MultiArchFixture {
    /// The tag in the layout's `index.json` (`org.opencontainers.image.ref.name`).
    pub ref_name: String,
    /// `sha256:` digest of the image index the tag names.
    pub index_digest: String,
    /// The linux/arm64 image, first in the index.
    pub arm64: PlatformImage,
    /// The linux/amd64 image, second in the index.
    pub amd64: PlatformImage,
}

/// Content of `etc/arch` in the arm64 image's layer.
pub const ARM64_MARKER: &[u8] = b"arm64 fixture: not for this machine\n";

/// Writes an OCI image layout directory at `dir` (created if missing: `oci-layout`,
/// `index.json`, `blobs/sha256/`) whose `index.json` names, as `ref_name`, an image index
/// (`application/vnd.oci.image.index.v1+json`) of two one-layer images: linux/arm64 first
/// (a tiny tar), then linux/amd64 (the busybox rootfs). Configs differ in `architecture` and
/// diff ids, so the two image ids differ. Copy it with `skopeo copy --all oci:DIR:REF ...`.
pub fn multi_arch_oci_layout(dir: &Path, ref_name: &str) -> MultiArchFixture {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", blobs_dir.display()));
    let put = |data: &[u8]| -> String {
        let digest = sha256_digest(data);
        write(&blobs_dir.join(sha256_hex(data)), data);
        digest
    };

    let arm64_layer = {
        let mut tar = TarWriter::new();
        tar.dir("etc", 0o755).file("etc/arch", 0o644, ARM64_MARKER);
        tar.finish()
    };
    let amd64_layer = busybox_rootfs_bytes();

    let platform_image = |architecture: &str, layer: &[u8]| -> (PlatformImage, usize) {
        let diff_id = sha256_digest(layer);
        let blob = Compression::Gzip.apply(layer);
        let layer_digest = put(&blob);
        let config = image_config_for(std::slice::from_ref(&diff_id), architecture);
        let config_digest = put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": Compression::Gzip.oci_layer_media_type(),
                "digest": layer_digest,
                "size": blob.len(),
            }],
        }))
        .expect("manifest json");
        let manifest_digest = put(&manifest);
        let image = PlatformImage {
            architecture: architecture.to_owned(),
            manifest_digest,
            config_digest,
            diff_id,
            layer_digest,
        };
        (image, manifest.len())
    };
    let (arm64, arm64_size) = platform_image("arm64", &arm64_layer);
    let (amd64, amd64_size) = platform_image("amd64", &amd64_layer);

    let entry = |image: &PlatformImage, size: usize, variant: Option<&str>| {
        let mut platform = json!({ "architecture": image.architecture, "os": "linux" });
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest,
            "size": size,
            "platform": platform,
        })
    };
    let image_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&arm64, arm64_size, Some("v8")),
            entry(&amd64, amd64_size, None),
        ],
    }))
    .expect("image index json");
    let index_digest = put(&image_index);

    let layout_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest,
            "size": image_index.len(),
            "annotations": { "org.opencontainers.image.ref.name": ref_name },
        }],
    }))
    .expect("index.json");
    write(&dir.join("index.json"), &layout_index);
    write(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );

    MultiArchFixture {
        ref_name: ref_name.to_owned(),
        index_digest,
        arm64,
        amd64,
    }
}
