//! Variable interpolation with the Compose Specification's rules, applied to every string
//! value of a compose file (never to keys): `$VAR`, `${VAR}`, `${VAR:-default}` (unset or
//! empty), `${VAR-default}` (unset), `${VAR:?error}` / `${VAR?error}` (an error naming VAR),
//! `${VAR:+replacement}` / `${VAR+replacement}`, defaults that interpolate themselves, and `$$`
//! for a literal `$`.

use serde_json::Value;

/// Why a value does not interpolate: the variable and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolateError(pub String);

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InterpolateError {}

/// Interpolates one string.
pub fn string(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let out = expand(&chars, &mut pos, vars, None)?;
    Ok(out)
}

/// Expands from `pos` up to the end, or up to an unmatched `}` when `until_brace`.
fn expand(
    c: &[char],
    pos: &mut usize,
    vars: &dyn Fn(&str) -> Option<String>,
    until_brace: Option<()>,
) -> Result<String, InterpolateError> {
    let mut out = String::new();
    while *pos < c.len() {
        let ch = c[*pos];
        if until_brace.is_some() && ch == '}' {
            return Ok(out);
        }
        if ch != '$' {
            out.push(ch);
            *pos += 1;
            continue;
        }
        *pos += 1;
        match c.get(*pos) {
            Some('$') => {
                out.push('$');
                *pos += 1;
            }
            Some('{') => {
                *pos += 1;
                let start = *pos;
                while *pos < c.len() && (c[*pos].is_ascii_alphanumeric() || c[*pos] == '_') {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                if name.is_empty() {
                    return Err(InterpolateError(format!(
                        "invalid interpolation format: {:?}",
                        c.iter().collect::<String>()
                    )));
                }
                let value = vars(&name);
                match c.get(*pos) {
                    Some('}') => {
                        *pos += 1;
                        out.push_str(&value.unwrap_or_default());
                    }
                    Some(_) => {
                        let colon = c[*pos] == ':';
                        if colon {
                            *pos += 1;
                        }
                        let op = c.get(*pos).copied().unwrap_or('}');
                        if !matches!(op, '-' | '?' | '+') {
                            return Err(InterpolateError(format!(
                                "invalid interpolation format for ${{{name}...}}: use :-, -, :?, ?, :+ or +"
                            )));
                        }
                        *pos += 1;
                        let word = expand(c, pos, vars, Some(()))?;
                        if c.get(*pos) != Some(&'}') {
                            return Err(InterpolateError(format!("missing '}}' after ${{{name}")));
                        }
                        *pos += 1;
                        let set = match colon {
                            true => value.as_deref().is_some_and(|v| !v.is_empty()),
                            false => value.is_some(),
                        };
                        match op {
                            '-' => {
                                out.push_str(&if set { value.unwrap_or_default() } else { word })
                            }
                            '+' => {
                                if set {
                                    out.push_str(&word)
                                }
                            }
                            _ if set => out.push_str(&value.unwrap_or_default()),
                            _ => {
                                return Err(InterpolateError(if word.is_empty() {
                                    format!("required variable {name} is missing a value")
                                } else {
                                    format!("required variable {name} is missing a value: {word}")
                                }))
                            }
                        }
                    }
                    None => return Err(InterpolateError(format!("missing '}}' after ${{{name}"))),
                }
            }
            Some(ch) if ch.is_ascii_alphabetic() || *ch == '_' => {
                let start = *pos;
                while *pos < c.len() && (c[*pos].is_ascii_alphanumeric() || c[*pos] == '_') {
                    *pos += 1;
                }
                let name: String = c[start..*pos].iter().collect();
                out.push_str(&vars(&name).unwrap_or_default());
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// Interpolates every string value in `v` (keys are left as they are); errors name the path.
pub fn value(
    v: &mut Value,
    vars: &dyn Fn(&str) -> Option<String>,
    path: &str,
) -> Result<(), InterpolateError> {
    match v {
        Value::String(s) => {
            *s = string(s, vars).map_err(|e| InterpolateError(format!("{path}: {}", e.0)))?;
        }
        Value::Array(seq) => {
            for (i, item) in seq.iter_mut().enumerate() {
                value(item, vars, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(m) => {
            for (key, item) in m.iter_mut() {
                // Top-level `x-` extensions are the user's own data: left as written.
                if key.starts_with("x-") && path.is_empty() {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                value(item, vars, &p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, `export ` prefixes, values in single
/// quotes (literal) or double quotes (with `\n` escapes), unquoted values up to a ` #`.
pub fn dotenv(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let value = if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_owned()
        } else if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            inner.replace("\\n", "\n").replace("\\\"", "\"")
        } else {
            v.split(" #").next().unwrap_or("").trim().to_owned()
        };
        out.push((k.trim().to_owned(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        match n {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn the_specs_forms() {
        let s = |x: &str| string(x, &env).unwrap();
        assert_eq!(s("$A ${A}"), "a a");
        assert_eq!(s("${U:-d} ${E:-d} ${E-d} ${U-d}"), "d d  d");
        assert_eq!(s("${A:+r} ${E:+r} ${E+r}"), "r  r");
        assert_eq!(s("$$A and $$"), "$A and $");
        assert_eq!(s("${U:-${A}-x}"), "a-x");
        assert_eq!(s("cost: 5$"), "cost: 5$");
        let e = string("${U:?set U first}", &env).unwrap_err();
        assert!(e.0.contains("U") && e.0.contains("set U first"), "{e}");
        assert!(string("${A", &env).is_err());
        assert!(string("${A/x}", &env).is_err());
    }

    #[test]
    fn dotenv_lines() {
        let v = dotenv("# c\nA=1\nexport B='x y'\nC=\"l1\\nl2\"\nD=v # comment\n\nbad\n");
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x y".into()),
                ("C".into(), "l1\nl2".into()),
                ("D".into(), "v".into())
            ]
        );
    }
}
