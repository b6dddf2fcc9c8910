//! The constants of conditions (`equals`, `not_equals`, `in`), compared as values of the
//! column's type, not as text (issue 13): `equals = true` matches a boolean's `t`, `equals = 0`
//! matches `0.00` in a numeric column, `"2020-5-7"` matches the date `2020-05-07`. A constant
//! that no value of the type can equal is a rule error, never a condition that silently never
//! holds.

use super::types::Ty;
use anyhow::{Result, anyhow, bail};

/// How a column's value is brought to the form its constants were compiled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canon {
    /// PostgreSQL's output is already canonical (text, integers, booleans, dates, ...).
    Raw,
    /// numeric: `1.50` and `1.5` are one value.
    Decimal,
    /// real, double precision: compared as the floats they are (`1e2` is `100`).
    Float,
    /// timestamps: one instant written one way (with a zone: in UTC).
    Timestamp,
}

impl Canon {
    pub fn of(ty: &Ty) -> Canon {
        match ty {
            Ty::Numeric { .. } => Canon::Decimal,
            Ty::Float => Canon::Float,
            Ty::Timestamp { .. } => Canon::Timestamp,
            _ => Canon::Raw,
        }
    }

    /// A column value in comparable form; `None` when it cannot be brought to it (then it
    /// equals no constant).
    pub fn apply<'a>(self, v: &'a [u8]) -> Option<std::borrow::Cow<'a, [u8]>> {
        match self {
            Canon::Raw => Some(std::borrow::Cow::Borrowed(v)),
            Canon::Decimal => {
                let s = std::str::from_utf8(v).ok()?;
                decimal(s).map(|d| std::borrow::Cow::Owned(d.into_bytes()))
            }
            Canon::Float => {
                let f: f64 = std::str::from_utf8(v).ok()?.parse().ok()?;
                Some(std::borrow::Cow::Owned(float(f).into_bytes()))
            }
            // What chrono cannot read (infinity, BC, years past 9999) is compared as written.
            Canon::Timestamp => {
                let s = std::str::from_utf8(v).ok()?;
                match timestamp(s) {
                    Some((dt, off)) => Some(std::borrow::Cow::Owned(instant(dt, off).into_bytes())),
                    None => Some(std::borrow::Cow::Borrowed(v)),
                }
            }
        }
    }
}

/// The constant as the column's canonical value, or why no value of the type equals it.
pub fn compile(v: &toml::Value, ty: &Ty, column: &str) -> Result<Vec<u8>> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let refuse = |what: &str| {
        anyhow!("condition on {column}: {text} is not {what}, so no value of the column equals it")
    };
    Ok(match ty {
        Ty::Bool => match text.to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => b"t".to_vec(),
            "f" | "false" | "no" | "off" | "0" => b"f".to_vec(),
            _ => return Err(refuse("a boolean")),
        },
        Ty::Int { bits } => {
            let n: i64 = text.trim().parse().map_err(|_| refuse("an integer"))?;
            let lim = 1i128 << (bits - 1);
            if (n as i128) < -lim || (n as i128) >= lim {
                bail!(
                    "condition on {column}: {n} is out of range for a {bits}-bit integer, so no value of the column equals it"
                );
            }
            n.to_string().into_bytes()
        }
        Ty::Numeric { scale, precision } => {
            let d = decimal(text.trim()).ok_or_else(|| refuse("a number"))?;
            let decimals = d.split_once('.').map_or(0, |(_, f)| f.len());
            if precision.is_some() && decimals > *scale as usize {
                bail!(
                    "condition on {column}: {text} has more decimals than numeric's scale {scale}, so no value of the column equals it"
                );
            }
            d.into_bytes()
        }
        Ty::Float => {
            let f: f64 = text.trim().parse().map_err(|_| refuse("a number"))?;
            float(f).into_bytes()
        }
        Ty::Date => {
            let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| refuse("a date (YYYY-MM-DD)"))?;
            d.format("%Y-%m-%d").to_string().into_bytes()
        }
        Ty::Enum(labels) => {
            if !labels.contains(&text) {
                return Err(refuse(&format!(
                    "a label of the enum ({})",
                    labels.join(", ")
                )));
            }
            text.into_bytes()
        }
        Ty::Timestamp { tz } => {
            let t = text.trim();
            if t == "infinity" || t == "-infinity" {
                return Ok(t.as_bytes().to_vec());
            }
            let (dt, off) =
                timestamp(t).ok_or_else(|| refuse("a timestamp (YYYY-MM-DD HH:MM:SS)"))?;
            match (tz, off) {
                (true, None) => bail!(
                    "condition on {column}: {text} has no time zone, and the column holds instants; give one (2024-05-01 10:00:00+00)"
                ),
                (false, Some(_)) => bail!(
                    "condition on {column}: {text} has a time zone, and the column holds times without one; leave it out"
                ),
                _ => instant(dt, off).into_bytes(),
            }
        }
        _ => text.into_bytes(),
    })
}

