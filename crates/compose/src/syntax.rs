//! The compose file's value syntaxes, read from JSON (the YAML as parsed): scalars, lists,
//! `K=V` lists or mappings, durations, shell-split commands, ports and mounts in their short
//! and long forms, and the key check that names the nearest valid key.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::Mount;
use crate::ComposeError;

/// The valid key nearest to `got`, if one is close.
pub fn nearest<'a>(got: &str, valid: &[&'a str]) -> Option<&'a str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    valid
        .iter()
        .map(|v| (dist(got, v), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3))
        .min()
        .map(|(_, v)| v)
}

/// Refuses keys of `m` not in `valid`, naming the nearest valid one.
pub fn check_keys(
    m: &serde_json::Map<String, Value>,
    valid: &[&str],
    at: &str,
) -> Result<(), ComposeError> {
    for k in m.keys() {
        if k.starts_with("x-") || valid.contains(&k.as_str()) {
            continue;
        }
        let hint = nearest(k, valid)
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        return Err(ComposeError::Invalid(format!(
            "{at}: unknown key {k:?}{hint}"
        )));
    }
    Ok(())
}

pub(crate) fn type_err(at: &str, want: &str, got: &Value) -> ComposeError {
    ComposeError::Invalid(format!("{at} must be {want}, not {}", kind(got)))
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A scalar as a string (numbers and booleans as YAML writes them).
pub fn scalar(v: &Value, at: &str) -> Result<String, ComposeError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        o => Err(type_err(at, "a string", o)),
    }
}

/// A number (or a string holding one) at `at`; anything else is a type error naming `at`.
pub(crate) fn number<T: std::str::FromStr>(v: &Value, at: &str) -> Result<T, ComposeError> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        o => return Err(type_err(at, "a number", o)),
    };
    text.parse()
        .map_err(|_| ComposeError::Invalid(format!("{at} must be a number, not {text:?}")))
}

pub(crate) fn opt_string(v: Option<&Value>, at: &str) -> Result<Option<String>, ComposeError> {
    v.filter(|v| !v.is_null())
        .map(|v| scalar(v, at))
        .transpose()
}

pub(crate) fn boolean(v: Option<&Value>, at: &str) -> Result<bool, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(o) => Err(type_err(at, "true or false", o)),
    }
}

pub(crate) fn strings(v: Option<&Value>, at: &str) -> Result<Vec<String>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| scalar(x, &format!("{at}[{i}]")))
            .collect(),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(o) => Err(type_err(at, "a list of strings", o)),
    }
}

/// `command`/`entrypoint`: a list, or a string split as a shell splits words.
pub(crate) fn command(v: Option<&Value>, at: &str) -> Result<Option<Vec<String>>, ComposeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(shell_words(s).map_err(|e| {
                ComposeError::Invalid(format!("{at}: {e}"))
            })?))
        }
        Some(v) => Ok(Some(strings(Some(v), at)?)),
    }
}

/// Splits words as a POSIX shell does (quotes and backslashes), without expansion.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut started = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                started = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                started = true;
                cur.push(c);
            }
        }
    }
    if started {
        out.push(cur);
    }
    Ok(out)
}

/// A list of `K=V` (or `K`) or a mapping, as a map.
pub fn key_values(
    v: Option<&Value>,
    at: &str,
) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                out.insert(
                    k.clone(),
                    if v.is_null() {
                        None
                    } else {
                        Some(scalar(v, &format!("{at}.{k}"))?)
                    },
                );
            }
        }
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                let s = scalar(x, &format!("{at}[{i}]"))?;
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_owned(), Some(v.to_owned())),
                    None => out.insert(s, None),
                };
            }
        }
        Some(o) => return Err(type_err(at, "a mapping or a list of KEY=VALUE", o)),
    }
    Ok(out)
}

/// A duration (`1m30s`, `10s`, `500ms`, or seconds as a number) in seconds.
pub fn duration(v: &Value, at: &str) -> Result<f64, ComposeError> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => humantime::parse_duration(s)
            .map(|d| d.as_secs_f64())
            .map_err(|e| ComposeError::Invalid(format!("{at}: {s:?} is not a duration ({e})"))),
        o => Err(type_err(at, "a duration such as 10s", o)),
    }
}

