//! Writing image manifests and configs, and choosing a platform from an index.

use std::time::SystemTime;

use oci_spec::image::ImageIndex;
use serde_json::json;

use crate::digest::Digest;
use crate::store::{Result, Store};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A layer as a manifest lists it.
#[derive(Debug, Clone)]
pub struct LayerDesc {
    /// Digest of the blob (compressed, as stored).
    pub digest: Digest,
    /// Size of the blob.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// Stores `config` and an OCI manifest for it and `layers`; returns the manifest digest and
/// the image id. The blobs of the layers must already be stored.
pub fn write_image(store: &Store, config: &[u8], layers: &[LayerDesc]) -> Result<(Digest, Digest)> {
    let id = store.put_blob(config, None)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": id.to_string(), "size": config.len() },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).expect("serializable");
    let digest = store.put_blob(&bytes, None)?;
    Ok((digest, id))
}

/// Whether a manifest media type (or, when absent, the body's own) is an index.
pub fn is_index(media_type: Option<&str>, body: &[u8]) -> bool {
    let mt = media_type.map(str::to_owned).or_else(|| {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()?
            .get("mediaType")?
            .as_str()
            .map(str::to_owned)
    });
    match mt.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(_) => false,
        // An index without a media type still has "manifests" and no "layers".
        None => serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| v.get("manifests").is_some() && v.get("layers").is_none())
            .unwrap_or(false),
    }
}

/// Picks the linux/amd64 manifest of an index (or its only manifest).
pub fn pick_platform(index: &ImageIndex) -> Option<(Digest, Option<String>)> {
    let entries = index.manifests();
    let chosen = entries
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
            })
        })
        .or(if entries.len() == 1 {
            entries.first()
        } else {
            None
        })?;
    let d = chosen.digest().as_ref().parse().ok()?;
    Some((d, Some(chosen.media_type().to_string())))
}

/// Now as RFC 3339 UTC, as image configs record `created`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}