/// How values of a type are put in order by `gt`, `gte`, `lt` and `lte` (pg_flo's typed
/// comparisons), once brought to their canonical form ([`Canon`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Order {
    Int,
    Decimal,
    Float,
    /// Byte order of the canonical text: text (as the C collation sorts it), ISO dates,
    /// timestamps (instants in UTC), times, uuids, booleans (`f` before `t`).
    Bytes,
    /// An enum's labels in their sort order, as PostgreSQL orders them.
    Labels(Vec<String>),
}

impl Order {
    /// How `ty` is ordered, or `None` for types without an order weir knows (intervals,
    /// arrays, json, network types and the rest).
    pub fn of(ty: &Ty) -> Option<Order> {
        Some(match ty {
            Ty::Int { .. } => Order::Int,
            Ty::Numeric { .. } => Order::Decimal,
            Ty::Float => Order::Float,
            Ty::Text { .. } | Ty::Date | Ty::Timestamp { .. } | Ty::Time | Ty::Uuid | Ty::Bool => {
                Order::Bytes
            }
            Ty::Enum(labels) => Order::Labels(labels.clone()),
            _ => return None,
        })
    }

    /// Compares two canonical values; `None` when one cannot be read as the type (then no
    /// comparison holds).
    pub fn cmp(&self, a: &[u8], b: &[u8]) -> Option<std::cmp::Ordering> {
        let text = |v| std::str::from_utf8(v).ok();
        match self {
            Order::Int => Some(text(a)?.parse::<i64>().ok()?.cmp(&text(b)?.parse().ok()?)),
            Order::Float => text(a)?
                .parse::<f64>()
                .ok()?
                .partial_cmp(&text(b)?.parse().ok()?),
            Order::Decimal => Some(decimal_cmp(text(a)?, text(b)?)),
            Order::Bytes => Some(infinite(a).cmp(&infinite(b)).then_with(|| a.cmp(b))),
            Order::Labels(l) => {
                let at = |v| l.iter().position(|x| Some(x.as_str()) == text(v));
                Some(at(a)?.cmp(&at(b)?))
            }
        }
    }
}

/// Dates' and timestamps' `-infinity` before every value, `infinity` after.
fn infinite(v: &[u8]) -> i8 {
    match v {
        b"-infinity" => -1,
        b"infinity" => 1,
        _ => 0,
    }
}

/// Compares two decimals in [`decimal`]'s canonical form.
fn decimal_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (an, bn) = (a.starts_with('-'), b.starts_with('-'));
    if an != bn {
        return bn.cmp(&an);
    }
    let split = |s: &str| {
        let s = s.trim_start_matches('-');
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        (i.len(), i.to_string(), f.to_string())
    };
    let magnitude = split(a).cmp(&split(b));
    if an { magnitude.reverse() } else { magnitude }
}

/// A timestamp as PostgreSQL writes one (ISO DateStyle) or as TOML and RFC 3339 write one:
/// `YYYY-MM-DD[ T]HH:MM[:SS[.frac]]` or a bare date, then optionally `Z` or an offset
/// (`+02`, `+05:30`, `-03:30:15`) in seconds east of UTC.
fn timestamp(s: &str) -> Option<(chrono::NaiveDateTime, Option<i32>)> {
    let s = s.trim();
    let (main, off) = match s.strip_suffix('Z') {
        Some(m) => (m, Some(0)),
        None => match s.get(10..)?.rfind(['+', '-']) {
            Some(i) => (&s[..10 + i], Some(offset(&s[10 + i..])?)),
            None => (s, None),
        },
    };
    let main = main.replacen('T', " ", 1);
    let dt = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&main, f).ok())
        .or_else(|| {
            let d = chrono::NaiveDate::parse_from_str(&main, "%Y-%m-%d").ok()?;
            d.and_hms_opt(0, 0, 0)
        })?;
    Some((dt, off))
}

/// `+02`, `+0530`, `+05:30`, `-03:30:15` in seconds.
fn offset(s: &str) -> Option<i32> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits: String = s[1..].chars().filter(char::is_ascii_digit).collect();
    let part = |a: usize| {
        digits
            .get(a..a + 2)
            .map_or(Some(0), |p| p.parse::<i32>().ok())
    };
    if digits.len() < 2 || digits.len() % 2 != 0 || digits.len() > 6 {
        return None;
    }
    Some(sign * (part(0)? * 3600 + part(2)? * 60 + part(4)?))
}

/// One way of writing an instant: in UTC with `+00` when the zone is known, else as it is.
fn instant(dt: chrono::NaiveDateTime, off: Option<i32>) -> String {
    match off {
        Some(o) => {
            let utc = dt - chrono::Duration::seconds(i64::from(o));
            format!("{}+00", utc.format("%Y-%m-%d %H:%M:%S%.6f"))
        }
        None => dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    }
}

