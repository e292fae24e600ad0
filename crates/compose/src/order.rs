//! The order services start in: every service after what it depends on (`depends_on`, and
//! `network_mode: service:X`), a cycle refused with its path.

use std::collections::BTreeSet;

use crate::model::Project;
use crate::ComposeError;

/// What `service` must wait for.
pub fn dependencies(p: &Project, service: &str) -> Vec<String> {
    let Some(s) = p.services.get(service) else {
        return Vec::new();
    };
    let mut d: Vec<String> = s
        .depends_on
        .keys()
        .filter(|k| p.services.contains_key(*k))
        .cloned()
        .collect();
    if let Some(other) = s
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("service:"))
    {
        if !d.iter().any(|x| x == other) {
            d.push(other.to_owned());
        }
    }
    d
}

/// `wanted` and everything they depend on, dependencies first.
pub fn order(p: &Project, wanted: &[String]) -> Result<Vec<String>, ComposeError> {
    fn visit(
        p: &Project,
        s: &str,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), ComposeError> {
        if done.contains(s) {
            return Ok(());
        }
        if let Some(i) = path.iter().position(|x| x == s) {
            let mut cycle = path[i..].to_vec();
            cycle.push(s.to_owned());
            return Err(ComposeError::Invalid(format!(
                "dependency cycle: {}",
                cycle.join(" -> ")
            )));
        }
        path.push(s.to_owned());
        for d in dependencies(p, s) {
            visit(p, &d, done, path, out)?;
        }
        path.pop();
        done.insert(s.to_owned());
        out.push(s.to_owned());
        Ok(())
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for s in wanted {
        visit(p, s, &mut done, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// The services that depend on `service`, directly or not.
pub fn dependents(p: &Project, service: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![service.to_owned()];
    while let Some(s) = todo.pop() {
        for name in p.services.keys() {
            if dependencies(p, name).contains(&s) && out.insert(name.clone()) {
                todo.push(name.clone());
            }
        }
    }
    out
}
