//! The Dockerfile parser and the variable expander on arbitrary text: no panic, no hang; what
//! parses yields stages whose steps all have a position inside the text, and expansion of any
//! word (with a variable lookup that always answers) either succeeds or names what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    if let Ok(df) = corral_build::dockerfile::parse(text) {
        for stage in &df.stages {
            assert!(stage.from.line >= 1 && stage.from.line <= lines + 1);
            for step in &stage.steps {
                assert!(step.line >= 1 && step.line <= lines + 1);
                let _ = corral_build::dockerfile::parse_trigger(&step.text);
            }
        }
    }
    let vars = |n: &str| (n.len() % 2 == 0).then(|| n.to_owned());
    for escape in ['\\', '`'] {
        let _ = corral_build::expand::word(text, escape, &vars);
        let _ = corral_build::expand::words(text, escape, &vars);
        let _ = corral_build::expand::text(text, escape, &vars);
        let _ = corral_build::expand::pairs(text, escape, &vars, true);
    }
    let ig = corral_build::ignore::Ignore::parse(text);
    let _ = ig.excluded(text);
    let _ = corral_build::ignore::matches(text, "a/b/c");
});
