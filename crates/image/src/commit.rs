//! `commit`: a new image made of a base image and one more layer (a container's changes), with
//! the base's config changed as docker's `commit --change` says.
//!
//! The layer arrives as an uncompressed tar stream with OCI whiteouts; it is unpacked and
//! stored as a blob in one pass (as `import` does), so its digest is its diff id. The base's
//! layers are reused as they are.

use std::io::Read;

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::manifest::{self, LayerDesc};
use crate::reference::ImageName;
use crate::store::{Image, Result, Store, StoreError};

/// What `commit` records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The history entry's comment (`-m`).
    pub message: Option<String>,
    /// The author (`-a`).
    pub author: Option<String>,
    /// Config changes, docker's `--change` instructions: `CMD`, `ENTRYPOINT`, `ENV`, `LABEL`,
    /// `WORKDIR`, `USER`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`.
    pub changes: Vec<String>,
    /// The history entry's `created_by`.
    pub created_by: String,
}

/// Why a `--change` is refused.
fn bad_change(c: &str, why: &str) -> StoreError {
    StoreError::Refused(format!(
        "--change {c:?}: {why} (CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL)"
    ))
}

/// `["a","b"]` (exec form) or `a b` (shell form: `/bin/sh -c`).
fn command_form(arg: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(arg) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), arg.to_owned()],
    }
}

/// Applies docker's `--change` instructions to an image config's `config` object.
pub fn apply_changes(cfg: &mut Value, changes: &[String]) -> Result<()> {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    for c in changes {
        let (word, arg) = c
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((c.trim(), ""));
        let arg = arg.trim();
        let obj = cfg.as_object_mut().expect("an object");
        match word.to_ascii_uppercase().as_str() {
            "CMD" => {
                obj.insert("Cmd".into(), json!(command_form(arg)));
            }
            "ENTRYPOINT" => {
                obj.insert("Entrypoint".into(), json!(command_form(arg)));
            }
            "WORKDIR" => {
                if !arg.starts_with('/') {
                    return Err(bad_change(c, "WORKDIR must be absolute"));
                }
                obj.insert("WorkingDir".into(), json!(arg));
            }
            "USER" => {
                obj.insert("User".into(), json!(arg));
            }
            "STOPSIGNAL" => {
                obj.insert("StopSignal".into(), json!(arg));
            }
            "ENV" | "LABEL" => {
                let pairs: Vec<(String, String)> = if arg.contains('=') {
                    arg.split_whitespace()
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect()
                } else {
                    // The old form: `ENV KEY value with spaces`.
                    let (k, v) = arg.split_once(char::is_whitespace).unwrap_or((arg, ""));
                    vec![(k.to_owned(), v.trim().to_owned())]
                };
                if pairs.iter().any(|(k, _)| k.is_empty()) {
                    return Err(bad_change(c, "a key is empty"));
                }
                if word.eq_ignore_ascii_case("ENV") {
                    let env = obj.entry("Env").or_insert_with(|| json!([]));
                    if let Value::Array(list) = env {
                        for (k, v) in pairs {
                            list.retain(|e| {
                                e.as_str()
                                    .is_none_or(|e| e.split('=').next() != Some(k.as_str()))
                            });
                            list.push(json!(format!("{k}={v}")));
                        }
                    }
                } else {
                    let labels = obj.entry("Labels").or_insert_with(|| json!({}));
                    if labels.is_null() {
                        *labels = json!({});
                    }
                    if let Value::Object(m) = labels {
                        for (k, v) in pairs {
                            m.insert(k, json!(v));
                        }
                    }
                }
            }
            "EXPOSE" | "VOLUME" => {
                let key = if word.eq_ignore_ascii_case("EXPOSE") {
                    "ExposedPorts"
                } else {
                    "Volumes"
                };
                let set = obj.entry(key).or_insert_with(|| json!({}));
                if set.is_null() {
                    *set = json!({});
                }
                let items: Vec<String> = serde_json::from_str::<Vec<String>>(arg)
                    .unwrap_or_else(|_| arg.split_whitespace().map(str::to_owned).collect());
                if let Value::Object(m) = set {
                    for i in items {
                        let i = if key == "ExposedPorts" && !i.contains('/') {
                            format!("{i}/tcp")
                        } else {
                            i
                        };
                        m.insert(i, json!({}));
                    }
                }
            }
            _ => return Err(bad_change(c, "not an instruction commit can apply")),
        }
    }
    Ok(())
}

