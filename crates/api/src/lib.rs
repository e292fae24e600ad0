//! corral-api: the Kubernetes-compatible API server.
//!
//! Owns HTTPS with corral's own CA and bearer-token auth ([`pki`], [`http`]), discovery,
//! legacy and aggregated ([`resources`]), the OpenAPI listing ([`openapi`]), Kubernetes'
//! object semantics over the store ([`objects`], [`validate`]), list and watch with
//! selectors ([`selector`], [`watch`]), the four patch types ([`patch`], [`apply`]),
//! server-side tables ([`table`]), the workload kinds' and Services' own rules
//! ([`workloads`], [`batch`], [`autoscaling`], [`disruption`]: budgets and evictions,
//! [`services`]: defaults, checks, `/scale`, cluster IPs and node
//! ports; [`cron`]: CronJob schedules),
//! VMs declared as objects ([`virtualmachines`]: corral.dev/v1 VirtualMachine), quantities
//! ([`quantity`]), failures as `Status` objects ([`status`]) and the pod streams (log, exec, attach,
//! port-forward) handed to the node agent ([`streams`]), with kubectl's port-forward over
//! SPDY/3.1 ([`spdy`], [`portforward`]).
//!
//! Does not own the store's mechanics (corral-store), controllers or the scheduler
//! (corral-control), or running pods (corral-node).

#![warn(missing_docs)]

pub mod apply;
pub mod autoscaling;
pub mod batch;
pub mod cron;
pub mod disruption;
pub mod http;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod portforward;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod services;
pub mod spdy;
pub mod status;
pub mod streams;
pub mod table;
pub mod validate;
pub mod virtualmachines;
pub mod watch;
pub mod workloads;

use std::sync::Arc;

use serde_json::json;

/// The Kubernetes version this server speaks.
pub const KUBE_VERSION: &str = "v1.37.0";

/// `/version`.
pub fn version_info() -> serde_json::Value {
    json!({
        "major": "1", "minor": "37", "gitVersion": format!("{KUBE_VERSION}+corral-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-12-03T00:00:00Z",
        "goVersion": "", "compiler": "rustc", "platform": "linux/amd64",
        "emulationMajor": "1", "emulationMinor": "37", "minCompatibilityMajor": "1", "minCompatibilityMinor": "36",
    })
}

/// Serves HTTPS on `listener` until `shutdown` turns true.
pub async fn run(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    state: Arc<http::ApiState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let router = axum::Router::new().fallback(http::handle).with_state(state);
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let svc = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// Makes what a fresh cluster has: the namespaces `default`, `kube-system`, `kube-public`
/// and `kube-node-lease`, the RuntimeClasses `container` and `vm`, and the default
/// StorageClass `local` (corral named volumes). Existing objects are left as they are.
pub async fn bootstrap(objects: &objects::Objects) -> Result<(), status::ApiError> {
    let wo = objects::WriteOptions {
        field_manager: "corral".into(),
        ..Default::default()
    };
    let ns = resources::find("", "v1", "namespaces").expect("served");
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ignore_exists(
            objects
                .create(ns, None, &json!({"metadata": {"name": n}}), &wo)
                .await,
        )?;
    }
    let rc = resources::find("node.k8s.io", "v1", "runtimeclasses").expect("served");
    for (name, handler) in [("container", "corral"), ("vm", "corral-vm")] {
        ignore_exists(
            objects
                .create(
                    rc,
                    None,
                    &json!({"metadata": {"name": name}, "handler": handler}),
                    &wo,
                )
                .await,
        )?;
    }
    let sc = resources::find("storage.k8s.io", "v1", "storageclasses").expect("served");
    let local = json!({
        "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "corral.dev/volume", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    });
    ignore_exists(objects.create(sc, None, &local, &wo).await)?;
    Ok(())
}

fn ignore_exists<T>(r: Result<T, status::ApiError>) -> Result<(), status::ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
