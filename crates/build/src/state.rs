//! A stage's state between steps: the image config being written (docker's format, with its
//! history), the layers so far, and the stored image that holds both — every step's result is
//! an unnamed image in corral's store, which is what the build cache points at and what a
//! `RUN` step's container starts from.

use std::path::PathBuf;

use corral_image::manifest::{self, LayerDesc};
use corral_image::{Digest, Image, Store};
use serde_json::{json, Map, Value};

use crate::BuildError;

/// The default `PATH` a build gives a stage whose base sets none (BuildKit's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage's image so far.
#[derive(Debug, Clone)]
pub struct State {
    /// The whole image config (`architecture`, `os`, `config`, `rootfs`, `history` ...).
    pub config: Value,
    /// The layers' blobs, bottom first.
    pub layers: Vec<LayerDesc>,
    /// The layers' diff ids (their unpacked directories), bottom first.
    pub diff_ids: Vec<Digest>,
    /// The stored image of this state (its manifest digest); `None` for an empty `scratch`.
    pub image: Option<Digest>,
}

impl State {
    /// `FROM scratch`.
    pub fn scratch() -> Self {
        State {
            config: json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
            layers: Vec::new(),
            diff_ids: Vec::new(),
            image: None,
        }
    }

    /// The state of a stored image.
    pub fn of_image(store: &Store, img: &Image) -> Result<Self, BuildError> {
        let raw = store.read_blob(&img.id)?;
        let config: Value = serde_json::from_slice(&raw).map_err(|e| {
            BuildError::Image(format!("the config of {} does not parse: {e}", img.id))
        })?;
        let mut layers = Vec::new();
        for (l, d) in img.manifest.layers().iter().zip(img.layer_digests()?) {
            layers.push(LayerDesc {
                digest: d,
                size: l.size(),
                media_type: l.media_type().to_string(),
            });
        }
        Ok(State {
            config,
            layers,
            diff_ids: img.diff_ids()?,
            image: Some(img.digest.clone()),
        })
    }

    /// What identifies this state in the cache keys of the steps after it.
    pub fn identity(&self) -> String {
        match &self.image {
            Some(d) => d.to_string(),
            None => "scratch".into(),
        }
    }

    /// The `config` object (Env, Cmd ...), made when absent.
    pub fn cfg(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"].as_object_mut().expect("an object")
    }

    /// A field of `config`.
    pub fn get(&self, key: &str) -> &Value {
        &self.config["config"][key]
    }

    /// The environment, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.get("Env")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .map(|e| match e.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (e.to_owned(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets one environment variable (replacing its earlier value in place).
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = json!(format!("{key}={value}"));
        let cfg = self.cfg();
        let env = cfg.entry("Env").or_insert_with(|| json!([]));
        if !env.is_array() {
            *env = json!([]);
        }
        let list = env.as_array_mut().expect("an array");
        match list
            .iter()
            .position(|e| e.as_str().is_some_and(|e| e.split('=').next() == Some(key)))
        {
            Some(i) => list[i] = entry,
            None => list.push(entry),
        }
    }

    /// The working directory (`/` when unset).
    pub fn workdir(&self) -> String {
        match self.get("WorkingDir").as_str() {
            Some(w) if !w.is_empty() => w.to_owned(),
            _ => "/".into(),
        }
    }

    /// The shell of shell-form commands (`SHELL`, else `/bin/sh -c`).
    pub fn shell(&self) -> Vec<String> {
        self.get("Shell")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// Appends a history entry.
    pub fn history(&mut self, created_by: &str, empty_layer: bool) {
        let mut h = json!({"created": manifest::now_rfc3339(), "created_by": created_by});
        if empty_layer {
            h["empty_layer"] = json!(true);
        }
        match self.config.get_mut("history") {
            Some(Value::Array(a)) => a.push(h),
            _ => self.config["history"] = json!([h]),
        }
    }

    /// Adds a layer (already in the store) made by `created_by`.
    pub fn add_layer(&mut self, diff_id: Digest, size: u64, created_by: &str) {
        self.layers.push(LayerDesc {
            digest: diff_id.clone(),
            size,
            media_type: corral_image::compression::Compression::None
                .layer_media_type()
                .to_owned(),
        });
        self.diff_ids.push(diff_id.clone());
        if !self.config["rootfs"].is_object() {
            self.config["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        match self.config["rootfs"].get_mut("diff_ids") {
            Some(Value::Array(a)) => a.push(json!(diff_id.to_string())),
            _ => self.config["rootfs"]["diff_ids"] = json!([diff_id.to_string()]),
        }
        self.history(created_by, false);
    }

    /// Stores this state as an unnamed image; returns its manifest digest.
    pub fn store(&mut self, store: &Store) -> Result<Digest, BuildError> {
        self.config["created"] = json!(manifest::now_rfc3339());
        let bytes = serde_json::to_vec(&self.config).expect("serializable");
        let (digest, _) = manifest::write_image(store, &bytes, &self.layers)?;
        self.image = Some(digest.clone());
        Ok(digest)
    }

    /// The image id (config digest) of the stored state.
    pub fn image_id(&self, store: &Store) -> Result<Digest, BuildError> {
        let d = self
            .image
            .as_ref()
            .ok_or_else(|| BuildError::Image("the stage has no image".into()))?;
        Ok(store.image(d)?.id)
    }

    /// The unpacked layers, top first: a [`crate::layers::View`]'s and the user lookups'
    /// order.
    pub fn layer_dirs(&self, store: &Store) -> Vec<PathBuf> {
        self.diff_ids
            .iter()
            .rev()
            .map(|d| store.layer_path(d))
            .collect()
    }
}

/// Writes a layer through a temporary file of the store (`write` fills it) and stores it:
/// unpacked and kept as a blob in one pass. Returns its diff id and size. The build holds the
/// store's content lock.
pub fn store_layer(
    store: &Store,
    write: impl FnOnce(std::io::BufWriter<std::fs::File>) -> Result<(), BuildError>,
) -> Result<(Digest, u64), BuildError> {
    let tmp = store.tmp_path("build-layer");
    let fail = |e: std::io::Error| BuildError::Run(format!("{}: {e}", tmp.display()));
    let made = std::fs::File::create(&tmp)
        .map_err(fail)
        .and_then(|f| write(std::io::BufWriter::new(f)))
        .and_then(|()| {
            let f = std::fs::File::open(&tmp).map_err(fail)?;
            Ok(corral_image::commit::add_layer(
                store,
                std::io::BufReader::new(f),
            )?)
        });
    let _ = std::fs::remove_file(&tmp);
    made
}
