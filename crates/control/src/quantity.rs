//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5Gi`, `2`) as numbers.

/// A quantity in its base unit scaled by 1000 (CPU in millicores; bytes times 1000 are not
/// needed, so memory is parsed with [`bytes`]).
pub fn millis(q: &str) -> Option<i64> {
    let q = q.trim();
    value(q).map(|v| (v * 1000.0).ceil() as i64)
}

/// A quantity in whole units (bytes for memory), rounded up.
pub fn bytes(q: &str) -> Option<i64> {
    value(q).map(|v| v.ceil() as i64)
}

fn value(q: &str) -> Option<f64> {
    corral_api::quantity::parse(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(millis("500m"), Some(500));
        assert_eq!(millis("2"), Some(2000));
        assert_eq!(millis("0.5"), Some(500));
        assert_eq!(bytes("128Mi"), Some(128 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("x"), None);
    }
}
