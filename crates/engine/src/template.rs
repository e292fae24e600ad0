//! `--format` templates: the subset of Go's `text/template` that docker's and podman's users
//! write in scripts, evaluated over the JSON that `inspect` and `ps` print.
//!
//! Supported: text and `{{ }}` actions (with `{{-`/`-}}` trimming), field paths (`.State.Status`,
//! `.`, `$`, `$var.Field`), pipelines (`.Config | json`), the functions `json`, `index`, `len`,
//! `join`, `upper`, `lower`, `title`, `split`, `printf` (%s %d %v %q), `println`, `print`, `eq`,
//! `ne`, `not`, `and`, `or`, `lt`, `gt`; `{{if}}`/`{{else}}`/`{{end}}`, `{{range}}` (with
//! `$i, $v :=`), `{{with}}`. A template that does not parse is an error naming the column;
//! a missing map key prints `<no value>`, as Go does.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::EngineError;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(
        Option<(String, Option<String>)>,
        Pipeline,
        Vec<Node>,
        Vec<Node>,
    ),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// Commands joined by `|`: each result is the last argument of the next.
#[derive(Debug, Clone)]
struct Pipeline {
    cmds: Vec<Vec<Arg>>,
    /// `$x := ...`
    decl: Option<String>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty path: `.`), from the dot or from a variable (`$x.A`).
    Field(Option<String>, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Func(String),
    Sub(Pipeline),
}

fn err(pos: usize, src: &str, msg: impl std::fmt::Display) -> EngineError {
    let line = src[..pos.min(src.len())].matches('\n').count() + 1;
    let col = pos - src[..pos.min(src.len())].rfind('\n').map_or(0, |p| p + 1) + 1;
    EngineError::invalid(format!("template: {line}:{col}: {msg}"))
}

impl Template {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Template, EngineError> {
        // Split into text and actions.
        let mut items: Vec<(usize, Result<String, String>)> = Vec::new();
        let mut i = 0;
        while i < src.len() {
            match src[i..].find("{{") {
                None => {
                    items.push((i, Ok(src[i..].to_owned())));
                    break;
                }
                Some(off) => {
                    let start = i + off;
                    let mut text = src[i..start].to_owned();
                    let mut body_start = start + 2;
                    if src[body_start..].starts_with('-')
                        && src[body_start + 1..].starts_with([' ', '\t', '\n'])
                    {
                        text = text.trim_end().to_owned();
                        body_start += 1;
                    }
                    if !text.is_empty() {
                        items.push((i, Ok(text)));
                    }
                    let close = find_close(src, body_start)
                        .ok_or_else(|| err(start, src, "unclosed action: no }}"))?;
                    let mut body = &src[body_start..close];
                    let mut next = close + 2;
                    if body.ends_with('-') && body[..body.len() - 1].ends_with([' ', '\t', '\n']) {
                        body = &body[..body.len() - 1];
                        let rest = &src[next..];
                        next += rest.len() - rest.trim_start().len();
                    }
                    items.push((body_start, Err(body.trim().to_owned())));
                    i = next;
                }
            }
        }
        let mut pos = 0;
        let (nodes, end) = parse_list(src, &items, &mut pos)?;
        if let Some((p, word)) = end {
            return Err(err(p, src, format!("unexpected {{{{{word}}}}}")));
        }
        Ok(Template { nodes })
    }

    /// Evaluates the template over `data`.
    pub fn render(&self, data: &Value) -> Result<String, EngineError> {
        let mut out = String::new();
        let mut vars = BTreeMap::new();
        vars.insert("$".to_owned(), data.clone());
        exec(&self.nodes, data, &mut vars, &mut out)?;
        Ok(out)
    }
}

