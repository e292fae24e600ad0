//! Strategic merge patch and server-side apply on arbitrary JSON: the input is a JSON array
//! `[original, patch]`; for a few kinds, the strategic merge, the apply merge, a server-side
//! apply with field management and the update recording all end in a value or an error, never
//! a panic, and what succeeds is an object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

use corral_api::patch::{record_update, server_side_apply, strategic_merge};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [original, patch, ..] = pair.as_slice() else {
        return;
    };
    let kind = ["Pod", "Deployment", "Node", "Service", "CronJob", "Widget"][data.len() % 6];
    if let Ok(out) = strategic_merge(kind, original, patch) {
        assert!(out.is_object());
    }
    let mut applied = patch.clone();
    if let Value::Object(map) = &mut applied {
        map.insert("apiVersion".into(), json!("v1"));
        map.insert("kind".into(), json!(kind));
    }
    let live = record_update(None, original, "creator", "Update", "t0");
    if let Ok(first) = server_side_apply(
        Some(&live),
        &applied,
        "fuzz",
        data.len().is_multiple_of(2),
        "t1",
    ) {
        assert!(first.is_object());
        let _ = server_side_apply(Some(&first), &applied, "fuzz", false, "t2");
        let _ = server_side_apply(Some(&first), original, "other", false, "t2");
        let _ = record_update(Some(&first), original, "editor", "Update", "t3");
    }
    let _ = server_side_apply(None, &applied, "fuzz", false, "t1");
});
