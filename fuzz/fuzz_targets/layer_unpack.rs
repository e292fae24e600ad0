//! Layer tarballs unpacked for real into a scratch directory: whatever the bytes, nothing may
//! be written outside it and nothing may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("tempdir");
    let layer = base.path().join("layer");
    std::fs::create_dir(&layer).expect("mkdir");
    let _ = corral_image::unpack::unpack(&mut &data[..], &layer);
    let entries = std::fs::read_dir(base.path()).expect("readdir").count();
    assert_eq!(entries, 1, "the unpack wrote beside its layer directory");
});
