//! Label and field selectors: the `labelSelector` and `fieldSelector` query parameters of list
//! and watch, and the structured `metav1.LabelSelector` that objects carry (a Deployment's
//! `spec.selector`, a Service's `spec.selector` map).
//!
//! Design: both selectors are a conjunction of requirements, parsed once and matched many times
//! against `serde_json::Value` objects. The label grammar is apimachinery's
//! (`k8s.io/apimachinery/pkg/labels/selector.go`): `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x,y)`, `a`, `!a`, plus the integer comparisons `a>1`, `a<1`, joined by commas, with
//! keys and values validated as label keys and values (`pkg/util/validation`). The field grammar
//! is `k8s.io/apimachinery/pkg/fields/selector.go`: `f=v`, `f==v`, `f!=v`, where `\,`, `\=` and
//! `\\` escape the separators inside a value.
//!
//! Limits: field values are read straight from the object by dotted path (a missing field reads
//! as the empty string, as Kubernetes' field sets do for e.g. an unscheduled pod's
//! `spec.nodeName`); a kind whose field set is computed differently (a default that is not
//! stored) uses [`FieldSelector::matches_with`] to supply its own values. Set-based field
//! operators do not exist in Kubernetes and are not accepted here.

use std::fmt;

use serde_json::{Map, Value};

/// A selector that failed to parse or validate. The text is fit for a `Status` message; the
/// API answers it with 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn requirement_error(detail: impl fmt::Display) -> SelectorError {
    SelectorError(format!("unable to parse requirement: {detail}"))
}

/// Longest label name and label value (`validation.LabelValueMaxLength`).
const NAME_MAX: usize = 63;
/// Longest DNS-1123 subdomain, the optional prefix of a label key.
const PREFIX_MAX: usize = 253;

/// Checks a label key: an optional DNS-1123 subdomain prefix and `/`, then a name of at most 63
/// characters from `[A-Za-z0-9._-]` that starts and ends with an alphanumeric character.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let bad = |why: &str| requirement_error(format_args!("invalid label key {key:?}: {why}"));
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(bad("prefix part must be non-empty"));
        }
        if prefix.len() > PREFIX_MAX {
            return Err(bad("prefix part must be no more than 253 characters"));
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(bad(
                "prefix part must be a lowercase RFC 1123 subdomain: lowercase alphanumeric \
                 characters, '-' or '.', starting and ending with an alphanumeric character",
            ));
        }
    }
    if name.is_empty() {
        return Err(bad("name part must be non-empty"));
    }
    if name.len() > NAME_MAX {
        return Err(bad("name part must be no more than 63 characters"));
    }
    if !is_label_word(name) {
        return Err(bad(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters from `[A-Za-z0-9._-]` starting and
/// ending with an alphanumeric character.
pub fn validate_label_value(value: &str) -> Result<(), SelectorError> {
    if value.len() > NAME_MAX {
        return Err(requirement_error(format_args!(
            "invalid label value {value:?}: must be no more than 63 characters"
        )));
    }
    if !value.is_empty() && !is_label_word(value) {
        return Err(requirement_error(format_args!(
            "invalid label value {value:?}: a valid label value must be an empty string or \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
             an alphanumeric character"
        )));
    }
    Ok(())
}

fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    })
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `a=b` or `a==b`: the label is present with that value.
    Equals,
    /// `a!=b`: the label is absent or has another value.
    NotEquals,
    /// `a in (x,y)`, `matchExpressions` `In`: present with one of the values.
    In,
    /// `a notin (x,y)`, `NotIn`: absent or none of the values.
    NotIn,
    /// `a`, `Exists`: present with any value.
    Exists,
    /// `!a`, `DoesNotExist`: absent.
    DoesNotExist,
    /// `a>1`: present with an integer value greater than the one given.
    GreaterThan,
    /// `a<1`: present with an integer value less than the one given.
    LessThan,
}

