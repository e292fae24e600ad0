//! The label selector parser on arbitrary text: no panic; what parses prints in a canonical
//! form that parses back to the same selector, and matching it against labels built from its
//! own requirements (and against none) answers without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = corral_api::selector::LabelSelector::parse(text) else {
        return;
    };
    let canonical = selector.to_string();
    let again = corral_api::selector::LabelSelector::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
    assert_eq!(again, selector, "{canonical:?}");
    let mut labels = Map::new();
    for r in selector.requirements() {
        let value = r.values.first().cloned().unwrap_or_default();
        labels.insert(r.key.clone(), Value::String(value));
    }
    let _ = selector.matches_map(&labels);
    let _ = selector.matches(None);
    // Requirements that only ask for equality match the labels they were built from.
    let equality_only = selector
        .requirements()
        .iter()
        .all(|r| r.operator == corral_api::selector::Operator::Equals);
    let distinct_keys = selector
        .requirements()
        .windows(2)
        .all(|w| w[0].key != w[1].key);
    if equality_only && distinct_keys {
        assert!(selector.matches_map(&labels), "{canonical:?}");
    }
});
