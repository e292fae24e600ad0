//! Times and ids in the shapes Kubernetes objects carry them: `Time` (RFC 3339 UTC to the
//! second, `2026-12-03T08:00:00Z`), `MicroTime` (`2026-12-03T08:00:00.000000Z`), the engine's
//! RFC 3339 nanosecond stamps read back, and random UUIDs (version 4) for `metadata.uid`.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) use corral_store::meta::{now, uid as uuid};

/// Now as a Kubernetes `MicroTime` string.
pub(crate) fn now_micro() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// `t` as the typed `Time` (whole seconds: what its JSON form keeps).
pub(crate) fn k8s_time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let ts = k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

/// Reads an RFC 3339 stamp (the engine's, with nanoseconds, or a Kubernetes one).
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), uuid());
    }

    #[test]
    fn times_have_kubernetes_shapes() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_284_800);
        assert_eq!(corral_store::meta::rfc3339(t), "2026-12-03T08:00:00Z");
        assert_eq!(now_micro().len(), "2026-12-03T08:00:00.000000Z".len());
        let engine = "2026-12-03T08:00:00.123456789Z";
        assert_eq!(
            parse(engine).unwrap(),
            t + Duration::from_nanos(123_456_789)
        );
        assert_eq!(parse("2026-12-03T08:00:00Z").unwrap(), t);
        assert_eq!(
            serde_json::to_value(k8s_time(t)).unwrap(),
            "2026-12-03T08:00:00Z"
        );
        assert_eq!(random_hex(8).len(), 16);
    }
}