/// One requirement of a [`LabelSelector`]: a key, an operator and its values (one for the
/// equality and comparison operators, one or more for `in`/`notin`, none for existence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values, in the order given.
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the values and their number for the operator.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        validate_label_key(key)?;
        match operator {
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(requirement_error(format_args!(
                    "key {key:?}: exact-match compatibility requires one single value"
                )));
            }
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(requirement_error(format_args!(
                    "key {key:?}: for 'in', 'notin' operators, values set can't be empty"
                )));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(requirement_error(format_args!(
                    "key {key:?}: values set must be empty for exists and does not exist"
                )));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(requirement_error(format_args!(
                        "key {key:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    )));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(requirement_error(format_args!(
                        "key {key:?}: for 'Gt', 'Lt' operators, the value must be an integer, \
                         not {:?}",
                        values[0]
                    )));
                }
            }
            _ => {}
        }
        for value in &values {
            validate_label_value(value)?;
        }
        Ok(Self {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    /// Whether the labels (looked up by `get`) satisfy this requirement.
    fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        let value = get(&self.key);
        let in_values = |v: &String| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::In => value.as_ref().is_some_and(in_values),
            Operator::NotEquals | Operator::NotIn => !value.as_ref().is_some_and(in_values),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::In | Operator::NotIn => {
                let op = if self.operator == Operator::In {
                    "in"
                } else {
                    "notin"
                };
                // `()` would be the empty set, which does not parse: a set of just the
                // empty value is `(,)`.
                let values = if self.values == [""] {
                    ",".to_owned()
                } else {
                    self.values.join(",")
                };
                write!(f, "{key} {op} ({values})")
            }
        }
    }
}

/// A parsed label selector: all requirements must hold. The empty selector matches every
/// object; [`LabelSelector::nothing`] (a null structured selector) matches none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches everything (the empty string, `{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches nothing: what Kubernetes makes of a null `metav1.LabelSelector`.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements, sorted by key as Kubernetes keeps them.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Parses the string form (the `labelSelector` query parameter, `kubectl -l`).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let tokens = lex(input);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek() == &Token::End {
            return Ok(Self::everything());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                Token::Comma => continue,
                Token::End => break,
                other => {
                    return Err(requirement_error(format_args!(
                        "found {}, expected: ',' or end of string",
                        other.describe()
                    )));
                }
            }
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Builds a selector from the structured `metav1.LabelSelector` found in objects:
    /// `matchLabels` (equality) and `matchExpressions` (`In`, `NotIn`, `Exists`,
    /// `DoesNotExist`). A null selector matches nothing; `{}` matches everything.
    pub fn from_k8s(selector: &Value) -> Result<Self, SelectorError> {
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            _ => return Err(SelectorError("label selector must be an object".into())),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let value = value.as_str().ok_or_else(|| {
                        SelectorError(format!("matchLabels[{key}]: value must be a string"))
                    })?;
                    requirements.push(Requirement::new(
                        key,
                        Operator::Equals,
                        vec![value.to_owned()],
                    )?);
                }
            }
            Some(_) => return Err(SelectorError("matchLabels must be an object".into())),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression(i, expr)?);
                }
            }
            Some(_) => return Err(SelectorError("matchExpressions must be a list".into())),
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Builds an equality-only selector from a plain map, as a Service's `spec.selector` or a
    /// ReplicationController's. An empty map matches everything.
    pub fn from_map(labels: &Map<String, Value>) -> Result<Self, SelectorError> {
        Self::from_k8s(&serde_json::json!({ "matchLabels": labels }))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector matches no object.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a label map (an object's `metadata.labels`, absent or null meaning no labels)
    /// satisfies every requirement. Non-string label values count as absent.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        match labels {
            Some(Value::Object(map)) => self.matches_map(map),
            _ => self.matches_map(&Map::new()),
        }
    }

    /// [`LabelSelector::matches`] on a label map.
    pub fn matches_map(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing
            && self.requirements.iter().all(|r| {
                r.matches(|key| labels.get(key).and_then(Value::as_str).map(str::to_owned))
            })
    }

    /// [`LabelSelector::matches`] on a whole object's `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(object.pointer("/metadata/labels"))
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form, as a ReplicaSet's `status.selector` carries it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn expression(i: usize, expr: &Value) -> Result<Requirement, SelectorError> {
    let at = |what: &str| SelectorError(format!("matchExpressions[{i}]: {what}"));
    let key = expr
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| at("key must be a string"))?;
    let operator = match expr.get("operator").and_then(Value::as_str) {
        Some("In") => Operator::In,
        Some("NotIn") => Operator::NotIn,
        Some("Exists") => Operator::Exists,
        Some("DoesNotExist") => Operator::DoesNotExist,
        Some(other) => {
            return Err(at(&format!(
                "{other:?} is not a valid label selector operator (In, NotIn, Exists, \
                 DoesNotExist)"
            )))
        }
        None => return Err(at("operator must be a string")),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| at("values must be strings"))?,
        Some(_) => return Err(at("values must be a list")),
    };
    Requirement::new(key, operator, values)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("identifier {s:?}"),
            Token::Bang => "'!'".into(),
            Token::Eq => "'='".into(),
            Token::DoubleEq => "'=='".into(),
            Token::NotEq => "'!='".into(),
            Token::Gt => "'>'".into(),
            Token::Lt => "'<'".into(),
            Token::In => "'in'".into(),
            Token::NotIn => "'notin'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "end of string".into(),
        }
    }
}

