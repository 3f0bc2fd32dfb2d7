//! Time and duration parsing as Prometheus does it: the API's `start`,
//! `end`, `time` and `step`, the CLI's times, and durations in the
//! configuration.

/// Parses a time as Prometheus does: unix seconds with an optional fraction
/// (`1644509272.337`, `-1.5`), or RFC 3339 (`2022-02-10T16:07:52.337Z`,
/// `2022-02-10T17:07:52+01:00`). Returns milliseconds since the epoch
/// (sub-millisecond digits are rounded).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.0e15 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    parse_rfc3339(s).ok_or_else(err)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → ms.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds, rounded on the fourth digit.
        let digits = &s[start..i];
        let mut ms = 0i64;
        for (k, c) in digits.bytes().take(4).enumerate() {
            let d = i64::from(c - b'0');
            match k {
                0 => ms += d * 100,
                1 => ms += d * 10,
                2 => ms += d,
                _ => ms += i64::from(d >= 5),
            }
        }
        frac_ms = ms;
    }
    let offset_s = match &s[i..] {
        "Z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            if tz.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if tz.starts_with('-') {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + frac_ms)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats ms since the epoch as RFC 3339 in UTC with milliseconds
/// (`2022-02-10T16:07:52.337Z`); the inverse of [`parse_time`] for times in
/// years 0..=9999.
pub fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// The proleptic Gregorian date `(year, month, day)` of a day number (days
/// since 1970-01-01; the inverse of `days_from_civil`, H. Hinnant's
/// algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats a duration in ms (`15d`, `1h30m`, `500ms`; `0s` for zero), the
/// largest units first and no weeks; the inverse of
/// [`parse_duration`] for non-negative durations.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    for (unit, size) in [
        ("y", 365 * 86_400_000u64),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Parses a duration as Prometheus does for `step`: float seconds (`15`,
/// `0.5`) or a Prometheus duration (`15s`, `1m`, `1h30m`, `500ms`; units
/// `ms s m h d w y`, largest first). Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid duration");
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.0e15 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    if s.is_empty() {
        return Err(err());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        // "ms" before "m"/"s" so that "5ms" is not read as minutes.
        let unit = ["ms", "y", "w", "d", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(err)?;
        rest = &rest[unit.len()..];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(err)?;
        if last_unit != usize::MAX && idx <= last_unit {
            return Err(err());
        }
        last_unit = idx;
        let ms = n.checked_mul(UNITS[idx].1).ok_or_else(err)?;
        total = total.checked_add(ms).ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_time_and_duration_invert_the_parsers() {
        for ms in [
            0,
            1_644_509_272_337,
            -86_400_001,
            951_782_400_000,
            4_102_444_800_000,
            253_402_300_799_999,
        ] {
            let s = format_time(ms);
            assert_eq!(parse_time(&s), Ok(ms), "{s}");
        }
        assert_eq!(format_time(1_644_509_272_337), "2022-02-10T16:07:52.337Z");
        for ms in [
            1,
            500,
            1000,
            600_000,
            5_400_000,
            1_296_000_000,
            31_536_000_001,
        ] {
            let s = format_duration(ms);
            assert_eq!(parse_duration(&s), Ok(ms), "{s}");
        }
        assert_eq!(format_duration(1_296_000_000), "15d");
        assert_eq!(format_duration(600_000), "10m");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1644509272"), Ok(1_644_509_272_000));
        assert_eq!(parse_time("1644509272.337"), Ok(1_644_509_272_337));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2022-02-10T16:07:52.337Z"),
            Ok(1_644_509_272_337)
        );
        assert_eq!(
            parse_time("2022-02-10T17:07:52.337+01:00"),
            Ok(1_644_509_272_337)
        );
        assert_eq!(
            parse_time("2022-02-10T16:07:52.337123456Z"),
            Ok(1_644_509_272_337)
        );
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        for bad in [
            "",
            "abc",
            "NaN",
            "inf",
            "2022-02-10",
            "2022-02-10T16:07:52",
            "2022-13-10T16:07:52Z",
            "2021-02-29T00:00:00Z",
            "2022-02-10T25:07:52Z",
            "2022-02-10T16:07:52.Z",
            "2022-02-10T16:07:52+0100",
            "1e300",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("15s"), Ok(15_000));
        assert_eq!(parse_duration("1m"), Ok(60_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        for bad in ["", "s", "1x", "1m1h", "1s1s", "-5s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
