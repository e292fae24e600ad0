//! ControllerRevisions: the template history of StatefulSets and DaemonSets, kept as
//! Kubernetes' controller history keeps it, so `kubectl rollout history` and `kubectl rollout
//! undo` work on them as they do on Deployments.
//!
//! Each template a set has had is one `apps/v1` ControllerRevision named as its pods'
//! `controller-revision-hash` (`<set>-<hash of the template>`), controlled by the set,
//! labelled with the template's labels (so the set's selector finds it) and
//! `controller.kubernetes.io/hash`, carrying the set's annotations (`kubernetes.io/change-cause`
//! is what `rollout history` shows) and, in `data`, the strategic merge patch that puts the
//! template back: `{"spec": {"template": {..., "$patch": "replace"}}}` (what `rollout undo`
//! sends). A template seen before (an undo) takes the next revision number rather than a new
//! object. Revisions no pod, current or update revision uses are pruned to
//! `revisionHistoryLimit` (10 by default), oldest first; the garbage collector removes the
//! rest with the set.

use std::sync::Arc;

use corral_api::objects::Objects;
use corral_store::{registry, Store};
use serde_json::{json, Value};

use crate::kv::{self, name, namespace, uid_of as uid, Change};
use crate::replicasets::{controller_ref, controller_uid};

/// The label with the template hash on a revision.
const HASH: &str = "controller.kubernetes.io/hash";

/// The patch that restores `set`'s template.
fn data(set: &Value) -> Value {
    let mut template = set["spec"]["template"].clone();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Makes sure `rev` (the set's current template's revision name) is the newest revision of
/// `set` (`kind` is `StatefulSet` or `DaemonSet`), and prunes history beyond the limit,
/// sparing the revisions named in `live`. Errors are the store's or the API's, to retry.
pub async fn record(
    store: &Arc<dyn Store>,
    objects: &Objects,
    set: &Value,
    kind: &str,
    rev: &str,
    live: &[&str],
) -> Result<(), String> {
    let ns = namespace(set);
    let prefix = registry::prefix("apps", "controllerrevisions", Some(ns));
    let (all, _) = kv::list(store, &prefix).await.map_err(|e| e.to_string())?;
    let mut mine: Vec<Value> = all
        .into_iter()
        .filter(|r| controller_uid(r) == Some(uid(set)) && !kv::deleting(r))
        .collect();
    mine.sort_by_key(|r| r["revision"].as_i64().unwrap_or(0));
    let newest = mine
        .last()
        .and_then(|r| r["revision"].as_i64())
        .unwrap_or(0);
    match mine.iter().find(|r| name(r) == rev) {
        Some(r) if r["revision"].as_i64() == Some(newest) => {}
        Some(_) => {
            let key = registry::key("apps", "controllerrevisions", Some(ns), rev);
            kv::modify(store, &key, |v| {
                v["revision"] = json!(newest + 1);
                Change::Write
            })
            .await
            .map_err(|e| e.to_string())?;
        }
        None => {
            let mut labels = set["spec"]["template"]["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            let hash = rev.rsplit('-').next().unwrap_or(rev);
            labels[HASH] = json!(hash);
            let mut meta = json!({
                "name": rev,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [controller_ref(set, "apps/v1", kind)],
            });
            if let Some(a) = set["metadata"]["annotations"].as_object() {
                let mut a = a.clone();
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                if !a.is_empty() {
                    meta["annotations"] = json!(a);
                }
            }
            let obj = json!({
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": meta,
                "data": data(set),
                "revision": newest + 1,
            });
            match kv::create_as_controller(objects, ns, &obj).await {
                Ok(_) => {}
                // Made by an earlier pass whose list did not see it yet.
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e.message),
            }
        }
    }
    // History beyond the limit goes, oldest first.
    let limit = set["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let current = set["status"]["currentRevision"].as_str().unwrap_or(rev);
    let old: Vec<&Value> = mine
        .iter()
        .filter(|r| {
            let n = name(r);
            n != rev && n != current && !live.contains(&n)
        })
        .collect();
    for r in old.iter().take(old.len().saturating_sub(limit)) {
        let key = registry::key("apps", "controllerrevisions", Some(ns), name(r));
        let _ = kv::delete_like_api(store, &key).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_replaces_the_template_whole() {
        let set = json!({"spec": {"replicas": 3, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "a"}]}}}});
        let d = data(&set);
        assert_eq!(d["spec"]["template"]["$patch"], "replace");
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "a");
        // Only the template: an undo leaves replicas alone.
        assert!(d["spec"].get("replicas").is_none());
    }
}
