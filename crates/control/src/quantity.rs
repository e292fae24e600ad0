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

/// A quantity as a number of units.
fn value(q: &str) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
        ("u", 1e-6),
        ("n", 1e-9),
    ];
    for (s, mul) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v * mul);
        }
    }
    if let Some((m, e)) = q.split_once(['e', 'E']) {
        let (m, e) = (m.parse::<f64>().ok()?, e.parse::<i32>().ok()?);
        return Some(m * 10f64.powi(e));
    }
    q.parse::<f64>().ok().filter(|v| v.is_finite())
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
