//! Kubernetes' object semantics over the store, without HTTP: create (generateName, uid,
//! defaults, the namespace must exist), get, list (selectors, pages at one revision), update
//! (resourceVersion preconditions, immutable fields, the status subresource), delete
//! (graceful for pods on a node, finalizers and deletionTimestamp, propagation policies),
//! binding.

use std::sync::Arc;

use base64::Engine as _;
use corral_store::{registry, RangeRequest, Revision, Store, StoreError};
use serde_json::{json, Value};

use crate::resources::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::validate::{self, FieldValidation};

/// The result of an API operation.
pub type Result<T> = std::result::Result<T, ApiError>;

/// Options common to writes.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: check everything, store nothing.
    pub dry_run: bool,
    /// What to do with unknown fields.
    pub field_validation: FieldValidation,
    /// `fieldManager`, or the client's name.
    pub field_manager: String,
    /// The object's managedFields are already what they must be (server-side apply).
    pub managed_fields_done: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Warn,
            field_manager: "unknown".into(),
            managed_fields_done: false,
        }
    }
}

/// Options of a list.
#[derive(Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: Option<LabelSelector>,
    /// `fieldSelector`.
    pub fields: Option<FieldSelector>,
    /// `limit` (0: all).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion` as given.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch` as given.
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The token for the next page, if more match.
    pub continue_token: Option<String>,
    /// How many more there are (when no selector hides the count).
    pub remaining: Option<usize>,
}

/// Options of a delete.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The object layer over a store.
pub struct Objects {
    store: Arc<dyn Store>,
}

pub use corral_store::meta::{now as now_rfc3339, parse_rfc3339, rfc3339, uid as new_uid};

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = rand::rng();
    (0..5)
        .map(|_| ALPHABET[r.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn key_of(r: &Resource, ns: Option<&str>, name: &str) -> String {
    registry::key(
        r.group,
        r.plural,
        if r.namespaced { ns } else { None },
        name,
    )
}

fn meta_str<'a>(v: &'a Value, f: &str) -> Option<&'a str> {
    v["metadata"][f].as_str()
}

/// A continue token: the revision and the last key of the page, base64 JSON.
fn encode_continue(rev: Revision, last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rev, "start": last}).to_string())
}

fn decode_continue(tok: &str) -> Result<(Revision, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: ask for a new list without it");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["rv"].as_i64().ok_or_else(bad)?,
        v["start"].as_str().ok_or_else(bad)?.to_string(),
    ))
}

