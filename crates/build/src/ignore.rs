//! Path patterns: the glob of `COPY` sources and `.dockerignore`, with Docker's rules.
//!
//! A pattern is matched a path component at a time: `*` any run of characters but `/`, `?`
//! one, `[a-z]` / `[^a-z]` a class, the escape `\` a literal, and a whole component `**` any
//! number of components (none too). `.dockerignore` (moby's patternmatcher): one pattern a
//! line, `#` comments, each cleaned (`./a/` is `a`, a leading `/` dropped); a path is
//! excluded when the last pattern that matches it or one of its parent directories is not an
//! exception (`!`).

/// Whether `pattern` matches the whole of `path` (both `/`-separated, relative).
pub fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let s: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    match_components(&p, &s)
}

/// Components against components, `**` matching any run of them. Iterative, with one
/// backtracking point (the last `**`): a later `**` can take whatever an earlier one could,
/// so the cost stays at most the product of the lengths (retrying every `**` was exponential).
fn match_components(p: &[&str], s: &[&str]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p.get(pi) == Some(&"**") {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        if pi == p.len() && si == s.len() {
            return true;
        }
        if let (Some(first), Some(c)) = (p.get(pi), s.get(si)) {
            if component(first.as_bytes(), c.as_bytes()) {
                pi += 1;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                (pi, si) = (sp, ss + 1);
            }
            _ => return false,
        }
    }
}

/// Whether one pattern component matches one name: the same walk as [`match_components`],
/// with `*` over bytes.
fn component(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p.get(pi) == Some(&b'*') {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        if pi == p.len() && si == s.len() {
            return true;
        }
        if let (true, Some(&c)) = (pi < p.len(), s.get(si)) {
            if let Some(n) = one(&p[pi..], c) {
                pi += n;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                (pi, si) = (sp, ss + 1);
            }
            _ => return false,
        }
    }
}

/// Whether the pattern `p` (not empty, not at a `*`) matches the byte `c`: how much of the
/// pattern that took.
fn one(p: &[u8], c: u8) -> Option<usize> {
    match p[0] {
        b'?' => Some(1),
        b'[' => match class(&p[1..], c) {
            Some((hit, rest)) => hit.then_some(p.len() - rest.len()),
            // An unterminated class is a literal `[`.
            None => (c == b'[').then_some(1),
        },
        b'\\' if p.len() > 1 => (c == p[1]).then_some(2),
        lit => (c == lit).then_some(1),
    }
}

/// A `[...]` class (after the `[`): whether `c` is in it, and the pattern after its `]`.
fn class(p: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (neg, mut i) = match p.first() {
        Some(b'^') | Some(b'!') => (true, 1),
        _ => (false, 0),
    };
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != neg, &p[i + 1..]));
        }
        first = false;
        let mut lo = p[i];
        if lo == b'\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        let mut hi = lo;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hi = p[i + 2];
            i += 2;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
        i += 1;
    }
    None
}

/// Whether `pattern` has glob characters (otherwise it names one path).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Cleans a path the way Go's `filepath.Clean` does, relative (no leading `/`): `.` and empty
/// components dropped, `..` taking the previous one away (and kept when there is none).
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !path.starts_with('/') {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The rules of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(String, bool)>,
}

impl Ignore {
    /// Parses a `.dockerignore`'s text.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            rules.push((pat, exception));
        }
        Ignore { rules }
    }

    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule is an exception (then an excluded directory may still hold files
    /// that are not).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, e)| *e)
    }

    /// Whether the context path `rel` is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut out = false;
        for (pat, exception) in &self.rules {
            if matches_or_parent(pat, rel) {
                out = !exception;
            }
        }
        out
    }
}

/// Whether `pat` matches `rel` or one of its parent directories.
fn matches_or_parent(pat: &str, rel: &str) -> bool {
    if matches(pat, rel) {
        return true;
    }
    let mut cur = rel;
    while let Some((parent, _)) = cur.rsplit_once('/') {
        if matches(pat, parent) {
            return true;
        }
        cur = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_per_component() {
        assert!(matches("*.txt", "a.txt"));
        assert!(!matches("*.txt", "d/a.txt"));
        assert!(matches("d/*.txt", "d/a.txt"));
        assert!(matches("**/*.txt", "a.txt"));
        assert!(matches("**/*.txt", "x/y/a.txt"));
        assert!(matches("x/**", "x/y/z"));
        assert!(matches("?.c", "a.c"));
        assert!(!matches("?.c", "ab.c"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[^a-c]x", "bx"));
        assert!(matches("[!a-c]x", "dx"));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "a"));
        assert!(matches("a[", "a["));
    }

    #[test]
    fn many_stars_match_in_polynomial_time() {
        // Found by the dockerfile fuzz target: 43 `*` against a name they do not match took
        // exponential time (every `*` retried every split).
        let text = format!("{}YL\\\u{1}", "*".repeat(43));
        assert!(!matches(&text, "a/b/c"));
        assert!(!matches(&text, &text));
        assert!(!matches(&"*a".repeat(40), &"a".repeat(39)));
        assert!(matches(&"*a".repeat(40), &"a".repeat(80)));
        let deep = format!("{}x", "**/".repeat(40));
        assert!(!matches(&deep, &"a/".repeat(40)));
        assert!(matches(&deep, &format!("{}x", "a/".repeat(40))));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(matches("**/a/**/b", "x/a/y/a/z/b"));
    }

    #[test]
    fn clean_is_gos() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("/a/../b"), "b");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("a/../../x"), "../x");
        assert_eq!(clean("."), "");
    }

    #[test]
    fn dockerignore_last_match_wins_and_parents_count() {
        let ig = Ignore::parse("# comment\n*.md\n!README.md\nbuild/\n/tmp\n**/*.o\n");
        assert!(ig.excluded("a.md"));
        assert!(!ig.excluded("README.md"));
        assert!(ig.excluded("build/x/y"));
        assert!(ig.excluded("tmp"));
        assert!(ig.excluded("src/deep/x.o"));
        assert!(!ig.excluded("src/main.c"));
        assert!(ig.has_exceptions());
        let keep = Ignore::parse("docs\n!docs/keep.txt\n");
        assert!(keep.excluded("docs/other.txt"));
        assert!(!keep.excluded("docs/keep.txt"));
    }
}
