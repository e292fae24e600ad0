//! End-to-end tests of PersistentVolumeClaims on `corral serve`, driven with the real
//! `kubectl` as a user would: a claim of the default class is provisioned and bound at once,
//! its data outlives the pod that wrote it, the claim is kept while a pod uses it, and its
//! volume (and the data) goes with it under `Delete` or stays under `Retain`; a volume made
//! by hand (hostPath) is bound to a claim that fits; a `WaitForFirstConsumer` claim waits for
//! its pod; a pod whose claim does not exist waits and says why.

use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;

fn wait_for(s: &Serve, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nclaims:\n{}\nvolumes:\n{}\nevents:\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&s.kubectl(&["get", "pvc", "-A", "-o", "wide"]).stdout),
            String::from_utf8_lossy(&s.kubectl(&["get", "pv", "-o", "wide"]).stdout),
            String::from_utf8_lossy(&s.kubectl(&["get", "events", "-A"]).stdout),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn field(s: &Serve, args: &[&str], path: &str) -> String {
    let jp = format!("jsonpath={path}");
    let mut a = args.to_vec();
    a.extend_from_slice(&["-o", &jp]);
    String::from_utf8_lossy(&s.kubectl(&a).stdout).into_owned()
}

fn pod(name: &str, claim: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:test
    command: ["sh", "-c", {script:?}]
    volumeMounts: [{{name: d, mountPath: /data}}]
  volumes:
  - name: d
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

fn claim(name: &str, class: Option<&str>) -> String {
    let class = class
        .map(|c| format!("  storageClassName: {c:?}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n{class}  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n"
    )
}

fn volumes(s: &Serve) -> String {
    s.world.ok(&["volume", "ls", "-q"])
}

#[test]
fn a_claims_data_outlives_its_pod_and_goes_with_the_claim() {
    let Some(s) = Serve::start("a_claims_data_outlives_its_pod_and_goes_with_the_claim") else {
        return;
    };
    let t = Duration::from_secs(30);
    // The default class provisions at once.
    s.apply(&claim("data", None), &[]);
    wait_for(&s, "claim data Bound", t, || {
        field(&s, &["get", "pvc", "data"], "{.status.phase}") == "Bound"
    });
    let c = s.json(&["get", "pvc", "data"]);
    assert_eq!(c["spec"]["storageClassName"], "local", "{c}");
    let uid = c["metadata"]["uid"].as_str().unwrap().to_string();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(c["spec"]["volumeName"], pv_name.as_str());
    assert_eq!(c["status"]["capacity"]["storage"], "1Gi");
    let pv = s.json(&["get", "pv", &pv_name]);
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["status"]["phase"], "Bound");
    let table = s.ok(&["get", "pvc"]);
    assert!(
        table.contains("Bound") && table.contains(&pv_name),
        "kubectl get pvc: {table}"
    );

    // A pod writes; the data outlives it and the next pod reads it.
    s.apply(
        &pod(
            "writer",
            "data",
            "echo kept-data > /data/f; sleep 3600 & wait",
        ),
        &[],
    );
    s.wait_ready("default", "writer");
    let handle = format!("k8s-pvc-{uid}");
    assert!(
        volumes(&s).lines().any(|l| l.trim() == handle),
        "the claim's corral volume exists: {}",
        volumes(&s)
    );
    s.ok(&["delete", "pod", "writer", "--wait=true", "--timeout=60s"]);
    s.apply(
        &pod("reader", "data", "cat /data/f; sleep 3600 & wait"),
        &[],
    );
    s.wait_ready("default", "reader");
    wait_for(&s, "the reader's log", t, || {
        s.ok(&["logs", "reader"]).contains("kept-data")
    });

    // Deleting the claim while a pod uses it leaves it Terminating until the pod goes.
    s.ok(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    let c = s.json(&["get", "pvc", "data"]);
    assert!(
        c["metadata"]["deletionTimestamp"].is_string(),
        "the claim is being deleted: {c}"
    );
    assert!(
        c["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "kubernetes.io/pvc-protection"),
        "{c}"
    );
    s.ok(&["delete", "pod", "reader", "--wait=true", "--timeout=60s"]);
    // Then the claim, its volume and the volume's data go (reclaim policy Delete).
    wait_for(&s, "the claim and its volume gone", t, || {
        !s.kubectl(&["get", "pvc", "data"]).status.success()
            && !s.kubectl(&["get", "pv", &pv_name]).status.success()
    });
    wait_for(&s, "the corral volume removed", t, || {
        !volumes(&s).lines().any(|l| l.trim() == handle)
    });
}

#[test]
fn retained_hand_made_and_first_consumer_volumes_behave_as_kubernetes() {
    let Some(s) =
        Serve::start("retained_hand_made_and_first_consumer_volumes_behave_as_kubernetes")
    else {
        return;
    };
    let t = Duration::from_secs(30);
    let classes = r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: corral.dev/volume
reclaimPolicy: Retain
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: later}
provisioner: corral.dev/volume
volumeBindingMode: WaitForFirstConsumer
"#;
    s.apply(classes, &[]);

    // Retain: the volume and its data stay Released after the claim goes.
    s.apply(&claim("kept", Some("keep")), &[]);
    wait_for(&s, "claim kept Bound", t, || {
        field(&s, &["get", "pvc", "kept"], "{.status.phase}") == "Bound"
    });
    let uid = field(&s, &["get", "pvc", "kept"], "{.metadata.uid}");
    let pv_name = format!("pvc-{uid}");
    let handle = format!("k8s-pvc-{uid}");
    s.apply(
        &pod("w", "kept", "echo retained > /data/f; sleep 3600 & wait"),
        &[],
    );
    s.wait_ready("default", "w");
    s.ok(&["delete", "pod", "w", "--wait=true", "--timeout=60s"]);
    s.ok(&["delete", "pvc", "kept", "--wait=true", "--timeout=60s"]);
    wait_for(&s, "the retained volume Released", t, || {
        field(&s, &["get", "pv", &pv_name], "{.status.phase}") == "Released"
    });
    assert!(
        volumes(&s).lines().any(|l| l.trim() == handle),
        "a retained volume keeps its data"
    );
    // Deleting the volume by hand removes the data.
    s.ok(&["delete", "pv", &pv_name, "--wait=true", "--timeout=60s"]);
    wait_for(&s, "the retained volume's data removed", t, || {
        !volumes(&s).lines().any(|l| l.trim() == handle)
    });

    // A volume made by hand is bound to a claim that fits it; the pod writes to the host path.
    let dir = s.world.path("hand-made");
    std::fs::create_dir_all(&dir).unwrap();
    let pv = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: hand-{port}}}\nspec:\n  storageClassName: \"\"\n  capacity: {{storage: 2Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {dir:?}}}\n",
        port = s.port,
        dir = dir.to_str().unwrap()
    );
    s.apply(&pv, &[]);
    s.apply(&claim("byhand", Some("")), &[]);
    wait_for(&s, "claim byhand Bound to the hand-made volume", t, || {
        field(&s, &["get", "pvc", "byhand"], "{.spec.volumeName}") == format!("hand-{}", s.port)
            && field(&s, &["get", "pvc", "byhand"], "{.status.phase}") == "Bound"
    });
    s.apply(
        &pod(
            "h",
            "byhand",
            "echo on-the-host > /data/f; sleep 3600 & wait",
        ),
        &[],
    );
    s.wait_ready("default", "h");
    wait_for(&s, "the file on the host", t, || {
        std::fs::read_to_string(dir.join("f")).is_ok_and(|c| c.trim() == "on-the-host")
    });

    // WaitForFirstConsumer: pending until a pod uses it, then provisioned on the pod's node.
    s.apply(&claim("late", Some("later")), &[]);
    wait_for(&s, "the WaitForFirstConsumer event", t, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=late",
        ])
        .contains("WaitForFirstConsumer")
    });
    assert_eq!(
        field(&s, &["get", "pvc", "late"], "{.status.phase}"),
        "Pending"
    );
    s.apply(
        &pod("l", "late", "echo late > /data/f; sleep 3600 & wait"),
        &[],
    );
    s.wait_ready("default", "l");
    let c = s.json(&["get", "pvc", "late"]);
    assert_eq!(c["status"]["phase"], "Bound", "{c}");
    let node = format!("node-{}", s.port);
    assert_eq!(
        c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    let pv = s.json(&["get", "pv", c["spec"]["volumeName"].as_str().unwrap()]);
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"][0],
        node.as_str()
    );

    // A pod whose claim does not exist waits, and says why.
    s.apply(&pod("orphan", "nope", "sleep 3600"), &[]);
    wait_for(&s, "FailedScheduling for a missing claim", t, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=orphan",
        ])
        .contains("persistentvolumeclaim \"nope\" not found")
    });
    assert_eq!(
        field(&s, &["get", "pod", "orphan"], "{.status.phase}"),
        "Pending"
    );
    // Once the claim exists, the pod runs.
    s.apply(&claim("nope", None), &[]);
    s.wait_ready("default", "orphan");

    // Clean up what the guard does not: claims (so their volumes go) and the hand-made volume.
    s.ok(&["delete", "pods", "--all", "--wait=true", "--timeout=60s"]);
    s.ok(&["delete", "pvc", "--all", "--wait=true", "--timeout=60s"]);
    wait_for(&s, "every provisioned volume removed", t, || {
        !volumes(&s)
            .lines()
            .any(|l| l.trim().starts_with("k8s-pvc-"))
    });
}