/// Characters that end an identifier (apimachinery's `isSpecialSymbol`).
fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let follows_eq = chars.peek().map(|&(_, n)| n) == Some('=');
            let token = match c {
                '=' if follows_eq => {
                    chars.next();
                    Token::DoubleEq
                }
                '!' if follows_eq => {
                    chars.next();
                    Token::NotEq
                }
                '=' => Token::Eq,
                '!' => Token::Bang,
                '(' => Token::Open,
                ')' => Token::Close,
                ',' => Token::Comma,
                '>' => Token::Gt,
                _ => Token::Lt,
            };
            tokens.push(token);
            continue;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let word = &input[start..end];
        tokens.push(match word {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word.to_owned()),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == &Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => key,
            other => {
                return Err(requirement_error(format_args!(
                    "found {}, expected: identifier (a label key)",
                    other.describe()
                )))
            }
        };
        validate_label_key(&key)?;
        if negated {
            return match self.peek() {
                Token::Comma | Token::End => Requirement::new(&key, Operator::DoesNotExist, vec![]),
                other => Err(requirement_error(format_args!(
                    "after '!{key}' found {}, expected: ',' or end of string",
                    other.describe()
                ))),
            };
        }
        let operator = match self.peek() {
            Token::Comma | Token::End => return Requirement::new(&key, Operator::Exists, vec![]),
            Token::Eq | Token::DoubleEq => Operator::Equals,
            Token::NotEq => Operator::NotEquals,
            Token::Gt => Operator::GreaterThan,
            Token::Lt => Operator::LessThan,
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            other => {
                return Err(requirement_error(format_args!(
                    "after key {key:?} found {}, expected one of: '=', '==', '!=', 'in', \
                     'notin', '>', '<', ',' or end of string",
                    other.describe()
                )))
            }
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set(&key)?,
            _ => vec![self.single_value(&key)?],
        };
        Requirement::new(&key, operator, values)
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`: an identifier, or empty before `,` or the end.
    fn single_value(&mut self, key: &str) -> Result<String, SelectorError> {
        match self.peek().clone() {
            Token::Ident(value) => {
                self.next();
                Ok(value)
            }
            // `in` and `notin` are words, valid as values.
            Token::In => {
                self.next();
                Ok("in".into())
            }
            Token::NotIn => {
                self.next();
                Ok("notin".into())
            }
            Token::Comma | Token::End => Ok(String::new()),
            other => Err(requirement_error(format_args!(
                "value of key {key:?}: found {}, expected: identifier (a label value)",
                other.describe()
            ))),
        }
    }

    /// `( v1, v2, ... )`; an empty entry between commas is the empty value.
    fn value_set(&mut self, key: &str) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::Open => {}
            other => {
                return Err(requirement_error(format_args!(
                    "values of key {key:?}: found {}, expected: '('",
                    other.describe()
                )))
            }
        }
        let mut values = Vec::new();
        if self.peek() == &Token::Close {
            self.next();
            return Ok(values);
        }
        loop {
            let value = match self.peek().clone() {
                Token::Ident(v) => {
                    self.next();
                    v
                }
                Token::In => {
                    self.next();
                    "in".into()
                }
                Token::NotIn => {
                    self.next();
                    "notin".into()
                }
                Token::Comma | Token::Close => String::new(),
                other => {
                    return Err(requirement_error(format_args!(
                        "values of key {key:?}: found {}, expected: identifier, ',' or ')'",
                        other.describe()
                    )))
                }
            };
            if !values.contains(&value) {
                values.push(value);
            }
            match self.next() {
                Token::Comma => continue,
                Token::Close => return Ok(values),
                other => {
                    return Err(requirement_error(format_args!(
                        "values of key {key:?}: found {}, expected: ',' or ')'",
                        other.describe()
                    )))
                }
            }
        }
    }
}

/// The operator of one field requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    /// `f=v` or `f==v`.
    Equals,
    /// `f!=v`.
    NotEquals,
}

/// One requirement of a [`FieldSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The dotted field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The operator.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