/// A float written one way (Rust's shortest round-trip form; `-0` as `0`).
fn float(f: f64) -> String {
    if f == 0.0 { "0".into() } else { f.to_string() }
}

/// A decimal number written one way: no `+`, no leading zeros, no trailing fractional zeros,
/// `-0` as `0`; exponents expanded is not attempted (PostgreSQL writes numeric without them).
fn decimal(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !ok(int) || !ok(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut out = String::new();
    if neg && (int != "0" || !frac.is_empty()) {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn comparisons_follow_the_type() {
        let d = |a: &str, b: &str| Order::Decimal.cmp(a.as_bytes(), b.as_bytes()).unwrap();
        assert_eq!(d("0.5", "0.25"), Greater);
        assert_eq!(d("-2", "-1.5"), Less);
        assert_eq!(d("10", "9.99"), Greater);
        assert_eq!(d("-0.5", "0"), Less);
        assert_eq!(d("1", "1"), Equal);
        assert_eq!(Order::Int.cmp(b"10", b"9"), Some(Greater));
        assert_eq!(Order::Float.cmp(b"1e2", b"99.5"), Some(Greater));
        assert_eq!(Order::Float.cmp(b"NaN", b"1"), None);
        assert_eq!(Order::Bytes.cmp(b"infinity", b"9999-12-31"), Some(Greater));
        assert_eq!(
            Order::Bytes.cmp(b"2024-01-02", b"2023-12-31"),
            Some(Greater)
        );
        let labels = Order::Labels(vec!["low".into(), "high".into()]);
        assert_eq!(labels.cmp(b"high", b"low"), Some(Greater));
        assert_eq!(labels.cmp(b"medium", b"low"), None);
        assert_eq!(Order::of(&Ty::Json), None);
    }

    #[test]
    fn constants_take_the_column_type() {
        let c =
            |v: toml::Value, ty: Ty| compile(&v, &ty, "c").map(|b| String::from_utf8(b).unwrap());
        assert_eq!(c(true.into(), Ty::Bool).unwrap(), "t");
        assert_eq!(c("off".into(), Ty::Bool).unwrap(), "f");
        assert!(c("maybe".into(), Ty::Bool).is_err());
        assert_eq!(
            c(
                0.into(),
                Ty::Numeric {
                    precision: Some(10),
                    scale: 2
                }
            )
            .unwrap(),
            "0"
        );
        assert_eq!(
            c(
                "1.50".into(),
                Ty::Numeric {
                    precision: None,
                    scale: 0
                }
            )
            .unwrap(),
            "1.5"
        );
        assert!(
            c(
                "0.001".into(),
                Ty::Numeric {
                    precision: Some(10),
                    scale: 2
                }
            )
            .is_err()
        );
        assert!(c("1.5".into(), Ty::Int { bits: 32 }).is_err());
        assert!(c(40000.into(), Ty::Int { bits: 16 }).is_err());
        assert_eq!(c("2020-5-7".into(), Ty::Date).unwrap(), "2020-05-07");
        assert!(c("yesterday".into(), Ty::Date).is_err());
        assert_eq!(c(12.into(), Ty::Text { max: None }).unwrap(), "12");
        let tz = Ty::Timestamp { tz: true };
        let at = "2024-05-01 10:00:00.000000+00";
        assert_eq!(
            c("2024-05-01T12:00:00+02:00".into(), tz.clone()).unwrap(),
            at
        );
        assert_eq!(c("2024-05-01 10:00Z".into(), tz.clone()).unwrap(), at);
        assert!(c("2024-05-01 10:00".into(), tz.clone()).is_err());
        let naive = Ty::Timestamp { tz: false };
        assert_eq!(
            c("2024-05-01".into(), naive.clone()).unwrap(),
            "2024-05-01 00:00:00.000000"
        );
        assert!(c("2024-05-01 10:00+01".into(), naive).is_err());
        let value = Canon::Timestamp
            .apply(b"2024-05-01 15:30:00-05:30")
            .unwrap();
        assert_eq!(&*value, b"2024-05-01 21:00:00.000000+00");
        assert_eq!(&*Canon::Timestamp.apply(b"infinity").unwrap(), b"infinity");
        for (a, b) in [
            ("0.00", "0"),
            ("-0.0", "0"),
            ("007.10", "7.1"),
            ("-1.50", "-1.5"),
        ] {
            assert_eq!(
                Canon::Decimal.apply(a.as_bytes()).unwrap().as_ref(),
                b.as_bytes()
            );
        }
        assert!(Canon::Decimal.apply(b"NaN").is_none());
        assert_eq!(c("1e2".into(), Ty::Float).unwrap(), "100");
        assert_eq!(Canon::Float.apply(b"100").unwrap().as_ref(), b"100");
    }
}
