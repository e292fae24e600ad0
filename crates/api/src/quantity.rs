//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5Gi`, `2e3`) as numbers: the one
//! parser the API's checks, the controllers and the node agent share.
//!
//! Quantities are read into `f64`: exact for every memory size below 8 PiB and for CPU to the
//! milli-core, which is all corral's limits can express.

/// A quantity's value in base units (cores, bytes): `"500m"` is 0.5, `"128Mi"` 134217728,
/// `"1e3"` 1000. `None` for anything else.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    if num.is_empty() || num == "+" || num == "-" {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    let v = n * mult;
    v.is_finite().then_some(v)
}

/// Whole units of a quantity (bytes of a memory size), rounded up: `"1Gi"` is 1073741824.
pub fn whole(s: &str) -> Option<u64> {
    parse(s).map(|b| (b - 1e-9).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(whole("128Mi"), Some(128 << 20));
        assert_eq!(whole("1G"), Some(1_000_000_000));
        assert_eq!(whole("1e3"), Some(1000));
        assert_eq!(whole("1.5Gi"), Some(3 << 29));
        for bad in ["x", "", "-", "1Zi", "1e", "Mi"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
