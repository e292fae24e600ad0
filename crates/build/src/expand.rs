//! Variable expansion with the Dockerfile's rules, for the instructions that expand (`FROM`,
//! `ARG`, `ENV`, `LABEL`, `COPY`, `ADD`, `WORKDIR`, `USER`, `EXPOSE`, `VOLUME`,
//! `STOPSIGNAL`, `ONBUILD`'s trigger when it fires); `RUN`, `CMD` and `ENTRYPOINT` are left to
//! the shell, as Docker leaves them.
//!
//! The forms: `$V`, `${V}`, `${V:-word}` (word when V is unset or empty), `${V-word}` (when
//! unset), `${V:+word}` (word when V is set and not empty), `${V+word}` (when set),
//! `${V:?msg}` / `${V?msg}` (an error naming V). A `$` followed by anything else is a literal
//! `$`, so `$$` stays `$$`. Quoting as Docker's lexer does it: nothing expands inside single
//! quotes; double quotes expand; the quotes themselves are removed; the escape character
//! (`\`, or `` ` `` with `# escape=`) makes the next character literal (inside double quotes
//! only before `$`, `"` and itself). Words split on unquoted white space.

use std::fmt;

/// Why a word does not expand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError(pub String);

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExpandError {}

/// Expands `text` as one word: quotes removed, white space kept.
pub fn word(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = Lexer::new(text, escape, vars).run(false)?;
    Ok(out.pop().unwrap_or_default())
}

/// Expands `text` and splits it into words on unquoted white space.
pub fn words(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(text, escape, vars).run(true)
}

/// Expands the variables of free text (a heredoc's body): quotes are text, the escape
/// character keeps a `$` literal.
pub fn text(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut l = Lexer::new(text, escape, vars);
    let mut out = String::new();
    while let Some(c) = l.peek() {
        l.pos += 1;
        if c == escape && l.peek() == Some('$') {
            out.push('$');
            l.pos += 1;
        } else if c == '$' {
            out.push_str(&l.dollar()?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The names `text` refers to (for cache keys: the values a step uses).
pub fn names_used(text: &str) -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let vars = |n: &str| {
        let mut s = seen.borrow_mut();
        if !s.iter().any(|x| x == n) {
            s.push(n.to_owned());
        }
        None
    };
    // An error (`${X:?}`) still leaves what was recorded up to it, which names X.
    let _ = Lexer::new(text, '\\', &vars).run(true);
    seen.into_inner()
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, vars: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            vars,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(&mut self, split: bool) -> Result<Vec<String>, ExpandError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        // Whether the current word has begun (`""` is a word, empty).
        let mut started = false;
        while let Some(c) = self.peek() {
            if split && c.is_whitespace() {
                self.pos += 1;
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
                continue;
            }
            started = true;
            self.pos += 1;
            if c == self.escape {
                match self.peek() {
                    Some(n) => {
                        cur.push(n);
                        self.pos += 1;
                    }
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.peek() {
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(n) => {
                            cur.push(n);
                            self.pos += 1;
                        }
                        None => return Err(ExpandError("unterminated single quote".into())),
                    }
                }
            } else if c == '"' {
                loop {
                    match self.peek() {
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(e) if e == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(n) if n == '$' || n == '"' || n == self.escape => {
                                    cur.push(n);
                                    self.pos += 1;
                                }
                                _ => cur.push(e),
                            }
                        }
                        Some('$') => {
                            self.pos += 1;
                            let v = self.dollar()?;
                            cur.push_str(&v);
                        }
                        Some(n) => {
                            cur.push(n);
                            self.pos += 1;
                        }
                        None => return Err(ExpandError("unterminated double quote".into())),
                    }
                }
            } else if c == '$' {
                let v = self.dollar()?;
                if split {
                    // An unquoted value splits into words, as the shell splits it.
                    for ch in v.chars() {
                        if ch.is_whitespace() {
                            if started && !cur.is_empty() {
                                words.push(std::mem::take(&mut cur));
                            }
                        } else {
                            cur.push(ch);
                        }
                    }
                    started = !cur.is_empty();
                } else {
                    cur.push_str(&v);
                }
            } else {
                cur.push(c);
            }
        }
        if started || !split {
            words.push(cur);
        }
        Ok(words)
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// After a `$`: the value it stands for, or the `$` itself.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(ExpandError(format!(
                        "bad substitution: expected a variable name after ${{ at {:?}",
                        self.rest()
                    )));
                }
                let value = (self.vars)(&name);
                match self.peek() {
                    Some('}') => {
                        self.pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = self.peek() == Some(':');
                        if colon {
                            self.pos += 1;
                        }
                        let op = self.peek().unwrap_or('}');
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(ExpandError(format!(
                                "unsupported modifier ({op}) in substitution of {name}: use :-, -, :+, +, :? or ?"
                            )));
                        }
                        self.pos += 1;
                        let arg = self.braced_word()?;
                        let set = match colon {
                            true => value.as_deref().is_some_and(|v| !v.is_empty()),
                            false => value.is_some(),
                        };
                        match op {
                            '-' => Ok(if set { value.unwrap_or_default() } else { arg }),
                            '+' => Ok(if set { arg } else { String::new() }),
                            _ if set => Ok(value.unwrap_or_default()),
                            _ => Err(ExpandError(if arg.is_empty() {
                                format!("{name}: is not set")
                            } else {
                                format!("{name}: {arg}")
                            })),
                        }
                    }
                    Some(c) => Err(ExpandError(format!(
                        "unsupported modifier ({c}) in substitution of {name}"
                    ))),
                    None => Err(ExpandError(format!("missing '}}' after ${{{name}"))),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.vars)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// The word of `${V:-word}` up to its `}`, expanded (nested `${...}` allowed).
    fn braced_word(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError("missing '}' in a substitution".into())),
                Some('}') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => {
                    self.pos += 1;
                    out.push_str(&self.dollar()?);
                }
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn rest(&self) -> String {
        self.chars[self.pos..].iter().take(20).collect()
    }
}

