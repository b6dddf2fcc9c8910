//! Durations and times as the command lines and the catalog write them, and the one source of
//! randomness.

/// Splits a duration such as `1h30m` or `2w3d` into its terms, `[(1, 'h'), (30, 'm')]`: each a
/// number and one unit letter. None if the text is empty, a number lacks its letter, or a
/// number does not fit. The callers give the letters their meaning.
pub fn unit_terms(s: &str) -> Option<Vec<(u64, char)>> {
    let mut terms = Vec::new();
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            terms.push((num.parse().ok()?, c));
            num.clear();
        }
    }
    (num.is_empty() && !terms.is_empty()).then_some(terms)
}

/// `2026-11-21T21:50:00Z`: RFC 3339 in UTC to the second, as `aws s3api` prints times and
/// the manifest and catalog store them.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 3339 in UTC with microseconds (`2026-12-01T10:00:05.123456Z`), for a time compared
/// with a recovery target, which has them.
pub fn rfc3339_micros(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fills `buf` from the operating system's random source (through OpenSSL, which weir links
/// anyway): archive ids, run keys, retry jitter. The one source of randomness in weir.
pub fn random_bytes(buf: &mut [u8]) {
    openssl::rand::rand_bytes(buf).expect("the system's random source works");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_micros_keeps_the_fraction() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_583_205_123_456);
        assert_eq!(rfc3339_micros(t), "2025-12-01T10:00:05.123456Z");
    }

    #[test]
    fn rfc3339_known_dates() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
