//! VM archives (`corral vm import`) read for real into a scratch directory: whatever the
//! bytes, nothing may panic, nothing may be written beside the staging directory, and only
//! names of the closed set may appear in it.
//!
//! The first byte picks the layer: odd, the rest is the archive as is (the zstd decoder's
//! input); even, the rest is a tar that the target compresses first, so the fuzzer reaches
//! the tar and manifest checks rather than spending itself on zstd's frame format.
#![no_main]

use corral_vm::export::{check_archive, Manifest, Part};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let compressed;
    let archive = if mode & 1 == 1 {
        rest
    } else {
        compressed = zstd::encode_all(rest, 1).expect("compress");
        &compressed[..]
    };
    let base = tempfile::tempdir().expect("tempdir");
    let staging = base.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    let res = check_archive(archive, &staging, 1 << 20);
    let beside = std::fs::read_dir(base.path()).expect("readdir").count();
    assert_eq!(beside, 1, "the reader wrote beside its staging directory");
    for e in std::fs::read_dir(&staging).expect("readdir") {
        let name = e.expect("entry").file_name().into_string().expect("utf-8 name");
        assert!(Part::from_name(&name).is_some(), "unexpected file {name:?}");
    }
    if let Ok(m) = res {
        // What was accepted parses again, and every listed file is there whole.
        let again = Manifest::parse(&serde_json::to_vec(&m).expect("serialize")).expect("reparse");
        assert_eq!(again, m);
        for f in &m.files {
            let len = std::fs::metadata(staging.join(&f.name)).expect("listed file").len();
            assert_eq!(len, f.size);
        }
    }
});
