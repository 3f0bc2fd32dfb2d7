//! Times on the command line: what the server accepts (unix seconds,
//! RFC 3339) plus relative forms `now`, `now-1h`, `now+5m` and `-30m`
//! (before now), all resolved client-side to milliseconds.

use crate::model::time::{civil_from_days, parse_duration, parse_time};

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses a time given at `now` (ms) into ms since the epoch.
pub fn parse(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    let rel = |d: &str| parse_duration(d).map_err(|e| format!("invalid time {s:?}: {e}"));
    if s == "now" {
        Ok(now)
    } else if let Some(d) = s.strip_prefix("now-") {
        Ok(now - rel(d)?)
    } else if let Some(d) = s.strip_prefix("now+") {
        Ok(now + rel(d)?)
    } else if let Some(d) = s
        .strip_prefix('-')
        .filter(|d| d.ends_with(|c: char| c.is_ascii_alphabetic()))
    {
        // `-30m`; a bare `-1.5` stays unix seconds, as the server reads it.
        Ok(now - rel(d)?)
    } else {
        parse_time(s).map_err(|e| format!("invalid time: {e}"))
    }
}

/// `ms` as the API's unix seconds with millisecond precision.
pub fn to_param(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// `ms` as RFC 3339 in UTC (`2022-02-10T16:07:52Z`, with `.337` when the
/// time has milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let frac = if milli == 0 {
        String::new()
    } else {
        format!(".{milli:03}")
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A default range-query step for `[start, end]`: at most ~250 points, at
/// least 1 s, in whole seconds.
pub fn default_step_ms(start: i64, end: i64) -> i64 {
    let per_point = (end - start).max(0) / 250;
    ((per_point + 999) / 1000).max(1) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn relative_and_absolute() {
        assert_eq!(parse("now", NOW), Ok(NOW));
        assert_eq!(parse("now-1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse("now+5m", NOW), Ok(NOW + 300_000));
        assert_eq!(parse("-30m", NOW), Ok(NOW - 1_800_000));
        assert_eq!(parse("-1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse("-1.5", NOW), Ok(-1500));
        assert_eq!(parse("1644509272.337", NOW), Ok(1_644_509_272_337));
        assert_eq!(
            parse("2022-02-10T16:07:52.337Z", NOW),
            Ok(1_644_509_272_337)
        );
        for bad in ["", "now-", "now-1x", "-x", "yesterday", "now-1h-1m"] {
            assert!(parse(bad, NOW).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(to_param(1_644_509_272_337), "1644509272.337");
        assert_eq!(to_param(-1500), "-1.500");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_644_509_272_337), "2022-02-10T16:07:52.337Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        for ms in [0, 1, 951_782_400_000, 1_644_509_272_337, -86_400_001] {
            assert_eq!(parse_time(&rfc3339(ms)), Ok(ms));
        }
    }

    #[test]
    fn steps() {
        assert_eq!(default_step_ms(0, 3_600_000), 15_000);
        assert_eq!(default_step_ms(0, 1000), 1000);
        assert_eq!(default_step_ms(0, 3_601_000), 15_000);
        assert_eq!(default_step_ms(0, 3_750_250), 16_000);
    }
}