fn find_close(src: &str, from: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = from;
    let mut in_str: Option<u8> = None;
    while i + 1 < b.len() {
        match in_str {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    in_str = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    in_str = Some(b[i]);
                } else if b[i] == b'}' && b[i + 1] == b'}' {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

type Items = [(usize, Result<String, String>)];

/// Nodes parsed, and the `{{end}}`/`{{else}}` (its position and word) that ended them.
type Parsed = (Vec<Node>, Option<(usize, String)>);

/// Parses nodes until `{{end}}`/`{{else}}` (returned) or the end.
fn parse_list(src: &str, items: &Items, pos: &mut usize) -> Result<Parsed, EngineError> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let (at, item) = &items[*pos];
        *pos += 1;
        let body = match item {
            Ok(text) => {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            Err(body) => body,
        };
        if body.starts_with("/*") {
            continue;
        }
        let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        match word {
            "end" | "else" => return Ok((nodes, Some((*at, word.to_owned())))),
            "if" | "with" | "range" => {
                let (vars, rest) = if word == "range" {
                    range_vars(rest)
                } else {
                    (None, rest)
                };
                let pipe = parse_pipeline(src, *at, rest)?;
                let (then, end) = parse_list(src, items, pos)?;
                let els = match end {
                    Some((_, w)) if w == "else" => {
                        let (els, end2) = parse_list(src, items, pos)?;
                        if !matches!(end2, Some((_, ref w)) if w == "end") {
                            return Err(err(
                                *at,
                                src,
                                format!("{{{{{word}}}}} without {{{{end}}}}"),
                            ));
                        }
                        els
                    }
                    Some((_, w)) if w == "end" => Vec::new(),
                    _ => return Err(err(*at, src, format!("{{{{{word}}}}} without {{{{end}}}}"))),
                };
                nodes.push(match word {
                    "if" => Node::If(pipe, then, els),
                    "with" => Node::With(pipe, then, els),
                    _ => Node::Range(vars, pipe, then, els),
                });
            }
            _ => nodes.push(Node::Action(parse_pipeline(src, *at, body)?)),
        }
    }
    Ok((nodes, None))
}

/// `$i, $v := PIPE` or `$v := PIPE` at the start of a range.
fn range_vars(rest: &str) -> (Option<(String, Option<String>)>, &str) {
    if let Some((lhs, rhs)) = rest.split_once(":=") {
        let names: Vec<String> = lhs.split(',').map(|s| s.trim().to_owned()).collect();
        if names.iter().all(|n| n.starts_with('$')) {
            return match names.as_slice() {
                [v] => (Some((v.clone(), None)), rhs),
                [k, v] => (Some((k.clone(), Some(v.clone()))), rhs),
                _ => (None, rest),
            };
        }
    }
    (None, rest)
}

fn parse_pipeline(src: &str, at: usize, text: &str) -> Result<Pipeline, EngineError> {
    let mut decl = None;
    let mut text = text.trim();
    if let Some((lhs, rhs)) = text.split_once(":=") {
        let l = lhs.trim();
        if l.starts_with('$') && !l.contains(char::is_whitespace) {
            decl = Some(l.to_owned());
            text = rhs.trim();
        }
    }
    let toks = tokenize(src, at, text)?;
    let mut cmds = vec![Vec::new()];
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        i += 1;
        if t == "|" {
            cmds.push(Vec::new());
            continue;
        }
        let arg = if t == "(" {
            let mut depth = 1;
            let start = i;
            while i < toks.len() && depth > 0 {
                if toks[i] == "(" {
                    depth += 1;
                } else if toks[i] == ")" {
                    depth -= 1;
                }
                i += 1;
            }
            if depth != 0 {
                return Err(err(at, src, "unclosed ("));
            }
            Arg::Sub(parse_pipeline(src, at, &toks[start..i - 1].join(" "))?)
        } else {
            token_arg(src, at, t)?
        };
        cmds.last_mut().expect("one").push(arg);
    }
    if cmds.iter().any(Vec::is_empty) {
        return Err(err(at, src, format!("missing value in {text:?}")));
    }
    Ok(Pipeline { cmds, decl })
}

fn tokenize(src: &str, at: usize, text: &str) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    let cs: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let mut s = String::from(c);
            i += 1;
            while i < cs.len() && cs[i] != c {
                if cs[i] == '\\' && c == '"' && i + 1 < cs.len() {
                    s.push(cs[i]);
                    i += 1;
                }
                s.push(cs[i]);
                i += 1;
            }
            if i >= cs.len() {
                return Err(err(at, src, "unterminated string"));
            }
            s.push(c);
            i += 1;
            out.push(s);
        } else if c == '|' || c == '(' || c == ')' {
            out.push(c.to_string());
            i += 1;
        } else {
            let start = i;
            while i < cs.len() && !cs[i].is_whitespace() && !"|()".contains(cs[i]) {
                i += 1;
            }
            out.push(cs[start..i].iter().collect());
        }
    }
    Ok(out)
}

const FUNCS: &[&str] = &[
    "json", "index", "len", "join", "upper", "lower", "title", "split", "printf", "println",
    "print", "eq", "ne", "not", "and", "or", "lt", "gt", "le", "ge", "truncate",
];

