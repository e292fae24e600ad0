//! Progress reports from long operations (pull, push), drawn by the caller: the library
//! knows nothing of terminals.

/// Receives progress of the transfers of one operation, each named by a short id.
pub trait Progress: Send + Sync {
    /// A transfer starts; `total` bytes when known.
    fn begin(&self, id: &str, label: &str, total: Option<u64>);
    /// `n` more bytes moved (or the position jumped ahead on a resume).
    fn advance(&self, id: &str, n: u64);
    /// The transfer ended with a short status ("done", "exists", "resumed" ...).
    fn end(&self, id: &str, status: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: &str, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn end(&self, _: &str, _: &str) {}
}
