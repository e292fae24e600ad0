//! corral-vm: virtual machines, with QEMU as the machine emulator.
//!
//! Owns: the VMs' state on disk ([`store`]), the QEMU engine — which accelerator the host
//! allows and a VM's command line ([`qemu`]), the QMP client ([`qmp`]) — and the per-VM
//! [`monitor`] process that starts QEMU, boots the guest agent and shares its channel.
//! Guest kernels, the initramfs corral builds around its agent, and the disks made from OCI
//! images are in [`kernel`], [`initramfs`], [`cpio`] and [`disk`]. [`export`] moves a stopped
//! VM to another host as one archive; [`resources`] reads a VM's usage and changes its size, [`resize`] grows a VM's disk, [`data_disks`] adds and removes extra ones. [`clone`] makes templates of stopped VMs and clones
//! that share their disks copy-on-write. A pod's VM (`BootSource::Sandbox`: corral's agent, no
//! image, a host directory served by virtiofsd) holds a VM pod's containers for corral-engine;
//! disk VMs may have a CD-ROM (an installer) and a screen behind VNC ([`lifecycle`]).
//!
//! Does not own: the agent itself and its protocol (corral-guest), networks (corral-net,
//! whose TAP endpoints the VMs use), the command line (the corral binary).

#![warn(missing_docs)]

pub mod client;
pub mod clone;
pub mod cpio;
pub mod data_disks;
pub mod disk;
pub mod export;
pub mod initramfs;
pub mod kernel;
pub mod lifecycle;
pub mod migrate;
pub mod monitor;
pub mod qemu;
pub mod qmp;
pub mod resize;
pub mod resources;
pub mod seed;
pub mod snapshot;
pub mod store;
