//! The compose loader on arbitrary files: YAML parsing, interpolation, merging, `extends`,
//! the model's checks. Whatever the bytes, loading ends with a project or an error: no panic,
//! no endless recursion.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("compose.yaml"), text).expect("write");
    let _ = corral_compose::load(&corral_compose::LoadOptions {
        cwd: dir.path().to_path_buf(),
        project_name: Some("fuzz".into()),
        ..Default::default()
    });
    let _ = corral_compose::interpolate::string(text, &|n| (n.len() % 2 == 0).then(|| n.to_owned()));
    let _ = corral_compose::syntax::shell_words(text);
});
