//! CronJob schedules: the standard five-field cron syntax Kubernetes accepts (minute, hour,
//! day of month, month, day of week), in UTC.
//!
//! Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n` or `a/n` (from `a` to
//! the field's end), or a comma-separated list of those; months and week days also take
//! their three-letter English names (`jan`, `mon`), `?` means `*` in the day fields, and 7 is
//! Sunday as well as 0. The macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily`
//! (`@midnight`) and `@hourly` stand for their usual expansions. When both day fields are
//! restricted a day matches either (cron's rule); otherwise it must match both.

use std::fmt;
use std::str::FromStr;

use corral_store::meta::{civil_from_days, days_from_civil};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_star: bool,
    weekdays_star: bool,
}

/// A schedule that does not parse: what is wrong, for the API's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's bits, values `lo..=hi` (`names[i]` is `lo + i`).
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, ScheduleError> {
    let bad = |why: &str| ScheduleError(format!("{what} field {text:?}: {why}"));
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| bad(&format!("{s:?} is not a number")))?;
        if v < lo || v > hi {
            return Err(bad(&format!("{v} is outside {lo}-{hi}")));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(&format!("step {s:?} is not a positive number")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/n` runs from a to the end of the field.
                None if step > 1 || part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(bad(&format!("range {a}-{b} runs backwards")));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        let s = s.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(ScheduleError(format!(
                    "unknown macro {m:?} (@yearly, @monthly, @weekly, @daily, @hourly)"
                )))
            }
            other => other,
        };
        if expanded.starts_with("TZ=") || expanded.starts_with("CRON_TZ=") {
            return Err(ScheduleError(
                "a time zone in the schedule is not allowed: use spec.timeZone".into(),
            ));
        }
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(ScheduleError(format!(
                "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {}: {s:?}",
                f.len()
            )));
        }
        let star = |t: &str| t == "*" || t == "?";
        let mut weekdays = field(f[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Schedule {
            minutes: field(f[0], "minute", 0, 59, &[])?,
            hours: field(f[1], "hour", 0, 23, &[])? as u32,
            days: field(f[2], "day-of-month", 1, 31, &[])? as u32,
            months: field(f[3], "month", 1, 12, &MONTHS)? as u16,
            weekdays: weekdays as u8,
            days_star: star(f[2]),
            weekdays_star: star(f[4]),
        })
    }
}

impl Schedule {
    fn day_matches(&self, days: i64) -> bool {
        let (_, _, d) = civil_from_days(days);
        // 1970-01-01 was a Thursday.
        let wd = (days + 4).rem_euclid(7);
        let dom = self.days & (1 << d) != 0;
        let dow = self.weekdays & (1 << wd) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time (seconds since the epoch, a whole minute) after `t`, if one
    /// comes within five years.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let mut t = (t.div_euclid(60) + 1) * 60;
        let limit = t + 5 * 366 * 86_400;
        while t < limit {
            let days = t.div_euclid(86_400);
            let (y, m, _) = civil_from_days(days);
            if self.months & (1 << m) == 0 {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                t = days_from_civil(ny, nm, 1) * 86_400;
                continue;
            }
            if !self.day_matches(days) {
                t = (days + 1) * 86_400;
                continue;
            }
            let rem = t.rem_euclid(86_400);
            let (h, mi) = (rem / 3600, rem % 3600 / 60);
            if self.hours & (1 << h) == 0 {
                t = days * 86_400 + (h + 1) * 3600;
                continue;
            }
            if self.minutes & (1 << mi) == 0 {
                t += 60;
                continue;
            }
            return Some(t);
        }
        None
    }

    /// The latest scheduled time in `(after, now]`, and how many there were.
    pub fn latest_between(&self, after: i64, now: i64) -> (Option<i64>, usize) {
        let (mut last, mut n) = (None, 0);
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            last = Some(next);
            n += 1;
            t = next;
        }
        (last, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_store::meta::parse_rfc3339;

    fn at(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn next(sched: &str, from: &str) -> String {
        let s: Schedule = sched.parse().unwrap();
        corral_store::meta::rfc3339(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(s.next_after(at(from)).unwrap() as u64),
        )
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("* * * * *", "2026-12-03T10:00:30Z"),
            "2026-12-03T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-03T10:01:00Z"),
            "2026-12-03T10:15:00Z"
        );
        assert_eq!(
            next("0 0 * * *", "2026-12-03T10:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-12-03T10:00:00Z"),
            "2026-12-03T11:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-12-03T10:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        // 2026-12-03 is a Thursday.
        assert_eq!(
            next("30 9 * * mon-fri", "2026-12-04T10:00:00Z"),
            "2026-12-07T09:30:00Z"
        );
        assert_eq!(
            next("0 12 * * 7", "2026-12-03T10:00:00Z"),
            "2026-12-06T12:00:00Z"
        );
        assert_eq!(
            next("0 0 29 feb *", "2026-12-03T10:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        // Both day fields restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * fri", "2026-12-03T10:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-12-03T10:06:00Z"),
            "2026-12-03T10:25:00Z"
        );
        assert_eq!(
            next("0 8-10/2 * * *", "2026-12-03T08:00:00Z"),
            "2026-12-03T10:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (s, want) in [
            ("* * * *", "exactly 5 fields"),
            ("60 * * * *", "minute field \"60\": 60 is outside 0-59"),
            ("* * 0 * *", "day-of-month"),
            ("* * * foo *", "\"foo\" is not a number"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "runs backwards"),
            ("@every 5m", "unknown macro"),
            ("TZ=UTC * * * * *", "spec.timeZone"),
        ] {
            let e = s.parse::<Schedule>().unwrap_err().0;
            assert!(e.contains(want), "{s}: {e}");
        }
        assert!("0 0 31 2 *"
            .parse::<Schedule>()
            .unwrap()
            .next_after(0)
            .is_none());
    }

    #[test]
    fn latest_between_counts_missed_times() {
        let s: Schedule = "*/10 * * * *".parse().unwrap();
        let (last, n) = s.latest_between(at("2026-12-03T10:00:00Z"), at("2026-12-03T10:35:00Z"));
        assert_eq!(last, Some(at("2026-12-03T10:30:00Z")));
        assert_eq!(n, 3);
        assert_eq!(
            s.latest_between(at("2026-12-03T10:30:00Z"), at("2026-12-03T10:35:00Z")),
            (None, 0)
        );
    }
}
