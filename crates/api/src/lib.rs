//! corral-api: the Kubernetes-compatible API server.
//!
//! Owns HTTPS with corral's own CA and bearer-token auth, discovery (legacy and aggregated),
//! the OpenAPI listing, CRUD over the store with Kubernetes' object semantics, list and watch
//! with selectors, the four patch types, server-side tables, and the pod streams (log, exec,
//! attach, port-forward) handed to the node agent. Does not own the store's mechanics
//! (corral-store), controllers or the scheduler (corral-control), or running pods
//! (corral-node).

#![warn(missing_docs)]

pub mod patch;
pub mod selector;
