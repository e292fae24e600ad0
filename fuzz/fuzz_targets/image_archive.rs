//! Image archives and the metadata inside them (index.json, manifests, docker manifest.json,
//! configs): hostile bytes must never panic the parsers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    corral_image::archive::fuzz_parse(data);
});
