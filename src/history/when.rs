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
    let v: f64 = raw.parse().map_err(|_| bad())?;
    if !v.is_finite() {
        return Err(bad());
    }
    if raw.starts_with('-') {
        return back_from(now, -v).ok_or_else(bad);
    }
    if v >= UNIX_TIME_FROM && v < 1e11 {
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(v));
    }
    Err(bad())
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
        for bad in ["30", "", "x", "NaN", "-inf", "inf", "-1e12", "1e300", "- 3"] {
            assert!(parse_moment(bad, now).is_err(), "{bad}");
        }
        for bad in ["-1", "x", "1e9", "NaN"] {
            assert!(parse_ago(bad, now).is_err(), "{bad}");
        }
    }
}
