//! Images made from containers: `commit` (the container's changes as a new layer over its
//! image, frozen while they are read unless told not to), `diff`, and an image's `history`.

use corral_container::container_diff::{self, Change};
use corral_container::Status;
use corral_image::commit::CommitOptions;

use crate::events::Event;
use crate::{Engine, EngineError, Result};

/// One entry of an image's history, as `docker history` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    /// When.
    pub created: String,
    /// What made it.
    pub created_by: String,
    /// Its comment.
    pub comment: String,
    /// Whether it made no layer.
    pub empty_layer: bool,
    /// The layer's size on disk, when it made one.
    pub size: Option<u64>,
}

impl Engine {
    /// The changes of a container's filesystem (`diff`).
    pub fn diff(&self, id: &str) -> Result<Vec<Change>> {
        let cs = self.containers()?;
        container_diff::changes(&cs, id)
            .map_err(|e| EngineError::Conflict(crate::containers::chain(&e)))
    }

    /// Writes a container's changes as an OCI layer (an uncompressed tar with whiteouts):
    /// what `commit` stores, and what a build step's container leaves.
    pub fn write_layer<W: std::io::Write>(&self, id: &str, out: W) -> Result<()> {
        let cs = self.containers()?;
        container_diff::write_layer(&cs, id, out)
            .map_err(|e| EngineError::Conflict(crate::containers::chain(&e)))
    }

    /// A new image of the container's image plus its changes; returns the image id.
    /// `pause` freezes a running container while its files are read (docker's default), so
    /// that the layer is one consistent state.
    pub fn commit(
        &self,
        id: &str,
        reference: Option<&str>,
        opts: &CommitOptions,
        pause: bool,
    ) -> Result<String> {
        let cs = self.containers()?;
        let s = cs.load(id)?;
        let store = self.images()?;
        let base = store.resolve(&s.image_id).map_err(|_| {
            EngineError::Conflict(format!(
                "the image of {} ({}) is no longer in the store: nothing to commit onto",
                s.name, s.image
            ))
        })?;
        let name = reference
            .map(corral_image::reference::ImageName::parse)
            .transpose()
            .map_err(|e| EngineError::invalid(format!("commit: {e}")))?;
        let freeze = pause && s.status == Status::Running && !s.paused;
        if freeze {
            self.set_paused(id, true)?;
        }
        // The layer goes through a temporary file: the store unpacks and stores it in one pass.
        let tmp = store.tmp_path("commit");
        let written = std::fs::File::create(&tmp)
            .map_err(crate::io_err("creating", &tmp))
            .and_then(|f| self.write_layer(id, std::io::BufWriter::new(f)));
        if freeze {
            let _ = self.set_paused(id, false);
        }
        let made = written.and_then(|()| {
            let f = std::fs::File::open(&tmp).map_err(crate::io_err("reading", &tmp))?;
            let mut o = opts.clone();
            if o.created_by.is_empty() {
                o.created_by = format!("corral commit {}", s.name);
            }
            Ok(corral_image::commit::commit(
                &store,
                &base,
                std::io::BufReader::new(f),
                name.as_ref(),
                &o,
            )?)
        });
        let _ = std::fs::remove_file(&tmp);
        let image_id = made?.to_string();
        self.emit(
            Event::new("container", "commit", &s.id)
                .attr("name", &s.name)
                .attr("image", reference.unwrap_or(&image_id)),
        );
        Ok(image_id)
    }

