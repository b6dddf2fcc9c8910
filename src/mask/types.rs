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
    Timestamp,
    Uuid,
    Bool,
    Json,
    Inet,
    MacAddr,
    Other(String),
}

impl Ty {
    pub fn parse(t: &str) -> Ty {
        let (base, args) = match t.split_once('(') {
            Some((b, rest)) => (b.trim(), rest.trim_end_matches(')').to_string()),
            None => (t.trim(), String::new()),
        };
        if t.ends_with("[]") {
            return Ty::Other(t.to_string());
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
            "timestamp without time zone" | "timestamp with time zone" => Ty::Timestamp,
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
        matches!(self, Ty::Date | Ty::Timestamp)
    }

    /// Checks that `v` fits the column; the message says why not.
    pub fn fits(&self, v: &[u8]) -> Result<(), String> {
        match self {
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
        assert!(matches!(Ty::parse("text[]"), Ty::Other(_)));
        assert!(Ty::parse("character varying(3)").fits(b"abcd").is_err());
        assert!(Ty::parse("numeric(4,2)").fits(b"123.45").is_err());
        assert!(Ty::parse("numeric(4,2)").fits(b"12.45").is_ok());
        assert!(Ty::parse("smallint").fits(b"40000").is_err());
    }
}
