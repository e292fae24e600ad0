//! corral-guest: the agent inside a corral VM, and the protocol the host speaks to it.
//!
//! [`proto`] is shared by both ends: the host side (corral-vm) links this library for it.
//! The `corral-guest` binary is PID 1 of the initramfs corral builds: it loads the kernel
//! modules it was given, mounts the root disks, configures the network, then serves
//! requests (exec, copy, info, shutdown) over the virtio-serial port [`proto::PORT_NAME`].
//! It is built static, so that the initramfs needs no C library.

#![warn(missing_docs)]

pub mod proto;