fn token_arg(src: &str, at: usize, t: &str) -> Result<Arg, EngineError> {
    if let Some(q) = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        let unq: String = serde_json::from_str(&format!("\"{q}\""))
            .map_err(|_| err(at, src, format!("bad string {t}")))?;
        return Ok(Arg::Str(unq));
    }
    if let Some(q) = t.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        return Ok(Arg::Str(q.to_owned()));
    }
    if t == "true" || t == "false" {
        return Ok(Arg::Bool(t == "true"));
    }
    if let Ok(n) = t.parse::<f64>() {
        return Ok(Arg::Num(n));
    }
    if t == "." {
        return Ok(Arg::Field(None, Vec::new()));
    }
    if let Some(path) = t.strip_prefix('.') {
        return Ok(Arg::Field(
            None,
            path.split('.').map(str::to_owned).collect(),
        ));
    }
    if t.starts_with('$') {
        let mut parts = t.split('.');
        let var = parts.next().expect("one").to_owned();
        return Ok(Arg::Field(Some(var), parts.map(str::to_owned).collect()));
    }
    if FUNCS.contains(&t) {
        return Ok(Arg::Func(t.to_owned()));
    }
    Err(err(at, src, format!("function {t:?} not defined")))
}

type Vars = BTreeMap<String, Value>;

fn exec(nodes: &[Node], dot: &Value, vars: &mut Vars, out: &mut String) -> Result<(), EngineError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipe(p, dot, vars)?;
                if p.decl.is_none() {
                    out.push_str(&show(&v));
                }
            }
            Node::If(p, then, els) => {
                let v = eval_pipe(p, dot, vars)?;
                exec(if truthy(&v) { then } else { els }, dot, vars, out)?;
            }
            Node::With(p, then, els) => {
                let v = eval_pipe(p, dot, vars)?;
                if truthy(&v) {
                    exec(then, &v, vars, out)?;
                } else {
                    exec(els, dot, vars, out)?;
                }
            }
            Node::Range(names, p, body, els) => {
                let v = eval_pipe(p, dot, vars)?;
                let pairs: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (Value::from(i), x.clone()))
                        .collect(),
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, x)| (Value::from(k.clone()), x.clone()))
                        .collect(),
                    Value::Null => Vec::new(),
                    other => {
                        return Err(EngineError::invalid(format!(
                            "template: range can't iterate over {}",
                            show(other)
                        )))
                    }
                };
                if pairs.is_empty() {
                    exec(els, dot, vars, out)?;
                }
                for (k, x) in pairs {
                    match names {
                        Some((a, Some(b))) => {
                            vars.insert(a.clone(), k);
                            vars.insert(b.clone(), x.clone());
                        }
                        Some((a, None)) => {
                            vars.insert(a.clone(), x.clone());
                        }
                        None => {}
                    }
                    exec(body, &x, vars, out)?;
                }
            }
        }
    }
    Ok(())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `fmt` prints it with `%v`.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", show(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn field(base: &Value, path: &[String]) -> Value {
    let mut cur = base;
    for p in path {
        match cur.get(p) {
            Some(v) => cur = v,
            None => return Value::Null,
        }
    }
    cur.clone()
}

fn eval_pipe(p: &Pipeline, dot: &Value, vars: &mut Vars) -> Result<Value, EngineError> {
    let mut prev: Option<Value> = None;
    for cmd in &p.cmds {
        prev = Some(eval_cmd(cmd, prev, dot, vars)?);
    }
    let v = prev.unwrap_or(Value::Null);
    if let Some(d) = &p.decl {
        vars.insert(d.clone(), v.clone());
    }
    Ok(v)
}

fn eval_arg(a: &Arg, dot: &Value, vars: &mut Vars) -> Result<Value, EngineError> {
    Ok(match a {
        Arg::Field(None, path) => field(dot, path),
        Arg::Field(Some(var), path) => {
            let base = vars.get(var).cloned().ok_or_else(|| {
                EngineError::invalid(format!("template: undefined variable {var}"))
            })?;
            field(&base, path)
        }
        Arg::Str(s) => Value::from(s.clone()),
        Arg::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, |n| {
            if n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                Value::from(n.as_f64().unwrap_or(0.0) as i64)
            } else {
                Value::Number(n)
            }
        }),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Func(f) => call(f, &[])?,
        Arg::Sub(p) => eval_pipe(p, dot, vars)?,
    })
}

