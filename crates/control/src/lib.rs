//! corral-control: controllers and the scheduler, reconcile loops over the store.
//!
//! Owns the scheduler (filter and score, bind) and the controllers that keep declared state
//! true (namespaces, service accounts, garbage collection). Does not own the API (corral-api)
//! or running pods (corral-node).

#![warn(missing_docs)]
