//! corral-node: the node agent (kubelet's job, through the engine).
//!
//! Owns running the pods bound to this node: each pod an engine pod, its containers engine
//! containers; status written back to the store; the Node object and its Lease. Does not own
//! the API (corral-api), scheduling (corral-control) or the runtime (corral-engine and below).

#![warn(missing_docs)]