fn eval_cmd(
    cmd: &[Arg],
    prev: Option<Value>,
    dot: &Value,
    vars: &mut Vars,
) -> Result<Value, EngineError> {
    match &cmd[0] {
        Arg::Func(f) => {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(eval_arg(a, dot, vars)?);
            }
            args.extend(prev);
            call(f, &args)
        }
        a if cmd.len() == 1 => match prev {
            None => eval_arg(a, dot, vars),
            Some(_) => Err(EngineError::invalid(
                "template: a value cannot take piped input (pipe into a function)",
            )),
        },
        _ => Err(EngineError::invalid(
            "template: only a function takes arguments",
        )),
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn call(f: &str, a: &[Value]) -> Result<Value, EngineError> {
    let need = |n: usize| {
        if a.len() < n {
            Err(EngineError::invalid(format!(
                "template: {f} needs {n} argument(s), got {}",
                a.len()
            )))
        } else {
            Ok(())
        }
    };
    Ok(match f {
        "json" => {
            need(1)?;
            Value::from(serde_json::to_string(&a[0]).unwrap_or_default())
        }
        "index" => {
            need(2)?;
            let mut cur = a[0].clone();
            for k in &a[1..] {
                cur = match (&cur, k) {
                    (Value::Array(arr), k) => num(k)
                        .and_then(|i| arr.get(i as usize).cloned())
                        .ok_or_else(|| EngineError::invalid("template: index out of range"))?,
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Object(m), k) => m.get(&show(k)).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            cur
        }
        "len" => {
            need(1)?;
            Value::from(match &a[0] {
                Value::Array(x) => x.len(),
                Value::Object(x) => x.len(),
                Value::String(s) => s.len(),
                _ => 0,
            })
        }
        "join" => {
            need(2)?;
            let sep = show(&a[1]);
            match &a[0] {
                Value::Array(x) => Value::from(x.iter().map(show).collect::<Vec<_>>().join(&sep)),
                other => Value::from(show(other)),
            }
        }
        "split" => {
            need(2)?;
            Value::from(
                show(&a[0])
                    .split(show(&a[1]).as_str())
                    .map(|s| Value::from(s.to_owned()))
                    .collect::<Vec<_>>(),
            )
        }
        "upper" => {
            need(1)?;
            Value::from(show(&a[0]).to_uppercase())
        }
        "lower" => {
            need(1)?;
            Value::from(show(&a[0]).to_lowercase())
        }
        "title" => {
            need(1)?;
            let s = show(&a[0]);
            let mut c = s.chars();
            Value::from(c.next().map_or(String::new(), |f| {
                f.to_uppercase().collect::<String>() + c.as_str()
            }))
        }
        "truncate" => {
            need(2)?;
            let n = num(&a[1]).unwrap_or(0.0) as usize;
            Value::from(show(&a[0]).chars().take(n).collect::<String>())
        }
        "print" => Value::from(a.iter().map(show).collect::<Vec<_>>().join("")),
        "println" => Value::from(a.iter().map(show).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            need(1)?;
            Value::from(printf(&show(&a[0]), &a[1..]))
        }
        "eq" => {
            need(2)?;
            Value::Bool(a[1..].iter().any(|x| loose_eq(&a[0], x)))
        }
        "ne" => {
            need(2)?;
            Value::Bool(!loose_eq(&a[0], &a[1]))
        }
        "not" => {
            need(1)?;
            Value::Bool(!truthy(&a[0]))
        }
        "and" => {
            need(1)?;
            a.iter()
                .find(|x| !truthy(x))
                .unwrap_or(&a[a.len() - 1])
                .clone()
        }
        "or" => {
            need(1)?;
            a.iter()
                .find(|x| truthy(x))
                .unwrap_or(&a[a.len() - 1])
                .clone()
        }
        "lt" | "gt" | "le" | "ge" => {
            need(2)?;
            let (x, y) = (num(&a[0]), num(&a[1]));
            let ord = match (x, y) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => Some(show(&a[0]).cmp(&show(&a[1]))),
            };
            let ord = ord.unwrap_or(std::cmp::Ordering::Equal);
            Value::Bool(match f {
                "lt" => ord.is_lt(),
                "gt" => ord.is_gt(),
                "le" => ord.is_le(),
                _ => ord.is_ge(),
            })
        }
        other => {
            return Err(EngineError::invalid(format!(
                "template: function {other:?} not defined"
            )))
        }
    })
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (num(a), num(b)) {
        (Some(x), Some(y)) if !matches!((a, b), (Value::String(_), Value::String(_))) => x == y,
        _ => show(a) == show(b),
    }
}

fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut cs = fmt.chars().peekable();
    while let Some(c) = cs.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('%') => out.push('%'),
            Some('q') => {
                let _ = write!(out, "{:?}", it.next().map(show).unwrap_or_default());
            }
            Some('d') => {
                let _ = write!(out, "{}", it.next().and_then(num).unwrap_or(0.0) as i64);
            }
            Some(_) => out.push_str(&it.next().map(show).unwrap_or_default()),
            None => out.push('%'),
        }
    }
    out
}

