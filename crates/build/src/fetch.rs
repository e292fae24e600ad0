//! `ADD URL`: the file fetched over HTTP(S) before the step's key is made (its content is part
//! of the key, so a changed file misses the cache and an unchanged one hits), checked against
//! `--checksum=sha256:HEX` when given. The file lands with mode 0600 (Docker's), named after
//! the URL's last path segment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::BuildError;

/// A fetched file.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where it is on the host (a temporary file).
    pub path: PathBuf,
    /// Its name in the image when `DEST` is a directory.
    pub name: String,
}

/// Whether an `ADD` source is a URL.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name a URL gives.
fn name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    after_host
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("download")
        .to_owned()
}

/// Fetches `url` into a new file in `dir`, checking `checksum` (`sha256:HEX`) when given.
pub fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<Fetched, BuildError> {
    let want = match checksum {
        None => None,
        Some(c) => match c.split_once(':') {
            Some(("sha256", hex))
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(hex.to_ascii_lowercase())
            }
            _ => {
                return Err(BuildError::Invalid(format!(
                    "ADD --checksum={c}: the form is sha256:<64 hex digits>"
                )))
            }
        },
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fail =
        |e: &dyn std::fmt::Display| BuildError::Copy(format!("ADD {url}: cannot fetch it: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    let path = dir.join(format!(
        "add-{}-{}",
        std::process::id(),
        hex::encode(&Sha256::digest(url.as_bytes())[..8])
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e))?;
    let digest = rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| fail(&e))?;
        let mut resp = client.get(url).send().await.map_err(|e| fail(&e))?;
        if !resp.status().is_success() {
            return Err(fail(&format!("the server answered {}", resp.status())));
        }
        let mut f = std::fs::File::create(&path).map_err(|e| fail(&e))?;
        let mut h = Sha256::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
            h.update(&chunk);
            f.write_all(&chunk).map_err(|e| fail(&e))?;
        }
        f.sync_all().map_err(|e| fail(&e))?;
        Ok(hex::encode(h.finalize()))
    });
    let digest = match digest {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    if let Some(w) = want {
        if w != digest {
            let _ = std::fs::remove_file(&path);
            return Err(BuildError::Copy(format!(
                "ADD {url}: the checksum does not match: expected sha256:{w}, got sha256:{digest}"
            )));
        }
    }
    Ok(Fetched {
        path,
        name: name_of(url),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_come_from_the_last_segment() {
        assert_eq!(super::name_of("http://h:8/a/b/file.tgz?x=1"), "file.tgz");
        assert_eq!(super::name_of("https://h/dir/"), "dir");
        assert_eq!(super::name_of("https://h"), "download");
    }
}
