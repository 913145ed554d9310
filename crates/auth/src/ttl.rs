//! Parsing token lifetimes such as `10m` for the CLI's `--ttl`.

use std::time::Duration;

/// Parses a token lifetime: a whole number followed by a unit `ms`, `s`, `m`, `h` or `d`
/// (case-insensitive); a bare number means seconds. Zero is refused.
///
/// ```
/// use std::time::Duration;
/// use portcullis_auth::parse_ttl;
///
/// assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
/// assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_ttl("500ms"), Ok(Duration::from_millis(500)));
/// assert!(parse_ttl("ten minutes").is_err());
/// ```
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| invalid(s))?;
    let duration = scaled(value, &unit.to_ascii_lowercase()).ok_or_else(|| invalid(s))?;
    if duration.is_zero() {
        return Err("TTL must be greater than zero".to_owned());
    }
    Ok(duration)
}

fn scaled(value: u64, unit: &str) -> Option<Duration> {
    let seconds_per_unit = match unit {
        "ms" => return Some(Duration::from_millis(value)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    value.checked_mul(seconds_per_unit).map(Duration::from_secs)
}

fn invalid(input: &str) -> String {
    let shown: String = input.chars().take(32).collect();
    format!(
        "invalid TTL '{shown}': use a whole number followed by ms, s, m, h or d (for example 90s, 10m, 1h, 2d); a bare number means seconds"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl(" 5M "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "m",
            "-5m",
            "1.5h",
            "10x",
            "10 m",
            "99999999999999999999d",
            "1h30m",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse_ttl("0"),
            Err("TTL must be greater than zero".to_owned())
        );
        assert!(parse_ttl(&format!("{}d", u64::MAX / 86_400 + 1)).is_err());
    }
}
