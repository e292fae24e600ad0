//! corral-image: OCI images on this machine.
//!
//! Owns the content-addressed image store under `CORRAL_ROOT/images` ([`store`]): blobs by
//! digest, each layer unpacked once by diff id into a directory that containers share as an
//! overlayfs lower layer ([`unpack`]), and names. Brings images in and out: rootfs tarballs
//! ([`import`]), docker and OCI archives ([`archive`]), registries over the OCI distribution API
//! ([`registry`]); a container's changes as a new layer on its image ([`commit`]).
//!
//! Does not own: running anything from an image (corral-container, corral-vm), building images,
//! or drawing progress (the caller implements [`progress::Progress`]).
//!
//! Everything that comes from outside — archives, layer tarballs, manifests, registry answers —
//! is treated as hostile: sizes are bounded, digests verified before content is visible, and
//! extraction is confined to the layer directory by the kernel (`openat2(RESOLVE_IN_ROOT)`).

#![warn(missing_docs)]

pub mod archive;
pub mod commit;
pub mod compression;
pub mod digest;
pub mod import;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use reference::ImageName;
pub use store::{Image, Store, StoreError};
