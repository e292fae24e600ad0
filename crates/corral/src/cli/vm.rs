//! `vm ...`.

use clap::{Args, Subcommand};

/// `corral vm ...`: virtual machines run by QEMU (KVM where the host has hardware
/// virtualization, QEMU's TCG otherwise), with corral's agent inside image VMs.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create and start a VM; without -d, wait for its main process (or its console) and
    /// exit with its code.
    ///
    /// Examples:
    ///   corral vm run --rm --image busybox -- echo hi
    ///   corral vm run -d --name web --image busybox --network corral -- httpd -f -p 80
    ///   corral vm run --boot-disk debian.qcow2 --cloud-init user-data.yaml --memory 1G
    Run(VmRunArgs),
    /// Create a VM without starting it.
    Create(VmRunArgs),
    /// Start a created or stopped VM.
    Start {
        /// Stay attached to the main process's output and exit with its code.
        #[arg(short, long)]
        attach: bool,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Stop VMs cleanly (the agent powers the guest off, or ACPI), then kill after a timeout.
    Stop {
        /// Seconds to wait for a clean power-off before killing.
        #[arg(short, long, default_value_t = 30)]
        time: u64,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Stop and start VMs.
    Restart {
        /// Seconds to wait for a clean power-off before killing.
        #[arg(short, long, default_value_t = 30)]
        time: u64,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// End VMs at once (QEMU quits; the guest gets no chance to sync).
    Kill {
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Remove VMs with their disks, logs and network endpoints.
    Rm {
        /// Kill running VMs first.
        #[arg(short, long)]
        force: bool,
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// List VMs.
    #[command(alias = "ps", alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show VMs' configuration and state as JSON (with the guest's facts when it runs).
    Inspect {
        /// VM names or ids.
        #[arg(required = true)]
        vms: Vec<String>,
    },
    /// Run a command in a running VM through corral's agent.
    Exec {
        /// Keep stdin open and send it to the command.
        #[arg(short, long)]
        interactive: bool,
        /// Run the command on a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Set an environment variable (K=V).
        #[arg(short, long = "env", value_name = "K=V")]
        env: Vec<String>,
        /// Working directory in the guest.
        #[arg(short, long)]
        workdir: Option<String>,
        /// `UID[:GID]` in the guest.
        #[arg(short, long)]
        user: Option<String>,
        /// The VM.
        vm: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Copy a file between the host and a running VM: `vm cp FILE VM:/path` or `vm cp VM:/path FILE`
    /// (`-` is stdin or stdout).
    Cp {
        /// From.
        source: String,
        /// To.
        destination: String,
    },
    /// Show a VM's main process output (`--console`: what its serial console printed).
    Logs {
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// The serial console's log instead of the main process's output.
        #[arg(long)]
        console: bool,
        /// The VM.
        vm: String,
    },
    /// Show VMs' usage: QEMU's CPU time and host memory (its cgroup), and the guest's own
    /// memory (from the agent) and balloon.
    Stats {
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        /// As JSON (once).
        #[arg(long)]
        json: bool,
        /// VM names or ids (default: every running VM).
        vms: Vec<String>,
    },
    /// Change a VM's memory or CPUs. A running VM's memory moves through its balloon (up to
    /// what it booted with); other changes apply at the next start.
    Set {
        /// Memory (e.g. 256M).
        #[arg(short, long)]
        memory: Option<String>,
        /// Virtual CPUs.
        #[arg(long)]
        cpus: Option<u32>,
        /// Put an ISO image in the CD-ROM drive of a stopped disk VM, or `none` to eject it
        /// (after an install).
        #[arg(long, value_name = "FILE|none")]
        cdrom: Option<String>,
        /// The VM.
        vm: String,
    },
    /// Move a running image VM to another corral host while it keeps running (disk and
    /// memory copied live, then a short pause). The other host runs `corral vm receive`.
    Migrate {
        /// The destination: the ADDR:PORT its `corral vm receive --listen` serves.
        #[arg(long)]
        to: String,
        /// Leave QEMU's migration settings at its defaults (for comparison).
        #[arg(long)]
        qemu_defaults: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
    /// Receive VMs migrated from other corral hosts (runs until stopped).
    Receive {
        /// ADDR:PORT to listen on.
        #[arg(long)]
        listen: String,
    },
    /// Snapshots of a VM's disk, or of the whole running machine with --memory.
    #[command(subcommand)]
    Snapshot(VmSnapshotCommand),
    /// A VM's disks: list, add, remove and grow them.
    #[command(subcommand)]
    Disk(VmDiskCommand),
    /// Where a running VM's screen is (`--graphics vnc`): its VNC address and password.
    Vnc {
        /// Print JSON: {"address", "port", "password"}.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
    /// Attach the terminal to a running VM's serial console (detach with Ctrl-]).
    Console {
        /// The VM.
        vm: String,
    },
    /// Write a stopped VM to one archive (zstd-compressed tar: its config, disks, kernel and
    /// initramfs), for `corral vm import` on another host.
    ///
    /// Examples:
    ///   corral vm export web -o web.vm.tar.zst
    ///   corral vm export web -o - | ssh other corral vm import -
    Export {
        /// The archive to write (`-`: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: String,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// Export a running VM with its memory: take a memory snapshot (`export-<time>`),
        /// stop the VM, and export it with its snapshots; on the other host `vm snapshot
        /// restore VM export-<time>` resumes it where it was.
        #[arg(long)]
        memory: bool,
        /// The VM (stopped, unless --memory).
        vm: String,
    },
    /// Make a new, stopped VM from an archive of `corral vm export` (with the snapshots
    /// that travelled in its disk).
    Import {
        /// The new VM's name (default: the exported VM's, unless taken here).
        #[arg(long)]
        name: Option<String>,
        /// Join this network instead of the exported VM's (`none`: no NIC).
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
        /// The archive (`-`: standard input).
        file: String,
    },
    /// Turn a stopped image VM into a read-only template (the VM is gone afterwards); `vm
    /// template ls`, `vm template rm NAME`.
    ///
    /// Examples:
    ///   corral vm template web1 web-base
    ///   corral vm clone web-base web2 --start
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Template {
        /// ls or rm.
        #[command(subcommand)]
        cmd: Option<VmTemplateCommand>,
        /// The stopped VM.
        #[arg(required = true)]
        vm: Option<String>,
        /// The template's name (not `ls` or `rm`).
        #[arg(required = true)]
        name: Option<String>,
    },
    /// Make a new VM from a template or a stopped VM: its disk is a copy-on-write overlay,
    /// made in milliseconds whatever its size; it has its own name, addresses and machine id.
    Clone {
        /// Start the new VM.
        #[arg(long)]
        start: bool,
        /// Networks to join instead of the source's (repeatable; `none` for no NIC).
        #[arg(long)]
        network: Vec<String>,
        /// A template's name, or a stopped VM's name or id.
        source: String,
        /// The new VM's name (also its hostname).
        name: String,
    },
}

/// `corral vm template ls|rm`.
#[derive(Debug, Subcommand)]
pub enum VmTemplateCommand {
    /// List templates, with the VMs that use them.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove templates; refused while a VM or template uses one (they are named).
    Rm {
        /// Template names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Arguments of `vm run` and `vm create`.
#[derive(Debug, Args)]
pub struct VmRunArgs {
    /// Run in the background and print the VM's id.
    #[arg(short, long)]
    pub detach: bool,
    /// Name the VM (also the guest's hostname and DNS name).
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the VM when it stops.
    #[arg(long)]
    pub rm: bool,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory (e.g. 512M, 2G).
    #[arg(short, long, default_value = "512M")]
    pub memory: String,
    /// Start the VM again when it ends: no (default), `on-failure[:N]` (a panic, a QEMU
    /// crash or a main process that failed; at most N times), always or unless-stopped (not
    /// after `vm stop`); docker's back-off between restarts.
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Size of the VM's writable disk for an image boot (default 2G); a --boot-disk's size is
    /// its file's (grow it with `corral vm disk resize`).
    #[arg(long)]
    pub disk: Option<String>,
    /// Boot this OCI image: corral's kernel and agent, the image as the root filesystem.
    #[arg(long, conflicts_with_all = ["boot_disk", "initrd", "cmdline"])]
    pub image: Option<String>,
    /// Boot a bootable raw or qcow2 disk image through the firmware.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernel", "initrd", "cmdline"])]
    pub boot_disk: Option<std::path::PathBuf>,
    /// Boot the --boot-disk file where it is, instead of a copy of it in corral's store (a
    /// reflink where the filesystem can, else a sparse copy; `vm rm` removes the copy, and
    /// two VMs from one file each have their own).
    #[arg(long, requires = "boot_disk")]
    pub boot_disk_in_place: bool,
    /// Boot the disk through UEFI (OVMF) rather than the BIOS.
    #[arg(long)]
    pub uefi: bool,
    /// An ISO image in the VM's CD-ROM drive, booted when the disk does not boot: without
    /// --boot-disk, an installer onto an empty disk of --disk SIZE (default 20G); eject it
    /// afterwards with `corral vm set VM --cdrom none`.
    #[arg(long, value_name = "FILE.iso", conflicts_with_all = ["image", "kernel"])]
    pub cdrom: Option<std::path::PathBuf>,
    /// `none` (the default: the serial console only) or `vnc`: a VGA screen that a VNC
    /// server on 127.0.0.1 shows, behind a password made at each start (`corral vm vnc VM`).
    #[arg(long, value_name = "none|vnc", default_value = "none", value_parser = ["none", "vnc"])]
    pub graphics: String,
    /// A guest kernel (with --image: instead of the one corral finds in /boot).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<std::path::PathBuf>,
    /// An initramfs for --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<std::path::PathBuf>,
    /// The kernel command line for --kernel.
    #[arg(long, requires = "kernel")]
    pub cmdline: Option<String>,
    /// cloud-init user-data for a --boot-disk guest (delivered as a NoCloud seed).
    #[arg(long, value_name = "FILE", requires = "boot_disk")]
    pub cloud_init: Option<std::path::PathBuf>,
    /// kvm, tcg or auto (auto: KVM where the host has hardware virtualization).
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Networks to join, one NIC each (default: $CORRAL_DEFAULT_NETWORK or `corral`; `none`
    /// for no NIC).
    #[arg(long)]
    pub network: Vec<String>,
    /// An extra DNS name on the networks.
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// A fixed IPv4 address on the (first) network, reserved for the VM from its creation
    /// to its removal (a taken one is refused at create).
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// A fixed MAC address on the (first) network (default: derived from the address).
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Publish a guest port on the host: `[IP:][HOSTPORT:]PORT[/tcp|udp]`, ranges as
    /// 8000-8010:80-90 (on the first network).
    #[arg(short, long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Keep stdin open for the main process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the main process on a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable of the main process (K=V).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory of the main process.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// `UID[:GID]` of the main process.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Seconds to wait for the guest agent to answer after QEMU starts.
    #[arg(long, default_value_t = 90)]
    pub boot_timeout: u64,
    /// The command and its arguments, after `--` (default: the image's).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `corral vm snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum VmSnapshotCommand {
    /// Take a snapshot: the disk (crash-consistent; a running guest syncs first), or with
    /// --memory the whole running machine, so that a restore resumes its processes.
    Create {
        /// Include the running machine's memory, CPUs and devices.
        #[arg(long)]
        memory: bool,
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// List a VM's snapshots.
    Ls {
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
    /// Restore a snapshot: a memory snapshot puts a running VM back where it was (a stopped
    /// one starts from it); a disk snapshot rolls a stopped VM's disk back.
    Restore {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
    /// Delete a snapshot.
    Rm {
        /// The VM.
        vm: String,
        /// The snapshot's name.
        name: String,
    },
}

/// `corral vm disk ...`.
#[derive(Debug, Subcommand)]
pub enum VmDiskCommand {
    /// Grow a VM's writable disk (an image VM's, or a --boot-disk VM's boot disk) to SIZE
    /// (e.g. 20G, or +5G): at once while it runs (the guest sees the new capacity; growing
    /// its partition and filesystem is the guest's, as cloud-init's growpart does at boot),
    /// or its file while stopped. Disks only grow.
    Resize {
        /// Grow this data disk (`vm disk add`) instead of the writable disk.
        #[arg(long, value_name = "NAME")]
        disk: Option<String>,
        /// The VM.
        vm: String,
        /// The new size, or `+SIZE` to add to the current one.
        size: String,
    },
    /// Add an empty data disk (qcow2, in the VM's directory) to a stopped VM, attached at
    /// its next start as a virtio disk whose serial is NAME (`/dev/disk/by-id/virtio-NAME`).
    Add {
        /// The VM.
        vm: String,
        /// The disk's name: a-z, 0-9 and '-', at most 20 characters.
        name: String,
        /// Its size (e.g. 10G).
        size: String,
    },
    /// Remove a data disk, and its data, from a stopped VM.
    Rm {
        /// The VM.
        vm: String,
        /// The disk's name.
        name: String,
    },
    /// List a VM's disks: the writable one and the data disks, with their sizes.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The VM.
        vm: String,
    },
}