/// Splits `K=V K2="a b"` (ENV, LABEL, ARG) into pairs after expansion; the old one-pair form
/// `ENV K some value` when the first word has no `=` (ENV and LABEL only: `allow_old`).
/// ARG's `NAME` without a value is `(NAME, None)`.
pub fn pairs(
    text: &str,
    escape: char,
    vars: &dyn Fn(&str) -> Option<String>,
    allow_old: bool,
) -> Result<Vec<(String, Option<String>)>, ExpandError> {
    let trimmed = text.trim();
    let first_raw = trimmed.split_whitespace().next().unwrap_or("");
    if allow_old && !first_raw.contains('=') {
        let (k, v) = trimmed
            .split_once(char::is_whitespace)
            .ok_or_else(|| ExpandError(format!("{trimmed:?} needs a value: KEY=VALUE")))?;
        let v = word(v.trim(), escape, vars)?;
        return Ok(vec![(k.to_owned(), Some(v))]);
    }
    let mut out = Vec::new();
    for w in words(trimmed, escape, vars)? {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), Some(v.to_owned()))),
            Some(_) => return Err(ExpandError(format!("{w:?}: the name is empty"))),
            None if allow_old => {
                return Err(ExpandError(format!("{w:?} needs a value: KEY=VALUE")))
            }
            None => out.push((w, None)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        match n {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        word(s, '\\', &env).unwrap()
    }

    #[test]
    fn forms_expand_as_dockerfiles_expand_them() {
        assert_eq!(w("$A/${A}"), "a/a");
        assert_eq!(w("${U:-d}|${E:-d}|${E-d}|${U-d}"), "d|d||d");
        assert_eq!(w("${A:+set}|${E:+set}|${E+set}|${U+set}"), "set||set|");
        assert_eq!(w("${U:-${A}x}"), "ax");
        assert_eq!(w("$$"), "$$");
        assert_eq!(w("cost $5"), "cost $5");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "a b");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("${A}_$U."), "a_.");
        assert_eq!(word("`$A", '`', &env).unwrap(), "$A");
        assert_eq!(
            text("say \"$A\" '${U:-u}' \\$A", '\\', &env).unwrap(),
            "say \"a\" 'u' $A"
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            word("${U:?must be set}", '\\', &env).unwrap_err().0,
            "U: must be set"
        );
        assert!(word("${A", '\\', &env).is_err());
        assert!(word("${A/x/y}", '\\', &env).is_err());
        assert!(word("'open", '\\', &env).is_err());
        assert!(word("${}", '\\', &env).is_err());
    }

    #[test]
    fn words_split_on_unquoted_space_only() {
        assert_eq!(
            words("a \"b c\" $SP ''", '\\', &env).unwrap(),
            vec!["a", "b c", "x", "y", ""]
        );
    }

    #[test]
    fn pairs_take_both_forms() {
        let p = pairs("K=1 L=\"x y\" M=$A", '\\', &env, true).unwrap();
        assert_eq!(
            p,
            vec![
                ("K".into(), Some("1".into())),
                ("L".into(), Some("x y".into())),
                ("M".into(), Some("a".into()))
            ]
        );
        let old = pairs("K hello  world", '\\', &env, true).unwrap();
        assert_eq!(old, vec![("K".into(), Some("hello  world".into()))]);
        let args = pairs("V X=1", '\\', &env, false).unwrap();
        assert_eq!(
            args,
            vec![("V".into(), None), ("X".into(), Some("1".into()))]
        );
        assert!(pairs("=1", '\\', &env, true).is_err());
    }

    #[test]
    fn names_used_lists_references() {
        assert_eq!(names_used("$A ${B:-$C} '$D'"), vec!["A", "B", "C"]);
    }
}
