//! `image import`: a root filesystem tarball becomes a one-layer image, as `docker import`.

use std::io::Read;

use serde_json::json;

use crate::compression::{self, Compression};
use crate::digest::{Digest, TeeReader};
use crate::manifest::{self, LayerDesc};
use crate::reference::ImageName;
use crate::store::{Result, Store, StoreError};
use crate::unpack::UnpackError;

/// Unpacks an uncompressed layer tar and stores it as a blob in the same pass (so its digest
/// is its diff id); returns the diff id and the blob's size. The caller holds the content lock.
pub(crate) fn store_layer<R: Read>(store: &Store, layer: R) -> Result<(Digest, u64)> {
    let mut tee = TeeReader::new(layer, store.blob_writer()?);
    let diff_id = store.unpack_layer(&mut tee, None)?;
    let staged = tee.into_writer().finish()?;
    staged.verify(Some(&diff_id))?;
    let size = staged.size;
    staged.commit()?;
    Ok((diff_id, size))
}

/// Imports a rootfs tarball (plain, gzip or zstd) as image `name`; returns the image id.
///
/// The tarball is read once: it is unpacked and stored as an uncompressed layer blob in the
/// same pass, so the layer digest is its diff id.
pub fn import<R: Read>(store: &Store, input: R, name: &ImageName) -> Result<Digest> {
    let _content = store.content_lock()?;
    let (_, plain) = compression::decompress(input)
        .map_err(|e| StoreError::Unpack(None, UnpackError::Read(e)))?;
    let (diff_id, size) = store_layer(store, plain)?;
    let created = manifest::now_rfc3339();
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created": created, "created_by": "corral image import" }],
    });
    let config = serde_json::to_vec(&config).expect("serializable");
    let (digest, id) = manifest::write_image(
        store,
        &config,
        &[LayerDesc {
            digest: diff_id,
            size,
            media_type: Compression::None.layer_media_type().to_owned(),
        }],
    )?;
    store.set_name(name, &digest)?;
    Ok(id)
}