/// Stores one more layer, read as an uncompressed tar stream with OCI whiteouts: unpacked and
/// kept as a blob in one pass; returns its diff id (its digest) and size. The caller holds
/// [`Store::content_lock`].
pub fn add_layer<R: Read>(store: &Store, layer: R) -> Result<(Digest, u64)> {
    crate::import::store_layer(store, layer)
}

/// Makes image `name` (when given) of `base` plus the layer read from `layer` (an uncompressed
/// tar stream); returns the new image's id.
pub fn commit<R: Read>(
    store: &Store,
    base: &Image,
    layer: R,
    name: Option<&ImageName>,
    opts: &CommitOptions,
) -> Result<Digest> {
    let mut config: Value =
        serde_json::from_slice(&store.read_blob(&base.id)?).map_err(|err| StoreError::Invalid {
            what: "config",
            digest: base.id.clone(),
            err,
        })?;
    if !config.is_object() {
        return Err(StoreError::Refused(
            "the base image's config is not a JSON object".into(),
        ));
    }
    apply_changes(
        config.as_object_mut().map_or(&mut Value::Null, |o| {
            o.entry("config").or_insert_with(|| json!({}))
        }),
        &opts.changes,
    )?;
    let _content = store.content_lock()?;
    let (diff_id, size) = crate::import::store_layer(store, layer)?;
    let created = manifest::now_rfc3339();
    let obj = config.as_object_mut().expect("checked above");
    obj.insert("created".into(), json!(created));
    if let Some(a) = &opts.author {
        obj.insert("author".into(), json!(a));
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(Value::Array(ids)) = rootfs.get_mut("diff_ids") {
        ids.push(json!(diff_id.to_string()));
    }
    let mut entry = json!({"created": created, "created_by": opts.created_by});
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    match obj.get_mut("history") {
        Some(Value::Array(h)) => h.push(entry),
        _ => {
            obj.insert("history".into(), json!([entry]));
        }
    }
    let bytes = serde_json::to_vec(&config).expect("serializable");
    let mut layers: Vec<LayerDesc> = Vec::new();
    for l in base.manifest.layers() {
        layers.push(LayerDesc {
            digest: crate::store::parse_digest(l.digest().as_ref(), &base.digest)?,
            size: l.size(),
            media_type: l.media_type().to_string(),
        });
    }
    layers.push(LayerDesc {
        digest: diff_id,
        size,
        media_type: crate::compression::Compression::None
            .layer_media_type()
            .to_owned(),
    });
    let (digest, id) = manifest::write_image(store, &bytes, &layers)?;
    match name {
        Some(n) => store.set_name(n, &digest)?,
        None => store.set_dangling(&digest)?,
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_as_docker_commit_applies_them() {
        let mut cfg = json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]});
        apply_changes(
            &mut cfg,
            &[
                "CMD [\"echo\", \"hi\"]".into(),
                "ENTRYPOINT /start".into(),
                "ENV A=2 B=3".into(),
                "LABEL version=1.0".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
                "USER web".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg["Cmd"], json!(["echo", "hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/start"]));
        assert_eq!(cfg["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(cfg["Labels"]["version"], "1.0");
        assert!(cfg["ExposedPorts"].get("80/tcp").is_some());
        assert!(cfg["ExposedPorts"].get("53/udp").is_some());
        assert_eq!(cfg["WorkingDir"], "/srv");
        assert!(apply_changes(&mut cfg, &["RUN rm -rf /".into()]).is_err());
        assert!(apply_changes(&mut cfg, &["WORKDIR relative".into()]).is_err());
    }
}
