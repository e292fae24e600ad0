//! The field selector parser on arbitrary text: no panic; what parses prints (escaped) in a
//! form that parses back to the same selector, validates against a field list, and matches an
//! object built from its own requirements without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = corral_api::selector::FieldSelector::parse(text) else {
        return;
    };
    let canonical = selector.to_string();
    let again = corral_api::selector::FieldSelector::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
    assert_eq!(again, selector, "{canonical:?}");
    let _ = selector.validate(&["metadata.name", "metadata.namespace", "spec.nodeName"]);
    let mut object = json!({});
    for r in selector.requirements() {
        let mut node = &mut object;
        for part in r.field.split('.') {
            if !node.is_object() {
                break;
            }
            node = node
                .as_object_mut()
                .expect("checked above")
                .entry(part)
                .or_insert_with(|| json!({}));
        }
        *node = json!(r.value);
    }
    let _ = selector.matches(&object);
    let _ = selector.exact_match("metadata.name");
});