/// A parsed field selector: all requirements must hold; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter. Terms are split on unescaped commas; each
    /// term is split at its first unescaped `!=`, `==` or `=`; the value is unescaped (`\,`,
    /// `\=`, `\\`), and an unescaped `,` or `=` in it, or any other escape, is an error.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input) {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{term}'"
                )));
            };
            // Not trimmed, as in Kubernetes: ` a=b` selects on the field " a".
            if field.is_empty() {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; term '{term}' has no field name"
                )));
            }
            let value = unescape(raw).map_err(|why| {
                SelectorError(format!("invalid field selector value in '{term}': {why}"))
            })?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                operator,
                value,
            });
        }
        requirements.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(Self { requirements })
    }

    /// The requirements, sorted by field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field against those the kind supports.
    pub fn validate(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .requirements
            .iter()
            .find(|r| !allowed.contains(&r.field.as_str()))
        {
            Some(r) => Err(format!("field label not supported: {}", r.field)),
            None => Ok(()),
        }
    }

    /// The value a field must equal, if the selector pins it (`spec.nodeName=n1`): lets a caller
    /// narrow a list before matching (apimachinery's `RequiresExactMatch`).
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Whether the object satisfies every requirement, reading each field by dotted path; a
    /// missing or null field reads as `""`, booleans and numbers as their JSON text.
    pub fn matches(&self, object: &Value) -> bool {
        self.matches_with(|field| field_value(object, field))
    }

    /// Whether every requirement holds when fields read as `get` says: for kinds whose field
    /// set differs from the stored JSON (a defaulted boolean, a computed field).
    pub fn matches_with(&self, get: impl Fn(&str) -> String) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field);
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }
}

