//! cloud-init's NoCloud seed: an ISO 9660 image labelled `cidata` with `user-data` and
//! `meta-data`, which distribution cloud images read at first boot to configure themselves.

use std::path::Path;
use std::process::Command;

/// Writes the seed image `out` from the user's `user_data` file, with `hostname` as the
/// instance id and local hostname. Made by `genisoimage` (Debian's package of that name).
pub fn nocloud_seed(out: &Path, user_data: &Path, hostname: &str) -> Result<(), String> {
    let data = std::fs::read(user_data)
        .map_err(|e| format!("--cloud-init {}: {e}", user_data.display()))?;
    let tmp = tempdir_near(out)?;
    let result = (|| {
        std::fs::write(tmp.join("user-data"), &data)?;
        std::fs::write(
            tmp.join("meta-data"),
            format!("instance-id: {hostname}\nlocal-hostname: {hostname}\n"),
        )?;
        Command::new("genisoimage")
            .args(["-quiet", "-output"])
            .arg(out)
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .arg(tmp.join("user-data"))
            .arg(tmp.join("meta-data"))
            .output()
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
