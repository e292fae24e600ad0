//! What every writer of objects (the API server, the controllers, the node agents) stamps
//! them with, in the shapes Kubernetes uses: times (`Time`, RFC 3339 in UTC to the second),
//! uids (random UUIDs, version 4) and status conditions.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Now as Kubernetes writes a `Time` (`2026-12-03T08:00:00Z`).
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time (`...Z`; fractions ignored).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 20 {
        return None;
    }
    let n = |a: usize, z: usize| s.get(a..z)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(5, 7)?,
        n(8, 10)?,
        n(11, 13)?,
        n(14, 16)?,
        n(17, 19)?,
    );
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// The civil date (year, month 1-12, day 1-31) of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The day number (days since 1970-01-01) of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A random UUID (version 4) in its usual text form.
pub fn uid() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No /dev/urandom: the clock and the pid, which still differ between objects.
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ (u128::from(std::process::id()) << 64);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Sets a condition of `status.conditions` by type; the transition time stays when the
/// status does.
pub fn set_condition(
    v: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    if !v["status"].is_object() {
        v["status"] = json!({});
    }
    let conds = v["status"]
        .as_object_mut()
        .expect("status is an object")
        .entry("conditions")
        .or_insert(json!([]));
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    let mut c =
        json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    match list.iter_mut().find(|x| x["type"] == ty) {
        Some(x) => {
            if x["status"] == status {
                c["lastTransitionTime"] = x["lastTransitionTime"].clone();
            }
            *x = c;
        }
        None => list.push(c),
    }
}

/// FNV-1a (32 bits) of `bytes`: a short, stable token for names (not for security).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_uids_and_conditions() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(rfc3339(t), "2001-09-09T01:46:40Z");
        assert_eq!(parse_rfc3339("2001-09-09T01:46:40Z"), Some(1_000_000_000));
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        let u = uid();
        assert_eq!((u.len(), &u[14..15]), (36, "4"));
        let mut v = json!({});
        set_condition(&mut v, "Ready", "True", None, None);
        set_condition(&mut v, "Ready", "False", Some("X"), Some("y"));
        assert_eq!(v["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(v["status"]["conditions"][0]["reason"], "X");
    }
}
