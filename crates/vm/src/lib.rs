//! corral-vm: virtual machines, with QEMU as the machine emulator.
#![warn(missing_docs)]