    /// An image's history, newest first, each layer-making step with its layer's size.
    pub fn history(&self, what: &str) -> Result<Vec<HistoryEntry>> {
        let store = self.images()?;
        let img = store.resolve(what)?;
        let raw: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&img.id)?).map_err(|e| {
                EngineError::Conflict(format!("the image's config does not parse: {e}"))
            })?;
        let diff_ids = img.diff_ids()?;
        let mut layers = diff_ids.iter();
        let mut out = Vec::new();
        let entries = raw["history"].as_array().cloned().unwrap_or_default();
        for h in entries {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty {
                None
            } else {
                layers.next().and_then(|d| store.layer_size(d))
            };
            out.push(HistoryEntry {
                created: h["created"].as_str().unwrap_or("").to_owned(),
                created_by: h["created_by"].as_str().unwrap_or("").to_owned(),
                comment: h["comment"].as_str().unwrap_or("").to_owned(),
                empty_layer: empty,
                size,
            });
        }
        // Layers no history entry accounts for (images made without one).
        for d in layers {
            out.push(HistoryEntry {
                created: String::new(),
                created_by: String::new(),
                comment: String::new(),
                empty_layer: false,
                size: store.layer_size(d),
            });
        }
        out.reverse();
        Ok(out)
    }
}

impl Engine {
    /// `export`: the container's root filesystem as a tar stream written to `out`.
    pub fn export(&self, id: &str, out: impl std::io::Write) -> Result<()> {
        let cs = self.containers()?;
        corral_container::container_export::export(&cs, id, out)
            .map_err(|e| EngineError::Conflict(crate::containers::chain(&e)))
    }

    /// `cp C:PATH -`: `path` in a running container as a tar stream (docker's form), written
    /// to `out`. The files are first copied out as `cp` copies them — resolved inside the
    /// container, symlinks as symlinks — into a private scratch directory.
    pub fn copy_out_tar(&self, id: &str, path: &str, out: impl std::io::Write) -> Result<()> {
        let cs = self.containers()?;
        let scratch = tempfile::Builder::new()
            .prefix(".cp-")
            .tempdir_in(cs.dir(id))
            .map_err(crate::io_err("making a scratch directory in", &cs.dir(id)))?;
        corral_container::container_cp::copy_out(&cs, id, path, scratch.path())
            .map_err(|e| EngineError::Conflict(crate::containers::chain(&e)))?;
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        for e in
            std::fs::read_dir(scratch.path()).map_err(crate::io_err("listing", scratch.path()))?
        {
            let e = e.map_err(crate::io_err("listing", scratch.path()))?;
            let name = e.file_name();
            let p = e.path();
            let r = if p.is_dir() && !p.is_symlink() {
                tar.append_dir_all(&name, &p)
            } else {
                tar.append_path_with_name(&p, &name)
            };
            r.map_err(crate::io_err("writing the tar stream of", &p))?;
        }
        tar.finish()
            .map_err(crate::io_err("writing the tar stream of", scratch.path()))?;
        Ok(())
    }

    /// `cp - C:PATH`: a tar stream from `input` unpacked into directory `path` of a running
    /// container. The archive is hostile input: it is unpacked into a private scratch
    /// directory first (the tar crate refuses `..` and absolute names and never writes
    /// through a symlink it made), then each entry is copied in as `cp` copies files in.
    pub fn copy_in_tar(&self, id: &str, input: impl std::io::Read, path: &str) -> Result<()> {
        let cs = self.containers()?;
        // docker's rule: the destination of a stream is an existing directory.
        let is_dir = corral_container::container_cp::is_dir(&cs, id, path)
            .map_err(|e| EngineError::Conflict(crate::containers::chain(&e)))?;
        if !is_dir {
            return Err(EngineError::invalid(format!(
                "cp -: {path} is not a directory in the container: a tar stream is unpacked into an existing directory"
            )));
        }
        let scratch = tempfile::Builder::new()
            .prefix(".cp-")
            .tempdir_in(cs.dir(id))
            .map_err(crate::io_err("making a scratch directory in", &cs.dir(id)))?;
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(scratch.path()).map_err(|e| {
            EngineError::invalid(format!("cp -: the tar stream on standard input: {e}"))
        })?;
        let target = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        for e in
            std::fs::read_dir(scratch.path()).map_err(crate::io_err("listing", scratch.path()))?
        {
            let e = e.map_err(crate::io_err("listing", scratch.path()))?;
            corral_container::container_cp::copy_in(&cs, id, &e.path(), &target)
                .map_err(|err| EngineError::Conflict(crate::containers::chain(&err)))?;
        }
        Ok(())
    }
}
