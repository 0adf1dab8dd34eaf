//! Moments in a query: `now`, `-30` (seconds before now), or a Unix time
//! (`1764669600`, `1764669600.25`), as `?at=`, `?from=` and `?to=` take
//! them; and `?ago=SECONDS`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Numbers at least this large are Unix times (2001 onwards); smaller
/// positive numbers are refused, since `from=30` is more likely a
/// forgotten minus sign than a moment in 1970.
const UNIX_TIME_FROM: f64 = 1_000_000_000.0;

/// Longest look back a query may ask for (a day).
const MAX_BACK: f64 = 86_400.0;

/// `raw` as a moment, with `now` for relative ones.
pub fn parse_moment(raw: &str, now: SystemTime) -> Result<SystemTime, String> {
    let raw = raw.trim();
    if raw == "now" {
        return Ok(now);
    }
    let bad = || {
        format!(
            "'{}' is not a moment: use now, -SECONDS (before now) or a Unix time",
            raw.escape_debug()
        )
    };
    if let Some(back) = raw.strip_prefix('-') {
        let v: f64 = back.parse().map_err(|_| bad())?;
        return back_from(now, v).ok_or_else(bad);
    }
    unix_time(raw).ok_or_else(bad)
}

/// A Unix time written as `SECONDS[.FRACTION]`, read exactly (not through
/// a float), so that an `X-Timestamp` value names exactly its frame.
fn unix_time(raw: &str) -> Option<SystemTime> {
    let (secs, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 11 || !all_digits(secs) || !all_digits(fraction) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    if (secs as f64) < UNIX_TIME_FROM {
        return None;
    }
    // Nanoseconds: the first nine digits of the fraction.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `?ago=SECONDS`: that long before `now`.
pub fn parse_ago(raw: &str, now: SystemTime) -> Result<SystemTime, String> {
    let bad = || {
        format!(
            "'{}' is not a number of seconds from 0 to {MAX_BACK}",
            raw.escape_debug()
        )
    };
    let v: f64 = raw.trim().parse().map_err(|_| bad())?;
    back_from(now, v).ok_or_else(bad)
}

fn back_from(now: SystemTime, secs: f64) -> Option<SystemTime> {
    if !(0.0..=MAX_BACK).contains(&secs) {
        return None;
    }
    now.checked_sub(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_669_600);
        assert_eq!(parse_moment("now", now), Ok(now));
        assert_eq!(parse_moment("-30", now), Ok(now - Duration::from_secs(30)));
        assert_eq!(
            parse_moment("1764669500.5", now),
            Ok(UNIX_EPOCH + Duration::from_millis(1_764_669_500_500))
        );
        assert_eq!(parse_ago("2.5", now), Ok(now - Duration::from_millis(2500)));
        assert_eq!(
            parse_moment("1764669500.000001", now),
            Ok(UNIX_EPOCH + Duration::new(1_764_669_500, 1000))
        );
        for bad in [
            "30",
            "",
            "x",
            "NaN",
            "-inf",
            "inf",
            "-1e12",
            "1e300",
            "- 3",
            "-NaN",
            "1.5e9",
            "+1764669500",
            "1764669500.x",
            ".5",
            "99999999999999",
        ] {
            assert!(parse_moment(bad, now).is_err(), "{bad}");
        }
        for bad in ["-1", "x", "1e9", "NaN"] {
            assert!(parse_ago(bad, now).is_err(), "{bad}");
        }
    }
}