impl fmt::Display for FieldSelector {
    /// The canonical string form, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (apimachinery's `EscapeValue`).
pub fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads a dotted path from an object as a field selector compares it.
pub fn field_value(object: &Value, field: &str) -> String {
    let mut node = object;
    for part in field.split('.') {
        match node.get(part) {
            Some(next) => node = next,
            None => return String::new(),
        }
    }
    match node {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Splits on commas not preceded by an escaping backslash.
fn split_unescaped(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(&input[start..i]);
            start = i + 1;
        }
    }
    parts.push(&input[start..]);
    parts
}

/// Splits a term at its first unescaped operator: `!=`, `==`, then `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence '\\{e}'")),
                None => return Err("unterminated escape sequence '\\' at the end".into()),
            },
            ',' | '=' => return Err(format!("unescaped '{c}' (write '\\{c}')")),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s)
            .expect_err(&format!("{s:?} should not parse"))
            .0
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel("");
        assert!(s.is_everything());
        assert!(s.matches(None));
        assert!(sel("  ").matches(Some(&json!({"a": "b"}))));
    }

    #[test]
    fn equality_operators_match_value() {
        let l = json!({"app": "web", "tier": "front"});
        for s in ["app=web", "app==web", " app = web ", "app=web,tier=front"] {
            assert!(sel(s).matches(Some(&l)), "{s}");
        }
        assert!(!sel("app=db").matches(Some(&l)));
        assert!(!sel("missing=x").matches(Some(&l)));
        assert_eq!(sel("app==web").requirements()[0].operator, Operator::Equals);
    }

    #[test]
    fn not_equals_matches_absent_label() {
        let l = json!({"app": "web"});
        assert!(sel("app!=db").matches(Some(&l)));
        assert!(!sel("app!=web").matches(Some(&l)));
        assert!(sel("other!=x").matches(Some(&l)));
        assert!(sel("other!=x").matches(None));
    }

    #[test]
    fn empty_value_requires_empty_label() {
        assert!(sel("a=").matches(Some(&json!({"a": ""}))));
        assert!(!sel("a=").matches(Some(&json!({}))));
        assert!(!sel("a=,b").matches(Some(&json!({"a": "x", "b": "y"}))));
    }

    #[test]
    fn set_operators_match() {
        let l = json!({"env": "prod"});
        assert!(sel("env in (prod, staging)").matches(Some(&l)));
        assert!(sel("env in(prod)").matches(Some(&l)));
        assert!(!sel("env in (dev)").matches(Some(&l)));
        assert!(sel("env notin (dev,qa)").matches(Some(&l)));
        assert!(!sel("env notin (prod)").matches(Some(&l)));
        assert!(sel("other notin (prod)").matches(Some(&l)));
        assert!(!sel("other in (prod)").matches(Some(&l)));
        // An empty entry is the empty value.
        assert!(sel("x in (a,)").matches(Some(&json!({"x": ""}))));
    }

    #[test]
    fn existence_operators_match() {
        let l = json!({"app": "web"});
        assert!(sel("app").matches(Some(&l)));
        assert!(!sel("db").matches(Some(&l)));
        assert!(sel("!db").matches(Some(&l)));
        assert!(!sel("!app").matches(Some(&l)));
        assert!(sel("app,!db,app in (web)").matches(Some(&l)));
    }

    #[test]
    fn comparison_operators_need_integers() {
        let l = json!({"n": "5", "s": "x"});
        assert!(sel("n>3").matches(Some(&l)));
        assert!(!sel("n>5").matches(Some(&l)));
        assert!(sel("n<6").matches(Some(&l)));
        assert!(!sel("s<6").matches(Some(&l)));
        assert!(!sel("missing>1").matches(Some(&l)));
        assert!(err("n>x").contains("integer"));
    }

    #[test]
    fn prefixed_keys_parse() {
        let l = json!({"app.kubernetes.io/name": "web", "k8s.io/x_y.z": "v"});
        assert!(sel("app.kubernetes.io/name=web,k8s.io/x_y.z").matches(Some(&l)));
    }

    #[test]
    fn non_string_labels_count_as_absent() {
        assert!(!sel("a").matches(Some(&json!({"a": 1}))));
        assert!(sel("!a").matches(Some(&json!({"a": null}))));
    }

    #[test]
    fn syntax_errors_name_the_offending_token() {
        assert!(err("a=b=c").contains("'='"), "{}", err("a=b=c"));
        assert!(err("a in b").contains("expected: '('"));
        assert!(err("a in (b").contains("end of string"));
        assert!(err(",a").contains("','"));
        assert!(err("a,").contains("end of string"));
        assert!(err("!a=b").contains("!a"));
        assert!(err("a b").contains("identifier \"b\""));
        assert!(err("a=(").contains("'('"));
        assert!(err("a in ()").contains("can't be empty"));
        assert!(err("a notin ()").contains("can't be empty"));
        for e in ["a=b=c", "a in ()", "-a"] {
            assert!(err(e).starts_with("unable to parse requirement: "), "{e}");
        }
    }

    #[test]
    fn invalid_keys_are_rejected() {
        assert!(err("-a=b").contains("invalid label key \"-a\""));
        assert!(err("a-=b").contains("name part"));
        assert!(err("Ex.com/a=b").contains("prefix"));
        assert!(err("/a=b").contains("prefix part must be non-empty"));
        assert!(err("ex.com/=b").contains("name part must be non-empty"));
        let long = "a".repeat(64);
        assert!(err(&format!("{long}=b")).contains("63"));
        assert!(sel(&format!("{}=b", "a".repeat(63))).requirements().len() == 1);
        assert!(err("a/b/c").contains("name part"));
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(err("a=-b").contains("invalid label value \"-b\""));
        assert!(err("a in (x,y_)").contains("\"y_\""));
        assert!(err(&format!("a={}", "v".repeat(64))).contains("63"));
        assert!(err("a=b/c").contains("invalid label value"));
    }

    #[test]
    fn display_round_trips() {
        let s = sel("b in (x,y),a!=z,!c,d,e=f");
        assert_eq!(s.to_string(), "a!=z,b in (x,y),!c,d,e=f");
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn set_of_the_empty_value_round_trips() {
        // Found by the api_label_selector fuzz target: this printed as `7 notin ()`.
        let s = sel("7\nnotin(,)");
        assert_eq!(s.requirements()[0].values, [""]);
        assert_eq!(s.to_string(), "7 notin (,)");
        assert_eq!(sel(&s.to_string()), s);
    }

    #[test]
    fn structured_selector_matches() {
        let s = LabelSelector::from_k8s(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert!(s.matches(Some(&json!({"app": "web", "tier": "edge", "team": "a"}))));
        assert!(!s.matches(Some(&json!({"app": "web", "tier": "edge"}))));
        assert!(!s.matches(Some(
            &json!({"app": "web", "tier": "edge", "team": "a", "canary": "1"})
        )));
        assert!(!s.matches(Some(
            &json!({"app": "web", "tier": "edge", "team": "a", "env": "dev"})
        )));
    }

    #[test]
    fn structured_null_matches_nothing_and_empty_everything() {
        assert!(!LabelSelector::from_k8s(&Value::Null).unwrap().matches(None));
        let all = LabelSelector::from_k8s(&json!({})).unwrap();
        assert!(all.is_everything() && all.matches(None));
        let svc = LabelSelector::from_map(json!({"app": "x"}).as_object().unwrap()).unwrap();
        assert!(svc.matches_object(&json!({"metadata": {"labels": {"app": "x"}}})));
    }

    #[test]
    fn structured_errors_name_the_expression() {
        let e = |v: Value| LabelSelector::from_k8s(&v).unwrap_err().0;
        assert!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}))
                .contains("matchExpressions[0]: \"Gt\" is not a valid")
        );
        assert!(
            e(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .contains("can't be empty")
        );
        assert!(e(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        )
        .contains("must be empty"));
        assert!(e(json!({"matchLabels": {"a": 1}})).contains("matchLabels[a]"));
        assert!(e(json!({"matchLabels": {"-a": "b"}})).contains("invalid label key"));
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn pod() -> Value {
        json!({
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "hostNetwork": false},
            "status": {"phase": "Running", "restarts": 3}
        })
    }

    #[test]
    fn field_equality_and_inequality_match() {
        let p = pod();
        assert!(fsel("metadata.name=web-1").matches(&p));
        assert!(fsel("metadata.name==web-1").matches(&p));
        assert!(!fsel("metadata.name=web-2").matches(&p));
        assert!(fsel("status.phase!=Pending").matches(&p));
        assert!(!fsel("status.phase!=Running").matches(&p));
        assert!(fsel("metadata.namespace=default,spec.nodeName=n1").matches(&p));
        assert!(!fsel("metadata.namespace=default,spec.nodeName=n2").matches(&p));
        assert!(fsel("spec.hostNetwork=false,status.restarts=3").matches(&p));
    }

    #[test]
    fn missing_field_reads_as_empty() {
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(fsel("spec.nodeName=").matches(&unscheduled));
        assert!(!fsel("spec.nodeName!=").matches(&unscheduled));
        assert!(!fsel("spec.nodeName=").matches(&pod()));
        let event = json!({"involvedObject": {"kind": "Pod", "name": "web-1"}});
        assert!(fsel("involvedObject.kind=Pod,involvedObject.name=web-1").matches(&event));
    }

    #[test]
    fn field_escapes_unescape() {
        let s = fsel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert!(s.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        // An escaped comma does not split terms.
        assert_eq!(fsel(r"a=x\,y,b=z").requirements().len(), 2);
    }

    #[test]
    fn field_errors_are_reported() {
        let e = |s: &str| FieldSelector::parse(s).unwrap_err().0;
        assert!(e("metadata.name").contains("can't understand 'metadata.name'"));
        assert!(e(r"a=b\x").contains(r"invalid escape sequence '\x'"));
        assert!(e(r"a=b\").contains("unterminated"));
        assert!(e("a=b=c").contains("unescaped '='"));
        assert!(e("=b").contains("no field name"));
    }

    #[test]
    fn field_empty_terms_are_skipped() {
        assert!(fsel("").is_everything());
        assert!(fsel(",,").is_everything());
        assert_eq!(fsel("a=b,").requirements().len(), 1);
    }

    #[test]
    fn field_validate_names_unsupported_field() {
        let s = fsel("metadata.name=x,spec.foo=y");
        assert_eq!(
            s.validate(&["metadata.name", "metadata.namespace"]),
            Err("field label not supported: spec.foo".to_owned())
        );
        assert_eq!(s.validate(&["metadata.name", "spec.foo"]), Ok(()));
    }

    /// Random strings over the grammar's characters: parsing never panics, and what parses
    /// prints in a form that parses back to the same selector (the fuzz targets' invariants).
    #[test]
    fn random_selectors_round_trip() {
        const CHARS: &[&str] = &[
            "a", "b", "1", "/", ".", "-", "_", "=", "!", "(", ")", ",", " ", "in", "notin", ">",
            "<", "\\", "é", "x.io/", "A",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut labels, mut fields) = (0, 0);
        for _ in 0..50_000 {
            let len = next(12);
            let text: String = (0..len).map(|_| CHARS[next(CHARS.len())]).collect();
            if let Ok(s) = LabelSelector::parse(&text) {
                labels += 1;
                assert_eq!(
                    LabelSelector::parse(&s.to_string()).as_ref(),
                    Ok(&s),
                    "{text:?}"
                );
                let _ = s.matches(Some(&json!({"a": "b", "x.io/a": "1"})));
            }
            if let Ok(s) = FieldSelector::parse(&text) {
                fields += 1;
                assert_eq!(
                    FieldSelector::parse(&s.to_string()).as_ref(),
                    Ok(&s),
                    "{text:?}"
                );
                let _ = s.matches(&json!({"a": {"b": "c"}}));
            }
        }
        assert!(labels > 1_000 && fields > 1_000, "{labels} {fields}");
    }

    #[test]
    fn field_exact_match_and_custom_values() {
        let s = fsel("spec.nodeName=n1,status.phase!=Failed");
        assert_eq!(s.exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(s.exact_match("status.phase"), None);
        let node = fsel("spec.unschedulable=false");
        assert!(node.matches_with(|f| {
            assert_eq!(f, "spec.unschedulable");
            "false".into()
        }));
    }
}