/// A `ps`/`images` format: `table` first prints a header of the fields' names.
pub fn table_header(src: &str) -> Option<String> {
    let body = src.strip_prefix("table")?;
    let mut header = String::new();
    let mut rest = body.trim_start();
    while let Some(i) = rest.find("{{") {
        header.push_str(&rest[..i]);
        let end = rest[i..].find("}}").map_or(rest.len(), |e| i + e + 2);
        let action = rest[i + 2..end.saturating_sub(2).max(i + 2)].trim();
        let name = action
            .trim_start_matches('.')
            .split_whitespace()
            .next()
            .unwrap_or("");
        header.push_str(&column_title(name));
        rest = &rest[end..];
    }
    header.push_str(rest);
    Some(header)
}

fn column_title(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "Names" => "NAMES".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        // `stats`'s fields, titled as docker's columns.
        "CPUPerc" => "CPU %".into(),
        "MemPerc" => "MEM %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        "PIDs" => "PIDS".into(),
        f => {
            // CamelCase to upper words: `LocalVolumes` -> `LOCAL VOLUMES`.
            let mut out = String::new();
            for (i, c) in f.chars().enumerate() {
                if i > 0 && c.is_uppercase() {
                    out.push(' ');
                }
                out.extend(c.to_uppercase());
            }
            out
        }
    }
}

/// The body of a `table` format (what each row renders), with `\t` as a tab.
pub fn table_body(src: &str) -> &str {
    src.strip_prefix("table").map_or(src, str::trim_start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn scripts_favourite_templates_render_as_docker_does() {
        let v = json!({"State": {"Status": "running", "Pid": 42}, "Config": {"Env": ["A=1", "B=2"], "Labels": {"x": "y"}},
                       "NetworkSettings": {"IPAddress": "10.0.0.2", "Networks": {"n1": {"IPAddress": "10.0.0.2"}}},
                       "Name": "/web"});
        assert_eq!(r("{{.State.Status}}", &v), "running");
        assert_eq!(r("{{.State.Pid}} {{.Name}}", &v), "42 /web");
        assert_eq!(r("{{json .Config.Env}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(r("{{.Config.Env | json}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(r("{{range .Config.Env}}{{.}};{{end}}", &v), "A=1;B=2;");
        assert_eq!(r("{{index .Config.Labels \"x\"}}", &v), "y");
        assert_eq!(r("{{index .Config.Env 1}}", &v), "B=2");
        assert_eq!(
            r(
                "{{range $k, $n := .NetworkSettings.Networks}}{{$k}}={{$n.IPAddress}}{{end}}",
                &v
            ),
            "n1=10.0.0.2"
        );
        assert_eq!(
            r(
                "{{if eq .State.Status \"running\"}}up{{else}}down{{end}}",
                &v
            ),
            "up"
        );
        assert_eq!(r("{{.Missing}}", &v), "<no value>");
        assert_eq!(
            r("{{len .Config.Env}} {{join .Config.Env \",\"}}", &v),
            "2 A=1,B=2"
        );
        assert_eq!(r("{{printf \"%s:%d\" .Name .State.Pid}}", &v), "/web:42");
        assert_eq!(r("a {{- \" b \" -}} c", &v), "a b c");
        assert_eq!(r("{{with .State}}{{.Status}}{{end}}", &v), "running");
    }

    #[test]
    fn bad_templates_name_the_place() {
        let e = Template::parse("{{.State.Status").unwrap_err().to_string();
        assert!(e.contains("1:1") && e.contains("unclosed"), "{e}");
        let e = Template::parse("ok {{frobnicate .X}}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1:6") && e.contains("frobnicate"), "{e}");
        let e = Template::parse("{{if .X}}yes").unwrap_err().to_string();
        assert!(e.contains("without {{end}}"), "{e}");
        assert!(Template::parse("{{end}}").is_err());
    }

    #[test]
    fn table_formats_get_a_header() {
        assert_eq!(
            table_header("table {{.ID}}\t{{.Names}}\t{{.Status}}").unwrap(),
            "CONTAINER ID\tNAMES\tSTATUS"
        );
        assert_eq!(table_body("table {{.ID}}"), "{{.ID}}");
        assert!(table_header("{{.ID}}").is_none());
    }
}
