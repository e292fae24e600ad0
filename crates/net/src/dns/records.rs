//! The records file of a network's DNS server (`<network_dir>/dns.json`): what the engine and
//! the node agent write, and the zone the server looks names up in.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DnsError, LOCK_FILE, RECORDS_FILE};
use crate::fsutil::{read_json, write_json_runtime, Lock};

/// One workload attached to the network, as the DNS server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The container's or VM's name.
    pub name: String,
    /// Other names for the same address (docker's `--network-alias`, the short id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its address on the network.
    pub ipv4: Ipv4Addr,
}

/// A name that is another name (a Kubernetes `ExternalName` Service): the server answers a
/// `CNAME` to `target`, followed by the target's own records (ours, or the upstreams').
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cname {
    /// The alias.
    pub name: String,
    /// The canonical name it stands for.
    pub target: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordsFile {
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cnames: Vec<Cname>,
}

fn read_file(network_dir: &Path) -> Result<RecordsFile, DnsError> {
    let file: Option<RecordsFile> = read_json(&network_dir.join(RECORDS_FILE))?;
    Ok(file.unwrap_or_default())
}

/// Reads the file, lets `f` change it, writes it back if `f` says it changed; under the lock,
/// so concurrent writers lose nothing. `flock` locks belong to the open file, so two threads
/// of one process exclude each other too.
fn change(network_dir: &Path, f: impl FnOnce(&mut RecordsFile) -> bool) -> Result<bool, DnsError> {
    let _lock = Lock::exclusive(&network_dir.join(LOCK_FILE))?;
    let mut file = read_file(network_dir)?;
    if !f(&mut file) {
        return Ok(false);
    }
    write_json_runtime(&network_dir.join(RECORDS_FILE), &file)?;
    Ok(true)
}

/// The records of the network in `network_dir`; none if the file does not exist.
pub fn read_records(network_dir: &Path) -> Result<Vec<Record>, DnsError> {
    Ok(read_file(network_dir)?.records)
}

/// Replaces the records of the network in `network_dir`, atomically (temporary file, fsync,
/// rename, fsync of the directory), under the lock. Its CNAMEs stay.
pub fn write_records(network_dir: &Path, records: &[Record]) -> Result<(), DnsError> {
    for record in records {
        validate(record)?;
    }
    change(network_dir, |file| {
        file.records = records.to_vec();
        true
    })
    .map(drop)
}

/// Adds `record`, replacing the record of the same name (case-insensitive) if there is one.
pub fn add_record(network_dir: &Path, record: Record) -> Result<(), DnsError> {
    validate(&record)?;
    change(network_dir, |file| {
        let key = normalize(&record.name);
        file.records.retain(|r| normalize(&r.name) != key);
        file.records.push(record);
        true
    })
    .map(drop)
}

/// Removes the record named `name` (case-insensitive); whether there was one.
pub fn remove_record(network_dir: &Path, name: &str) -> Result<bool, DnsError> {
    let key = normalize(name);
    change(network_dir, |file| {
        let before = file.records.len();
        file.records.retain(|r| normalize(&r.name) != key);
        file.records.len() != before
    })
}

/// Removes the record named `name` (case-insensitive) if it is for address `ip` (a record of
/// that name for another address belongs to another container that took the name since);
/// whether there was one.
pub fn remove_record_at(network_dir: &Path, name: &str, ip: Ipv4Addr) -> Result<bool, DnsError> {
    let key = normalize(name);
    change(network_dir, |file| {
        let before = file.records.len();
        file.records
            .retain(|r| normalize(&r.name) != key || r.ipv4 != ip);
        file.records.len() != before
    })
}

/// Makes `cname.name` an alias of `cname.target`, replacing an alias of the same name.
pub fn set_cname(network_dir: &Path, cname: Cname) -> Result<(), DnsError> {
    check_name(&cname.name)?;
    check_name(&cname.target)?;
    change(network_dir, |file| {
        let key = normalize(&cname.name);
        file.cnames.retain(|c| normalize(&c.name) != key);
        file.cnames.push(cname);
        true
    })
    .map(drop)
}

/// Removes the alias `name`; whether there was one.
pub fn remove_cname(network_dir: &Path, name: &str) -> Result<bool, DnsError> {
    let key = normalize(name);
    change(network_dir, |file| {
        let before = file.cnames.len();
        file.cnames.retain(|c| normalize(&c.name) != key);
        file.cnames.len() != before
    })
}

fn validate(record: &Record) -> Result<(), DnsError> {
    std::iter::once(&record.name)
        .chain(&record.aliases)
        .try_for_each(|name| check_name(name))
}

fn check_name(name: &str) -> Result<(), DnsError> {
    let n = name.strip_suffix('.').unwrap_or(name);
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(DnsError::BadName(name.to_owned()))
    }
}

/// The key a name is looked up by: lower case, without the trailing dot.
pub(super) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The records as the server looks them up.
#[derive(Debug, Default)]
pub(super) struct Zone {
    pub(super) by_name: HashMap<String, Vec<Ipv4Addr>>,
    pub(super) by_addr: HashMap<Ipv4Addr, String>,
    /// Alias → canonical name (normalized, no trailing dot).
    pub(super) cnames: HashMap<String, String>,
}

impl Zone {
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let file: RecordsFile = serde_json::from_slice(bytes)?;
        let mut zone = Zone::default();
        for record in &file.records {
            for name in std::iter::once(&record.name).chain(&record.aliases) {
                let addrs = zone.by_name.entry(normalize(name)).or_default();
                if !addrs.contains(&record.ipv4) {
                    addrs.push(record.ipv4);
                }
            }
            zone.by_addr
                .entry(record.ipv4)
                .or_insert_with(|| normalize(&record.name));
        }
        for c in &file.cnames {
            zone.cnames.insert(normalize(&c.name), normalize(&c.target));
        }
        Ok(zone)
    }

    /// The addresses of `name` (normalized), bare or under `domain`.
    pub(super) fn lookup(&self, name: &str, domain: Option<&str>) -> Option<&[Ipv4Addr]> {
        Self::find(&self.by_name, name, domain).map(Vec::as_slice)
    }

    /// The canonical name `name` (normalized) is an alias of, bare or under `domain`.
    pub(super) fn cname(&self, name: &str, domain: Option<&str>) -> Option<&str> {
        Self::find(&self.cnames, name, domain).map(String::as_str)
    }

    fn find<'a, T>(map: &'a HashMap<String, T>, name: &str, domain: Option<&str>) -> Option<&'a T> {
        if let Some(v) = map.get(name) {
            return Some(v);
        }
        let bare = name.strip_suffix(domain?)?.strip_suffix('.')?;
        map.get(bare)
    }
}
