//! Wall-clock formatting without a date library: the test pattern's time
//! stamp and the HTTP `Date` header.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn utc_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = utc_fields(d.as_secs());
    format!(
        "{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{s:02}.{:03} UTC",
        d.subsec_millis()
    )
}

/// `YYYY-MM-DDTHH-MM-SS` (UTC), for file names: no `:`, which some file
/// systems and download managers refuse.
pub fn file_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (y, mo, da, h, mi, s) = utc_fields(secs);
    format!("{y:04}-{mo:02}-{da:02}T{h:02}-{mi:02}-{s:02}")
}

/// Year, month, day, hour, minute and second (UTC) of a Unix time.
fn utc_fields(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, mo, da) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, mo, da, s / 3600, s / 60 % 60, s % 60)
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic
/// Gregorian calendar (the well-known "civil from days" conversion).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let (y, mo, d) = civil_from_days(days as i64);
    let s = secs % 86_400;
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(mo as usize).saturating_sub(1) % 12],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(utc_time(t), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(file_time(t), "2023-11-14T22-13-20");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }
}
