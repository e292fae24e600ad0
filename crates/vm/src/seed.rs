//! cloud-init's NoCloud seed: an ISO 9660 image labelled `cidata` with `user-data` and
//! `meta-data`, which distribution cloud images read at first boot to configure themselves.
//!
//! The seed also carries corral's own `vendor-data` ([`VENDOR_DATA`]): what cloud-init does
//! not do for a copied disk. A new `instance-id` (a clone's, an import's under a new name)
//! makes cloud-init create new SSH host keys, but it leaves `/etc/machine-id` as it was
//! (`cloud-init clean --machine-id` is left to the image's maker), so a clone would share its
//! source's machine-id — and with it systemd's DHCP client id, journal and D-Bus identity.

use std::path::Path;
use std::process::Command;

/// The copy of the user's user-data a VM keeps in its directory, to make its seed again.
pub const USER_DATA: &str = "user-data";
/// The network configuration last written into a VM's seed, in its directory.
pub const NETWORK_CONFIG: &str = "network-config";

/// Writes the seed image `out` from the user's `user_data` file, with `hostname` as the
/// instance id and local hostname. Made by `genisoimage` (Debian's package of that name).
pub fn nocloud_seed(out: &Path, user_data: &Path, hostname: &str) -> Result<(), String> {
    let data = std::fs::read(user_data)
        .map_err(|e| format!("--cloud-init {}: {e}", user_data.display()))?;
    nocloud_seed_with(out, &data, hostname, None)
}

/// One NIC of a VM as its seed's `network-config` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNic {
    /// The NIC's MAC address, which the guest matches it by.
    pub mac: String,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    /// The default gateway through it, if any.
    pub gateway: Option<String>,
}

/// cloud-init's network configuration (version 2) for `nics`, matched by MAC, with
/// `nameservers`: the addresses corral allocated, for images that configure themselves from
/// the seed rather than by DHCP.
pub fn network_config(nics: &[SeedNic], nameservers: &[String]) -> String {
    let mut s = String::from("version: 2\nethernets:\n");
    for (i, n) in nics.iter().enumerate() {
        s.push_str(&format!(
            "  nic{i}:\n    match:\n      macaddress: \"{}\"\n    addresses: [\"{}\"]\n",
            n.mac, n.address
        ));
        if let Some(g) = &n.gateway {
            s.push_str(&format!(
                "    routes:\n      - to: default\n        via: {g}\n"
            ));
        }
        if !nameservers.is_empty() {
            s.push_str(&format!(
                "    nameservers:\n      addresses: [{}]\n",
                nameservers.join(", ")
            ));
        }
    }
    s
}

/// The seed's `vendor-data`: a script cloud-init runs once per instance (its `scripts-vendor`
/// module, in the final stage), which gives the guest a new random `/etc/machine-id` when the
/// disk has been another instance before (`/var/lib/cloud/instances/` holds another id than the
/// current one): a clone's or a copy's first boot. A disk's first instance keeps the one
/// systemd made at its first boot. The new id is systemd's at the next boot; processes started
/// before the final stage keep the old one until then. User-data can turn it off with
/// `vendor_data: {enabled: false}`.
pub const VENDOR_DATA: &str = r#"#!/bin/sh
# corral: a new machine-id when this disk was another instance before (a clone, a copy).
iid=$(cat /var/lib/cloud/data/instance-id 2>/dev/null) || exit 0
for d in /var/lib/cloud/instances/*; do
  [ -d "$d" ] && [ "${d##*/}" != "$iid" ] || continue
  tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id.corral
  mv /etc/machine-id.corral /etc/machine-id
  if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
    cp /etc/machine-id /var/lib/dbus/machine-id
  fi
  echo "corral: a new machine-id for instance $iid"
  break
done
"#;

/// As [`nocloud_seed`], from the user-data's bytes, with a `network-config` when given.
pub fn nocloud_seed_with(
    out: &Path,
    data: &[u8],
    hostname: &str,
    network: Option<&str>,
) -> Result<(), String> {
    let tmp = tempdir_near(out)?;
    let result = (|| {
        std::fs::write(tmp.join("user-data"), data)?;
        std::fs::write(
            tmp.join("meta-data"),
            format!("instance-id: {hostname}\nlocal-hostname: {hostname}\n"),
        )?;
        std::fs::write(tmp.join("vendor-data"), VENDOR_DATA)?;
        let mut cmd = Command::new("genisoimage");
        cmd.args(["-quiet", "-output"])
            .arg(out)
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .arg(tmp.join("user-data"))
            .arg(tmp.join("meta-data"))
            .arg(tmp.join("vendor-data"));
        if let Some(n) = network {
            std::fs::write(tmp.join("network-config"), n)?;
            cmd.arg(tmp.join("network-config"));
        }
        cmd.output()
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    match result {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "genisoimage failed making the cloud-init seed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "genisoimage is not installed: `apt-get install genisoimage` (scripts/setup.sh does)"
                .to_owned(),
        ),
        Err(e) => Err(format!("making the cloud-init seed: {e}")),
    }
}

fn tempdir_near(out: &Path) -> Result<std::path::PathBuf, String> {
    let dir = out.with_extension("seed.d");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn network_config_matches_each_nic_by_mac() {
        let nics = [
            super::SeedNic {
                mac: "02:42:0a:01:00:05".into(),
                address: "10.1.0.5/24".into(),
                gateway: Some("10.1.0.1".into()),
            },
            super::SeedNic {
                mac: "02:42:0a:02:00:07".into(),
                address: "10.2.0.7/24".into(),
                gateway: None,
            },
        ];
        let text = super::network_config(&nics, &["10.1.0.1".into()]);
        assert_eq!(
            text,
            "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"02:42:0a:01:00:05\"\n    addresses: [\"10.1.0.5/24\"]\n    routes:\n      - to: default\n        via: 10.1.0.1\n    nameservers:\n      addresses: [10.1.0.1]\n  nic1:\n    match:\n      macaddress: \"02:42:0a:02:00:07\"\n    addresses: [\"10.2.0.7/24\"]\n    nameservers:\n      addresses: [10.1.0.1]\n"
        );
    }

    /// Runs [`super::VENDOR_DATA`] against a guest tree under `root` (its absolute paths
    /// moved there) whose cloud-init has seen `instances`, the current one `current`; the
    /// machine-id afterwards.
    fn run_in(root: &std::path::Path, instances: &[&str], current: &str) -> String {
        let r = root.display().to_string();
        for d in ["etc", "var/lib/cloud/data", "var/lib/dbus"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for i in instances {
            std::fs::create_dir_all(root.join("var/lib/cloud/instances").join(i)).unwrap();
        }
        std::fs::write(root.join("var/lib/cloud/data/instance-id"), current).unwrap();
        std::fs::write(
            root.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        let script = super::VENDOR_DATA
            .replace("/var/lib/", &format!("{r}/var/lib/"))
            .replace("/etc/", &format!("{r}/etc/"));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(root.join("etc/machine-id")).unwrap()
    }

    #[test]
    fn vendor_data_renews_the_machine_id_only_on_a_disk_that_was_another_instance() {
        let dir = tempfile::tempdir().unwrap();
        let first = run_in(&dir.path().join("a"), &["web"], "web");
        assert_eq!(
            first, "0123456789abcdef0123456789abcdef\n",
            "a first instance keeps it"
        );
        let cloned = run_in(&dir.path().join("b"), &["web", "web2"], "web2");
        assert_ne!(cloned, first, "a clone gets a new one");
        let id = cloned.trim_end();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{cloned:?}"
        );
    }
}
