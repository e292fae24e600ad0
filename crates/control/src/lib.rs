//! corral-control: controllers and the scheduler, reconcile loops over the store.
//!
//! Owns the scheduler ([`scheduler`]: filter, score, bind), the namespace controller
//! ([`namespaces`]: deleting a namespace empties it; a `default` ServiceAccount in each) and
//! the garbage collector ([`gc`]: ownerReferences with background, foreground and orphan
//! propagation), and the volume controller ([`volumes`]: claims bound to volumes, corral
//! named volumes provisioned for them, released volumes reclaimed; [`claims`] is what the
//! scheduler asks of a pod's claims), and the workload controllers ([`replicasets`]: a
//! ReplicaSet's pods; [`deployments`]: a Deployment's ReplicaSets and its rollouts; [`jobs`]:
//! a Job's pods run to completion; [`cronjobs`]: Jobs made on a schedule; [`statefulsets`]:
//! pods with stable names and their own claims; [`daemonsets`]: a pod on each node;
//! [`revisions`]: the template history of both, as ControllerRevisions; [`hpa`]:
//! replicas that follow CPU and memory use; [`disruption`]: what disruption budgets allow), and
//! the endpoints controller ([`endpoints`]: the Endpoints and EndpointSlices of Services) and the
//! service load balancer ([`loadbalancers`]: LoadBalancer Services on the nodes' addresses),
//! and the placement of VirtualMachines ([`virtualmachines`]: a node with room for each). They
//! read and write the store directly ([`kv`]), as the API server does.
//! Does not own the API (corral-api) or running pods (corral-node).

#![warn(missing_docs)]

pub mod claims;
pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod hpa;
pub mod jobs;
pub mod kv;
pub mod loadbalancers;
pub mod namespaces;
pub mod quantity;
pub mod replicasets;
pub mod revisions;
pub mod scheduler;
pub mod statefulsets;
pub mod virtualmachines;
pub mod volumes;
