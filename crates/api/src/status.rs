//! Failures as Kubernetes reports them: a `Status` object with the HTTP code, reason and
//! message clients print (`Error from server (NotFound): pods "web" not found`).

use serde_json::{json, Value};

/// A failed request: what the client gets back.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// Kubernetes' reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid` ...).
    pub reason: &'static str,
    /// The message the client prints.
    pub message: String,
    /// `details` of the Status (name, group, kind, causes), if any.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", msg)
    }

    /// 404 for an object: `pods "web" not found`.
    pub fn not_found(qualified: &str, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"));
        e.details = Some(details(qualified, name));
        e
    }

    /// 404 for a path no resource serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405.
    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", msg)
    }

    /// 409 for a create of a name that exists.
    pub fn already_exists(qualified: &str, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        );
        e.details = Some(details(qualified, name));
        e
    }

    /// 409 for a write with a stale resourceVersion.
    pub fn conflict(qualified: &str, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
        );
        e.details = Some(details(qualified, name));
        e
    }

    /// 410: the resourceVersion asked for is compacted.
    pub fn gone(msg: impl Into<String>) -> Self {
        Self::new(410, "Expired", msg)
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 429: the request would break a limit (a disruption budget); the client retries.
    pub fn too_many_requests(msg: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", msg)
    }

    /// The same error with `details.causes` of (reason, message) pairs.
    pub fn with_causes(mut self, causes: Vec<(String, String)>) -> Self {
        let causes: Vec<Value> = causes
            .iter()
            .map(|(r, m)| json!({"reason": r, "message": m}))
            .collect();
        self.details = Some(json!({"causes": causes}));
        self
    }

    /// 415.
    pub fn unsupported_media(msg: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", msg)
    }

    /// 422: the object is invalid; `causes` are (field, message) pairs.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {}", text.join(", ")),
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
            .collect();
        e.details = Some(json!({"name": name, "kind": kind, "causes": causes}));
        e
    }

    /// 409 for a server-side apply that conflicts with another manager's fields.
    pub fn apply_conflict(msg: impl Into<String>) -> Self {
        Self::new(409, "Conflict", msg)
    }

    /// The same error with another message.
    pub fn with_message(mut self, msg: impl Into<String>) -> Self {
        self.message = msg.into();
        self
    }

    /// 500.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, "InternalError", msg)
    }

    /// 504.
    pub fn timeout(msg: impl Into<String>) -> Self {
        Self::new(504, "Timeout", msg)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn details(qualified: &str, name: &str) -> Value {
    let (kind, group) = qualified.split_once('.').unwrap_or((qualified, ""));
    let mut d = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl From<corral_store::StoreError> for ApiError {
    fn from(e: corral_store::StoreError) -> Self {
        use corral_store::StoreError as S;
        match e {
            S::Compacted { requested, compacted } => ApiError::gone(format!(
                "The resourceVersion for the provided watch is too old: {requested} (oldest held: {})",
                compacted + 1
            )),
            S::FutureRevision { requested, current } => ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A `Status` of success (what a delete of a deleted object returns, for instance).
pub fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}