impl Objects {
    /// The object layer over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Objects { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// One object.
    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        let kv = self.store.get(&key_of(r, ns, name)).await?;
        let kv = kv.ok_or_else(|| ApiError::not_found(&r.qualified(), name))?;
        registry::decode(&kv).ok_or_else(|| ApiError::internal("stored object is not JSON"))
    }

    async fn ensure_namespace(&self, r: &Resource, ns: Option<&str>) -> Result<()> {
        if !r.namespaced {
            return Ok(());
        }
        let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
        let nsr = resources::find("", "v1", "namespaces").expect("namespaces served");
        let v = self.get(nsr, None, ns).await.map_err(|e| {
            if e.code == 404 {
                ApiError::not_found("namespaces", ns)
            } else {
                e
            }
        })?;
        if !v["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Lists objects (all namespaces when `ns` is `None`).
    pub async fn list(&self, r: &Resource, ns: Option<&str>, o: &ListOptions) -> Result<ListPage> {
        let prefix = registry::prefix(r.group, r.plural, if r.namespaced { ns } else { None });
        let (mut revision, mut start_after) = (0, None);
        if let Some(tok) = &o.continue_token {
            let (rv, last) = decode_continue(tok)?;
            revision = rv;
            start_after = Some(last);
        } else if let Some(rv) = o
            .resource_version
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "0")
        {
            let rv: Revision = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {rv}")))?;
            if o.resource_version_match.as_deref() == Some("Exact") {
                revision = rv;
            } else {
                let cur = self.store.revision().await?;
                if rv > cur {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {rv}, current: {cur}"
                    )));
                }
            }
        }
        let filtered = o.labels.is_some() || o.fields.is_some();
        let mut items = Vec::new();
        loop {
            let want = if o.limit == 0 {
                0
            } else {
                o.limit - items.len()
            };
            let batch = if filtered && want > 0 {
                want.max(256)
            } else {
                want
            };
            let resp = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: batch,
                    revision,
                })
                .await?;
            revision = resp.revision;
            let mut last_key = None;
            let mut taken_all = true;
            for kv in &resp.kvs {
                if o.limit != 0 && items.len() == o.limit {
                    taken_all = false;
                    break;
                }
                last_key = Some(kv.key.clone());
                let Some(v) = registry::decode(kv) else {
                    continue;
                };
                if o.labels
                    .as_ref()
                    .is_some_and(|s| !s.matches(v["metadata"].get("labels")))
                {
                    continue;
                }
                if o.fields.as_ref().is_some_and(|s| !s.matches(&v)) {
                    continue;
                }
                items.push(v);
            }
            let more = resp.more || !taken_all;
            if !more {
                return Ok(ListPage {
                    items,
                    revision,
                    continue_token: None,
                    remaining: None,
                });
            }
            if o.limit != 0 && items.len() == o.limit {
                let last = last_key.unwrap_or_default();
                let remaining = if filtered { None } else { Some(resp.remaining) };
                return Ok(ListPage {
                    items,
                    revision,
                    continue_token: Some(encode_continue(revision, &last)),
                    remaining,
                });
            }
            start_after = last_key.or(start_after);
        }
    }

    /// Creates an object from a request body.
    pub async fn create(
        &self,
        r: &Resource,
        ns: Option<&str>,
        body: &Value,
        o: &WriteOptions,
    ) -> Result<(Value, Vec<String>)> {
        let (mut obj, warnings) = validate::decode(r, body, o.field_validation)?;
        let meta = obj
            .as_object_mut()
            .expect("object")
            .entry("metadata")
            .or_insert(json!({}));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        if r.namespaced {
            let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
            match meta["namespace"].as_str() {
                None | Some("") => meta["namespace"] = json!(ns),
                Some(n) if n == ns => {}
                Some(n) => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({n}) does not match the namespace sent on the request ({ns})"
                    )))
                }
            }
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        let name = match meta["name"].as_str().filter(|s| !s.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta["generateName"].as_str().filter(|s| !s.is_empty()) {
                Some(g) => {
                    let g: String = g.chars().take(58).collect();
                    format!("{g}{}", random_suffix())
                }
                None => {
                    return Err(ApiError::invalid(
                        r.kind,
                        "",
                        vec![(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ))
                }
            },
        };
        validate::check_name(r, &name)?;
        {
            let m = meta.as_object_mut().expect("object");
            m.insert("name".into(), json!(name));
            m.insert("uid".into(), json!(new_uid()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("resourceVersion");
            m.remove("selfLink");
            validate::check_metadata(r, &name, m)?;
        }
        if obj.get("spec").is_some() || r.kind == "Pod" {
            obj["metadata"]["generation"] = json!(1);
        }
        validate::defaults(r, &mut obj);
        if r.kind == "Pod" {
            check_pod(&obj)?;
        }
        crate::workloads::check(r, &obj)?;
        crate::batch::check(r, &obj)?;
        crate::autoscaling::check(r, &obj)?;
        crate::disruption::check(r, &obj)?;
        crate::virtualmachines::check(r, &obj)?;
        // A Service's address and node ports are taken and stored under one lock.
        let _allocation = if r.kind == "Service" {
            crate::services::check(&obj)?;
            let guard = crate::services::ALLOCATION.lock().await;
            crate::services::allocate(&self.store, &mut obj).await?;
            Some(guard)
        } else {
            None
        };
        if !o.managed_fields_done {
            obj =
                crate::patch::record_update(None, &obj, &o.field_manager, "Update", &now_rfc3339());
        }
        if r.kind != "Namespace" {
            self.ensure_namespace(r, ns).await?;
        }
        let key = key_of(r, ns, &name);
        if o.dry_run {
            if self.store.get(&key).await?.is_some() {
                return Err(ApiError::already_exists(&r.qualified(), &name));
            }
            return Ok((obj, warnings));
        }
        match self.store.create(&key, registry::encode(&obj), 0).await {
            Ok(rev) => {
                registry::stamp(&mut obj, rev);
                Ok((obj, warnings))
            }
            Err(StoreError::AlreadyExists(_)) => {
                Err(ApiError::already_exists(&r.qualified(), &name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an object (`sub` = `Some("status")` for the status subresource).
    pub async fn update(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        body: &Value,
        sub: Option<&str>,
        o: &WriteOptions,
    ) -> Result<(Value, Vec<String>)> {
        let (new, warnings) = validate::decode(r, body, o.field_validation)?;
        match meta_str(&new, "name") {
            Some(n) if n == name => {}
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            None => return Err(ApiError::bad_request("the name of the object is missing")),
        }
        let key = key_of(r, ns, name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(&r.qualified(), name))?;
        let old =
            registry::decode(&kv).ok_or_else(|| ApiError::internal("stored object is not JSON"))?;
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|s| !s.is_empty()) {
            if rv != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(
                    &r.qualified(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        let merged = merge_update(r, &old, new, sub)?;
        self.write(r, ns, name, &old, merged, kv.mod_revision, o)
            .await
            .map(|v| (v, warnings))
    }

    /// Writes `new` over `old` (read at `rev`): checks, generation, managed fields, and the
    /// end of a deletion when the last finalizer goes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        mut new: Value,
        rev: Revision,
        o: &WriteOptions,
    ) -> Result<Value> {
        if matches!(
            r.kind,
            "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Service"
                | "Job"
                | "CronJob"
                | "HorizontalPodAutoscaler"
                | "VirtualMachine"
        ) {
            // Defaults apply to every write of these kinds, as Kubernetes decodes them: a
            // template changed by a patch compares equal to its ReplicaSet's.
            validate::defaults(r, &mut new);
        }
        let _allocation = if r.kind == "Service" {
            crate::services::merge_update(old, &mut new)?;
            crate::services::check(&new)?;
            let guard = crate::services::ALLOCATION.lock().await;
            crate::services::check_update_ports(&self.store, &mut new).await?;
            Some(guard)
        } else {
            None
        };
        validate::check_update(r, old, &new)?;
        if let Some(m) = new["metadata"].as_object() {
            validate::check_metadata(r, name, m)?;
        }
        if r.kind == "Pod" {
            check_pod(&new)?;
        }
        crate::workloads::check(r, &new)?;
        crate::batch::check(r, &new)?;
        crate::autoscaling::check(r, &new)?;
        crate::disruption::check(r, &new)?;
        crate::virtualmachines::check(r, &new)?;
        if strip_for_generation(old) != strip_for_generation(&new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if !o.managed_fields_done {
            new = crate::patch::record_update(
                Some(old),
                &new,
                &o.field_manager,
                "Update",
                &now_rfc3339(),
            );
        }
        let key = key_of(r, ns, name);
        let deleting = !new["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let ns_pending = r.kind == "Namespace"
            && new["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        let pod_pending = r.kind == "Pod"
            && !new["spec"]["nodeName"].is_null()
            && deleting
            && !is_terminated(&new);
        if deleting && no_finalizers && !ns_pending && !pod_pending {
            if o.dry_run {
                return Ok(new);
            }
            return match self.store.delete(&key, rev).await {
                Ok((drev, _)) => {
                    registry::stamp(&mut new, drev);
                    Ok(new)
                }
                Err(e) => Err(write_error(r, name, e)),
            };
        }
        if old == &new || o.dry_run {
            return Ok(new);
        }
        match self.store.update(&key, registry::encode(&new), rev).await {
            Ok(nrev) => {
                registry::stamp(&mut new, nrev);
                Ok(new)
            }
            Err(e) => Err(write_error(r, name, e)),
        }
    }

    /// Deletes an object: at once, or marked with a deletionTimestamp when finalizers, a
    /// propagation policy or a pod's graceful termination must run first.
    pub async fn delete(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> Result<Value> {
        let key = key_of(r, ns, name);
        for _ in 0..16 {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(&r.qualified(), name))?;
            let mut v = registry::decode(&kv)
                .ok_or_else(|| ApiError::internal("stored object is not JSON"))?;
            if let Some(uid) = &o.uid {
                if meta_str(&v, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::conflict(
                        &r.qualified(),
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&v, "uid").unwrap_or("")),
                    ));
                }
            }
            if let Some(rv) = &o.resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(
                        &r.qualified(),
                        name,
                        &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", kv.mod_revision),
                    ));
                }
            }
            let mut finalizers: Vec<Value> = v["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match o.propagation.as_deref() {
                Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                    finalizers.push(json!("orphan"))
                }
                Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                    finalizers.push(json!("foregroundDeletion"))
                }
                Some("Orphan") | Some("Foreground") | Some("Background") | None => {}
                Some(p) => {
                    return Err(ApiError::bad_request(format!(
                        "propagationPolicy {p} is not one of Orphan, Background, Foreground"
                    )))
                }
            }
            let graceful_pod =
                r.kind == "Pod" && !v["spec"]["nodeName"].is_null() && !is_terminated(&v);
            let grace = if graceful_pod {
                o.grace_period
                    .or(v["spec"]["terminationGracePeriodSeconds"].as_i64())
                    .unwrap_or(30)
                    .max(0)
            } else {
                0
            };
            let graceful_pod = graceful_pod && grace > 0;
            let namespace = r.kind == "Namespace";
            if finalizers.is_empty() && !graceful_pod && !namespace {
                if o.dry_run {
                    return Ok(v);
                }
                match self.store.delete(&key, kv.mod_revision).await {
                    Ok((rev, _)) => {
                        registry::stamp(&mut v, rev);
                        return Ok(v);
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound(_)) => {
                        return Err(ApiError::not_found(&r.qualified(), name))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let already = !v["metadata"]["deletionTimestamp"].is_null();
            if already {
                // A second delete may shorten a pod's grace period, never lengthen it.
                let cur = v["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0);
                if !(graceful_pod && grace < cur)
                    && v["metadata"]["finalizers"].as_array().map(Vec::len)
                        == Some(finalizers.len())
                {
                    return Ok(v);
                }
            }
            let when = std::time::SystemTime::now() + std::time::Duration::from_secs(grace as u64);
            let m = v["metadata"].as_object_mut().expect("metadata");
            m.insert("deletionTimestamp".into(), json!(rfc3339(when)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if finalizers.is_empty() {
                m.remove("finalizers");
            } else {
                m.insert("finalizers".into(), json!(finalizers));
            }
            if namespace {
                v["status"]["phase"] = json!("Terminating");
            }
            if o.dry_run {
                return Ok(v);
            }
            match self
                .store
                .update(&key, registry::encode(&v), kv.mod_revision)
                .await
            {
                Ok(rev) => {
                    registry::stamp(&mut v, rev);
                    return Ok(v);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => {
                    return Err(ApiError::not_found(&r.qualified(), name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(r, name))
    }

    /// Binds a pod to a node (the `binding` subresource).
    pub async fn bind(&self, ns: &str, name: &str, node: &str) -> Result<Value> {
        let r = resources::find("", "v1", "pods").expect("pods served");
        let key = key_of(r, Some(ns), name);
        for _ in 0..16 {
            let kv = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found("pods", name))?;
            let mut v = registry::decode(&kv)
                .ok_or_else(|| ApiError::internal("stored object is not JSON"))?;
            if let Some(n) = v["spec"]["nodeName"].as_str() {
                return Err(ApiError::conflict(
                    "pods",
                    name,
                    &format!("pod {name} is already assigned to node \"{n}\""),
                ));
            }
            if !v["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict("pods", name, "pod is being deleted"));
            }
            v["spec"]["nodeName"] = json!(node);
            set_condition(&mut v, "PodScheduled", "True", None, None);
            match self
                .store
                .update(&key, registry::encode(&v), kv.mod_revision)
                .await
            {
                Ok(rev) => {
                    registry::stamp(&mut v, rev);
                    return Ok(v);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(r, name))
    }
}

/// A guarded write's failure as the API reports it.
fn write_error(r: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => conflict(r, name),
        StoreError::NotFound(_) => ApiError::not_found(&r.qualified(), name),
        e => e.into(),
    }
}

fn conflict(r: &Resource, name: &str) -> ApiError {
    ApiError::conflict(
        &r.qualified(),
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// Whether a pod has finished (no graceful termination left to run).
fn is_terminated(v: &Value) -> bool {
    matches!(
        v["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

pub use corral_store::meta::set_condition;

/// What a user-visible write may not change and generation does not count: metadata but
/// for labels/annotations-free spec, and status.
fn strip_for_generation(v: &Value) -> Value {
    let mut s = v.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    s
}

/// The object an update makes: the body, with what the server owns kept from the old one.
pub(crate) fn merge_update(
    r: &Resource,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Value> {
    if sub == Some("status") {
        let mut out = old.clone();
        out["status"] = new["status"].take();
        return Ok(out);
    }
    let keep = [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "selfLink",
    ];
    let nm = new["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for k in keep {
        match old["metadata"].get(k) {
            Some(v) => {
                nm.insert(k.into(), v.clone());
            }
            None => {
                nm.remove(k);
            }
        }
    }
    if !r.subresources.contains(&"status") && r.kind != "Namespace" {
        return Ok(new);
    }
    // The main resource does not write status.
    match old.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
    }
    Ok(new)
}

/// A pod's own rules: at least one container, unique container names, images given.
fn check_pod(v: &Value) -> Result<()> {
    let name = meta_str(v, "name").unwrap_or("");
    let causes = pod_spec_causes(&v["spec"], "spec");
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Pod", name, causes))
    }
}

/// What is wrong with a pod spec found at `at` (`spec`, `spec.template.spec`).
pub(crate) fn pod_spec_causes(spec: &Value, at: &str) -> Vec<(String, String)> {
    let mut causes = Vec::new();
    let cs = spec["containers"].as_array().cloned().unwrap_or_default();
    if cs.is_empty() {
        causes.push((format!("{at}.containers"), "Required value".to_string()));
    }
    let mut seen = std::collections::HashSet::new();
    for (list, items) in [
        ("containers", cs),
        (
            "initContainers",
            spec["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        ),
    ] {
        for (i, c) in items.iter().enumerate() {
            let cname = c["name"].as_str().unwrap_or("");
            if !validate::is_dns_label(cname) {
                causes.push((format!("{at}.{list}[{i}].name"), format!("Invalid value: \"{cname}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
            } else if !seen.insert(cname.to_string()) {
                causes.push((
                    format!("{at}.{list}[{i}].name"),
                    format!("Duplicate value: \"{cname}\""),
                ));
            }
            if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                causes.push((
                    format!("{at}.{list}[{i}].image"),
                    "Required value".to_string(),
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens() {
        let t = encode_continue(42, "/registry/core/pods/default/a");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/core/pods/default/a".to_string())
        );
        assert_eq!(decode_continue("!!").unwrap_err().code, 400);
    }
}