pub(crate) fn ports(v: Option<&Value>, at: &str) -> Result<Vec<String>, ComposeError> {
    let Some(Value::Array(a)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(o) => Err(type_err(at, "a list", o)),
        };
    };
    let mut out = Vec::new();
    for (i, p) in a.iter().enumerate() {
        let here = format!("{at}[{i}]");
        match p {
            Value::Object(m) => {
                check_keys(
                    m,
                    &[
                        "target",
                        "published",
                        "host_ip",
                        "protocol",
                        "mode",
                        "name",
                        "app_protocol",
                    ],
                    &here,
                )?;
                let target = m
                    .get("target")
                    .map(|t| scalar(t, &here))
                    .transpose()?
                    .ok_or_else(|| ComposeError::Invalid(format!("{here}: target is required")))?;
                let mut s = String::new();
                if let Some(ip) = m.get("host_ip") {
                    s.push_str(&format!("{}:", scalar(ip, &here)?));
                }
                if let Some(p) = m.get("published") {
                    s.push_str(&format!("{}:", scalar(p, &here)?));
                } else if !s.is_empty() {
                    s.push(':');
                }
                s.push_str(&target);
                if let Some(proto) = m.get("protocol") {
                    s.push_str(&format!("/{}", scalar(proto, &here)?));
                }
                out.push(s);
            }
            other => out.push(scalar(other, &here)?),
        }
    }
    Ok(out)
}

pub(crate) fn mounts(
    v: Option<&Value>,
    at: &str,
    dir: &std::path::Path,
) -> Result<Vec<Mount>, ComposeError> {
    let Some(Value::Array(a)) = v else {
        return match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(o) => Err(type_err(at, "a list", o)),
        };
    };
    let abs = |s: &str| -> String {
        let p = if let Some(rest) = s.strip_prefix("~/") {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
        } else {
            dir.join(s)
        };
        crate::load::clean_path(&p)
    };
    let mut out = Vec::new();
    for (i, m) in a.iter().enumerate() {
        let here = format!("{at}[{i}]");
        match m {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (src, target, opts) = match parts.as_slice() {
                    [t] => (None, t.to_string(), ""),
                    [s, t] => (Some(s.to_string()), t.to_string(), ""),
                    [s, t, o] => (Some(s.to_string()), t.to_string(), *o),
                    _ => {
                        return Err(ComposeError::Invalid(format!(
                            "{here}: {s:?} is not SOURCE:TARGET[:MODE]"
                        )))
                    }
                };
                let read_only = opts.split(',').any(|o| o == "ro");
                let mount = match src {
                    None => Mount {
                        kind: "volume".into(),
                        source: None,
                        target,
                        read_only,
                    },
                    Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
                        Mount {
                            kind: "bind".into(),
                            source: Some(abs(&s)),
                            target,
                            read_only,
                        }
                    }
                    Some(s) => Mount {
                        kind: "volume".into(),
                        source: Some(s),
                        target,
                        read_only,
                    },
                };
                out.push(mount);
            }
            Value::Object(o) => {
                check_keys(
                    o,
                    &[
                        "type",
                        "source",
                        "target",
                        "read_only",
                        "bind",
                        "volume",
                        "tmpfs",
                        "consistency",
                    ],
                    &here,
                )?;
                let kind = opt_string(o.get("type"), &here)?.unwrap_or_else(|| "volume".into());
                if !matches!(kind.as_str(), "volume" | "bind" | "tmpfs") {
                    return Err(ComposeError::Invalid(format!(
                        "{here}: type {kind:?} (volume, bind or tmpfs)"
                    )));
                }
                let target = opt_string(o.get("target"), &here)?
                    .ok_or_else(|| ComposeError::Invalid(format!("{here}: target is required")))?;
                let source = opt_string(o.get("source"), &here)?.map(|s| {
                    if kind == "bind" {
                        abs(&s)
                    } else {
                        s
                    }
                });
                out.push(Mount {
                    kind,
                    source,
                    target,
                    read_only: boolean(o.get("read_only"), &here)?,
                });
            }
            o => return Err(type_err(&here, "a string or a mapping", o)),
        }
    }
    Ok(out)
}
