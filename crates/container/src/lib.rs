//! corral-container: the container runtime.
//!
//! Owns turning a [`config::ContainerConfig`] into a running, isolated, limited process tree:
//! namespaces (pid, mount, uts, ipc, net, cgroup), cgroups v1 and v2 ([`cgroups`], with the
//! device policy as v1 rules or a v2 eBPF program), the root
//! filesystem as an overlay of image layers or a bundle's directory ([`rootfs`]),
//! user namespaces with idmapped layers ([`userns`]), capabilities, rlimits and the system
//! call filter ([`seccomp`]), the descriptors the process inherits ([`fds`]), terminals
//! ([`tty`]), the per-container monitor and the init ([`process`]), container state on disk
//! ([`state`]) and the crash safety of its directories ([`staging`]),
//! named volumes ([`volumes`]), pods' sandboxes ([`sandbox`]), the engine's verbs, one per file (`container_*.rs`), and the OCI
//! runtime's verbs for podman and containerd ([`oci`], [`oci_resources`], [`oci_runtime`]).
//!
//! Does not own: images (corral-image hands it layer directories), networks beyond `none` and
//! `host` (corral-net), the command line.
//!

#![warn(missing_docs)]

pub mod capabilities;
pub mod cgroups;
pub mod config;
pub mod container_cp;
pub mod container_create;
pub mod container_delete;
pub mod container_diff;
pub mod container_exec;
pub mod container_export;
pub mod container_kill;
pub mod container_pause;
pub mod container_start;
pub mod container_stats;
pub mod fds;
pub mod hooks;
pub mod loopback;
pub mod mount_attr;
pub mod mountinfo;
pub mod oci;
pub mod oci_resources;
pub mod oci_runtime;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod staging;
pub mod state;
pub mod tty;
pub mod userns;
pub mod volume_mounts;
pub mod volumes;

pub use config::ContainerConfig;
pub use state::{Containers, State, Status};
