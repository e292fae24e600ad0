//! The PATCH entry point on arbitrary bytes: the input is a JSON document, a NUL byte, and a
//! patch body; every patch type (JSON patch, merge, strategic merge, apply) ends in an object
//! or an error with a 400 or 422 status, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use corral_api::patch::{apply_patch, PatchType};

fuzz_target!(|data: &[u8]| {
    let (doc, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"{}"[..], data),
    };
    let Ok(target) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    for patch_type in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ] {
        match apply_patch("Pod", &target, patch_type, body) {
            Ok(out) => assert!(out.is_object()),
            Err(e) => assert!(matches!(e.status_code(), 400 | 422), "{e}"),
        }
    }
});
