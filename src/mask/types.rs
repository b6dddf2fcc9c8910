//! What weir-mask knows of a column's type: enough to refuse a transformer that cannot produce
//! it, and to check that a produced value fits (varchar length, numeric precision).

/// A column type, from the manifest's `format_type` spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// text, varchar(n), char(n), citext, name; `max` is the length limit in characters.
    Text {
        max: Option<usize>,
    },
    Int {
        bits: u32,
    },
    Float,
    /// numeric(p, s); `None` when unconstrained.
    Numeric {
        precision: Option<u32>,
        scale: u32,
    },
    Date,
    /// timestamp(p), with the time zone or without.
    Timestamp {
        tz: bool,
    },
    /// time, with or without time zone, any precision.
    Time,
    Interval,
    /// An enum, with its labels in sort order.
    Enum(Vec<String>),
    /// An array; transformers apply to each element.
    Array(Box<Ty>),
    Uuid,
    Bool,
    Json,
    Inet,
    MacAddr,
    Other(String),
}

impl Ty {
    /// A column's type: through its domains to the base type, an enum with its labels.
    pub fn of(c: &crate::archive::Column) -> Ty {
        let t = c.underlying_type();
        let ty = Ty::parse(t);
        if c.labels.is_empty() {
            return ty;
        }
        let labels = Ty::Enum(c.labels.clone());
        match ty {
            Ty::Array(_) => Ty::Array(Box::new(labels)),
            _ => labels,
        }
    }

    pub fn parse(t: &str) -> Ty {
        if let Some(elem) = t.strip_suffix("[]") {
            return Ty::Array(Box::new(Ty::parse(elem)));
        }
        // format_type qualifies a type outside the search path: `ext.citext`.
        if t.rsplit('.').next() == Some("citext") {
            return Ty::Text { max: None };
        }
        let (base, args) = match t.split_once('(') {
            Some((b, rest)) => {
                let (args, _) = rest.split_once(')').unwrap_or((rest, ""));
                (b.trim(), args.to_string())
            }
            None => (t.trim(), String::new()),
        };
        // `timestamp(3) without time zone`, `time(2) with time zone`, `interval day to second`.
        let word = |w: &str| t.starts_with(w);
        if word("timestamp") {
            return Ty::Timestamp {
                tz: t.ends_with("with time zone"),
            };
        }
        if word("time ") || word("time(") || t == "time" {
            return Ty::Time;
        }
        if word("interval") {
            return Ty::Interval;
        }
        let nums: Vec<u32> = args
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        match base {
            "text" | "citext" | "name" => Ty::Text { max: None },
            "character varying" | "character" | "varchar" | "char" | "bpchar" => Ty::Text {
                max: nums
                    .first()
                    .map(|n| *n as usize)
                    .or(if base == "character" { Some(1) } else { None }),
            },
            "smallint" => Ty::Int { bits: 16 },
            "integer" => Ty::Int { bits: 32 },
            "bigint" => Ty::Int { bits: 64 },
            "real" | "double precision" => Ty::Float,
            "numeric" => Ty::Numeric {
                precision: nums.first().copied(),
                scale: nums.get(1).copied().unwrap_or(0),
            },
            "date" => Ty::Date,
            "uuid" => Ty::Uuid,
            "boolean" => Ty::Bool,
            "json" | "jsonb" => Ty::Json,
            "inet" | "cidr" => Ty::Inet,
            "macaddr" => Ty::MacAddr,
            _ => Ty::Other(t.to_string()),
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, Ty::Text { .. })
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Ty::Int { .. } | Ty::Float | Ty::Numeric { .. })
    }

    pub fn is_time(&self) -> bool {
        matches!(self, Ty::Date | Ty::Timestamp { .. })
    }

    /// Checks that `v` fits the column; the message says why not.
    pub fn fits(&self, v: &[u8]) -> Result<(), String> {
        match self {
            Ty::Enum(labels) if !labels.iter().any(|l| l.as_bytes() == v) => {
                return Err(format!(
                    "{:?} is not a label of the enum ({})",
                    String::from_utf8_lossy(v),
                    labels.join(", ")
                ));
            }
            Ty::Array(elem) => {
                let mut err = None;
                super::array::map_elements(v, |e| {
                    if err.is_none() {
                        err = elem.fits(e).err();
                    }
                    Ok(None)
                })
                .map_err(|e| e.to_string())?;
                if let Some(e) = err {
                    return Err(format!("an element: {e}"));
                }
            }
            Ty::Time if super::transform::parse_time(v).is_none() => {
                return Err(format!(
                    "{:?} is not a time of day",
                    String::from_utf8_lossy(v)
                ));
            }
            Ty::Text { max: Some(n) } => {
                let chars = String::from_utf8_lossy(v).chars().count();
                if chars > *n {
                    return Err(format!(
                        "a {chars}-character value does not fit in {n} characters"
                    ));
                }
            }
            Ty::Int { bits } => {
                let s = std::str::from_utf8(v).unwrap_or("");
                let ok = match bits {
                    16 => s.parse::<i16>().is_ok(),
                    32 => s.parse::<i32>().is_ok(),
                    _ => s.parse::<i64>().is_ok(),
                };
                if !ok {
                    return Err(format!("{s:?} is not a {bits}-bit integer"));
                }
            }
            Ty::Numeric {
                precision: Some(p),
                scale,
            } => {
                let s = std::str::from_utf8(v).unwrap_or("");
                let int_digits = s
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('0')
                    .len();
                if int_digits as u32 > p - scale {
                    return Err(format!("{s} does not fit numeric({p},{scale})"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_type_names() {
        assert_eq!(
            Ty::parse("character varying(20)"),
            Ty::Text { max: Some(20) }
        );
        assert_eq!(Ty::parse("text"), Ty::Text { max: None });
        assert_eq!(
            Ty::parse("numeric(12,2)"),
            Ty::Numeric {
                precision: Some(12),
                scale: 2
            }
        );
        assert_eq!(Ty::parse("integer"), Ty::Int { bits: 32 });
        assert_eq!(
            Ty::parse("text[]"),
            Ty::Array(Box::new(Ty::Text { max: None }))
        );
        assert_eq!(
            Ty::parse("timestamp(3) without time zone"),
            Ty::Timestamp { tz: false }
        );
        assert_eq!(
            Ty::parse("timestamp with time zone"),
            Ty::Timestamp { tz: true }
        );
        assert_eq!(Ty::parse("time(2) with time zone"), Ty::Time);
        assert_eq!(Ty::parse("interval day to second(2)"), Ty::Interval);
        assert_eq!(Ty::parse("ext.citext"), Ty::Text { max: None });
        let moods = Ty::Enum(vec!["sad".into(), "ok".into()]);
        assert!(moods.fits(b"ok").is_ok() && moods.fits(b"meh").is_err());
        let arr = Ty::parse("character varying(3)[]");
        assert!(arr.fits(b"{abc,NULL,\"a b\"}").is_ok());
        assert!(arr.fits(b"{abc,abcd}").is_err());
        assert!(Ty::parse("character varying(3)").fits(b"abcd").is_err());
        assert!(Ty::parse("numeric(4,2)").fits(b"123.45").is_err());
        assert!(Ty::parse("numeric(4,2)").fits(b"12.45").is_ok());
        assert!(Ty::parse("smallint").fits(b"40000").is_err());
    }
}
