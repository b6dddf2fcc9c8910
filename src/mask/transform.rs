//! The transformers: each compiled once from its TOML parameters against the column's type,
//! then applied to decoded values. A transformer sees the original bytes of the value and
//! returns the new bytes; NULL stays NULL except for `null`, `set` and `dictionary`.

use super::keyed::RuleKey;
use super::types::Ty;
use anyhow::{Result, anyhow, bail};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use fake::Fake;
use fake::locales::{Data, EN};
use rand::RngExt;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};

/// A compiled transformer.
pub enum Transformer {
    Null,
    Set(Option<Vec<u8>>),
    Replace {
        from: String,
        to: String,
    },
    RegexReplace {
        re: regex::Regex,
        with: String,
    },
    Mask {
        keep_first: usize,
        keep_last: usize,
        ch: char,
        email: bool,
    },
    Truncate {
        length: usize,
    },
    DateTrunc {
        unit: DateUnit,
    },
    Bucket {
        size: f64,
    },
    NoiseNumber {
        relative: f64,
        ty: Ty,
    },
    NoiseTime {
        seconds: i64,
    },
    RandomInt {
        min: i64,
        max: i64,
    },
    RandomFloat {
        min: f64,
        max: f64,
        scale: Option<u32>,
    },
    RandomDate {
        min: NaiveDate,
        max: NaiveDate,
        timestamp: bool,
    },
    RandomUuid,
    RandomBool,
    Choice(Vec<String>),
    Fake {
        kind: FakeKind,
        unique: bool,
    },
    Template(Vec<TemplatePart>),
    /// `value` is the new value's JSON text.
    JsonSet {
        path: Vec<String>,
        value: Vec<u8>,
    },
    JsonDelete {
        path: Vec<String>,
    },
    Dictionary {
        map: HashMap<Vec<u8>, Option<Vec<u8>>>,
        missing: Missing,
    },
    /// The shell command, started at the first value, and how long it may take per value.
    Command(
        std::sync::Mutex<Option<External>>,
        String,
        std::time::Duration,
    ),
    /// Integer keys of any width, through [`super::keyed::RuleKey::permute_key`].
    PermuteInt,
    PermuteUuid,
    /// A time of day within `min ..= max` seconds after midnight.
    RandomTime {
        min: u32,
        max: u32,
    },
    /// A time of day moved by up to `seconds` either way, around midnight.
    NoiseClock {
        seconds: i64,
    },
    /// The inner transformer applied to each element of an array.
    Each(Box<Transformer>),
    /// Keyed HMAC-SHA-256 of the value, in hex or base64, cut to `length` characters.
    Hash {
        base64: bool,
        length: Option<usize>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateUnit {
    Month,
    Year,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    Keep,
    Null,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeKind {
    FirstName,
    LastName,
    FullName,
    Email,
    Username,
    Phone,
    Company,
    StreetAddress,
    City,
    Country,
    Ipv4,
    Ipv6,
    Mac,
    CardNumber,
    Iban,
}

impl FakeKind {
    /// Kinds whose values carry enough of the keyed hash to stay distinct without a tag.
    fn always_distinct(self) -> bool {
        matches!(self, FakeKind::Ipv6 | FakeKind::Iban)
    }

    /// Kinds that `unique = true` can tag: free text, where a suffix keeps the form.
    fn can_tag(self) -> bool {
        !matches!(
            self,
            FakeKind::Phone
                | FakeKind::Ipv4
                | FakeKind::Ipv6
                | FakeKind::Mac
                | FakeKind::CardNumber
                | FakeKind::Iban
        )
    }

    /// The kinds built from the name lists, written by [`fake_name_into`].
    fn is_name(self) -> bool {
        matches!(
            self,
            FakeKind::FirstName | FakeKind::LastName | FakeKind::FullName | FakeKind::Email
        )
    }
}

pub enum TemplatePart {
    Text(String),
    /// A column of the row, by index; `original` asks for the value before masking.
    Column {
        index: usize,
        original: bool,
    },
}

/// Everything a transformer may look at besides its own value.
pub struct Ctx<'a> {
    /// The rule's keys: its canonical text is part of every seed, so different rules draw
    /// differently.
    pub rk: &'a RuleKey,
    pub original_row: &'a [Option<Vec<u8>>],
    pub masked_row: &'a [Option<Vec<u8>>],
}

const NAMES: &[&str] = &[
    "null",
    "set",
    "replace",
    "regex_replace",
    "mask",
    "truncate",
    "date_trunc",
    "bucket",
    "noise",
    "random",
    "choice",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "username",
    "phone",
    "company",
    "street_address",
    "city",
    "country",
    "ipv4",
    "ipv6",
    "mac",
    "card_number",
    "iban",
    "template",
    "json_set",
    "json_delete",
    "dictionary",
    "command",
    "permute",
    "hash",
];

/// Parameters of one rule, with a note of which were used (an unused one is a typo).
pub struct Params<'a> {
    pub rule: &'a str,
    table: &'a toml::Table,
    used: std::cell::RefCell<Vec<String>>,
}

impl<'a> Params<'a> {
    pub fn new(rule: &'a str, table: &'a toml::Table) -> Params<'a> {
        Params {
            rule,
            table,
            used: Default::default(),
        }
    }

    fn get(&self, k: &str) -> Option<&toml::Value> {
        self.used.borrow_mut().push(k.to_string());
        self.table.get(k)
    }

    fn string(&self, k: &str) -> Result<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    fn need_string(&self, k: &str) -> Result<String> {
        self.string(k)?
            .ok_or_else(|| anyhow!("{}: needs the parameter {k}", self.rule))
    }

    fn int(&self, k: &str) -> Result<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i)),
            Some(v) => bail!("{}: {k} must be an integer, not {v}", self.rule),
        }
    }

    fn float(&self, k: &str) -> Result<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(toml::Value::Float(f)) => Ok(Some(*f)),
            Some(v) => bail!("{}: {k} must be a number, not {v}", self.rule),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => bail!("{}: {k} must be true or false, not {v}", self.rule),
        }
    }

    /// Refuses parameters nobody asked for.
    pub fn finish(&self) -> Result<()> {
        let used = self.used.borrow();
        for k in self.table.keys() {
            if !used.iter().any(|u| u == k) {
                bail!("{}: unknown parameter {k}", self.rule);
            }
        }
        Ok(())
    }
}

/// Compiles transformer `kind` for a column of type `ty`. `columns` resolves template names.
/// One piece on purpose: it is the table of transformers, one match arm each with its own
/// parameter and type checks, so that adding or reviewing a transformer means reading one arm.
pub fn compile(
    kind: &str,
    p: &Params,
    ty: &Ty,
    columns: &dyn Fn(&str) -> Result<usize>,
) -> Result<Transformer> {
    let rule = p.rule;
    // On an array, a transformer works on each element; those that make a whole value (NULL,
    // a constant, a template, a command's answer) work on the array.
    if let Ty::Array(elem) = ty {
        if !matches!(kind, "null" | "set" | "template" | "command") {
            let inner = compile(kind, p, elem, columns)
                .map_err(|e| anyhow!("{e} (on each element of an array of {})", type_name(elem)))?;
            return Ok(Transformer::Each(Box::new(inner)));
        }
    }
    let wrong_type = |what: &str| {
        anyhow!(
            "{rule}: {kind} cannot produce a value of type {} (it works on {what})",
            type_name(ty)
        )
    };
    let t = match kind {
        "null" => Transformer::Null,
        "set" => {
            let v = match p.get("value") {
                None => bail!(
                    "{rule}: set needs value (a string, number, or false for NULL... use the null transformer for NULL)"
                ),
                Some(toml::Value::String(s)) => s.clone().into_bytes(),
                Some(v) => v.to_string().into_bytes(),
            };
            ty.fits(&v).map_err(|e| anyhow!("{rule}: {e}"))?;
            Transformer::Set(Some(v))
        }
        "replace" => {
            need(ty.is_text(), || wrong_type("text"))?;
            Transformer::Replace {
                from: p.need_string("from")?,
                to: p.need_string("to")?,
            }
        }
        "regex_replace" => {
            need(ty.is_text(), || wrong_type("text"))?;
            let pat = p.need_string("pattern")?;
            Transformer::RegexReplace {
                re: regex::Regex::new(&pat).map_err(|e| anyhow!("{rule}: bad pattern: {e}"))?,
                with: p.need_string("with")?,
            }
        }
        "mask" => {
            need(ty.is_text(), || wrong_type("text"))?;
            let ch = p.string("char")?.unwrap_or_else(|| "*".into());
            Transformer::Mask {
                keep_first: p.int("keep_first")?.unwrap_or(0).max(0) as usize,
                keep_last: p.int("keep_last")?.unwrap_or(0).max(0) as usize,
                ch: ch.chars().next().unwrap_or('*'),
                email: p.bool("email")?.unwrap_or(true),
            }
        }
        "truncate" => {
            need(ty.is_text(), || wrong_type("text"))?;
            let n = p
                .int("length")?
                .ok_or_else(|| anyhow!("{rule}: truncate needs length"))?;
            Transformer::Truncate {
                length: n.max(0) as usize,
            }
        }
        "date_trunc" => {
            need(ty.is_time(), || wrong_type("date and timestamp"))?;
            let unit = match p.need_string("to")?.as_str() {
                "month" => DateUnit::Month,
                "year" => DateUnit::Year,
                other => bail!("{rule}: date_trunc to {other:?}: use month or year"),
            };
            Transformer::DateTrunc { unit }
        }
        "bucket" => {
            need(ty.is_number(), || wrong_type("numbers"))?;
            let size = p
                .float("size")?
                .filter(|s| *s > 0.0)
                .ok_or_else(|| anyhow!("{rule}: bucket needs a positive size"))?;
            Transformer::Bucket { size }
        }
        "noise" => {
            if ty.is_number() {
                let relative = p.float("relative")?.ok_or_else(|| {
                    anyhow!("{rule}: noise on numbers needs relative (0.1 = up to 10%)")
                })?;
                Transformer::NoiseNumber {
                    relative,
                    ty: ty.clone(),
                }
            } else if ty.is_time() {
                let iv = p.need_string("interval")?;
                Transformer::NoiseTime {
                    seconds: parse_interval(&iv).map_err(|e| anyhow!("{rule}: {e}"))?,
                }
            } else if *ty == Ty::Time {
                let iv = p.need_string("interval")?;
                Transformer::NoiseClock {
                    seconds: parse_interval(&iv).map_err(|e| anyhow!("{rule}: {e}"))?,
                }
            } else {
                return Err(wrong_type("numbers, dates, timestamps and times"));
            }
        }
        "random" => match ty {
            Ty::Int { bits } => {
                let (lo, hi) = int_range(*bits);
                let min = p.int("min")?.unwrap_or(0).max(lo);
                let max = p.int("max")?.unwrap_or(hi).min(hi);
                need(min <= max, || anyhow!("{rule}: min is above max"))?;
                Transformer::RandomInt { min, max }
            }
            Ty::Float | Ty::Numeric { .. } => Transformer::RandomFloat {
                min: p.float("min")?.unwrap_or(0.0),
                max: p.float("max")?.unwrap_or(1.0),
                scale: match ty {
                    Ty::Numeric { scale, .. } => Some(*scale),
                    _ => None,
                },
            },
            Ty::Date | Ty::Timestamp { .. } => {
                let d = |k: &str, def: &str| -> Result<NaiveDate> {
                    let s = p.string(k)?.unwrap_or_else(|| def.to_string());
                    NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                        .map_err(|_| anyhow!("{rule}: {k} {s:?} is not a YYYY-MM-DD date"))
                };
                Transformer::RandomDate {
                    min: d("min", "1970-01-01")?,
                    max: d("max", "2030-12-31")?,
                    timestamp: matches!(ty, Ty::Timestamp { .. }),
                }
            }
            Ty::Time => {
                let t = |k: &str, def: &str| -> Result<u32> {
                    let s = p.string(k)?.unwrap_or_else(|| def.to_string());
                    parse_time(s.as_bytes())
                        .map(|(secs, _)| secs)
                        .ok_or_else(|| anyhow!("{rule}: {k} {s:?} is not a HH:MM:SS time"))
                };
                let (min, max) = (t("min", "00:00:00")?, t("max", "23:59:59")?);
                need(min <= max, || anyhow!("{rule}: min is above max"))?;
                Transformer::RandomTime { min, max }
            }
            Ty::Enum(labels) => Transformer::Choice(labels.clone()),
            Ty::Uuid => Transformer::RandomUuid,
            Ty::Bool => Transformer::RandomBool,
            _ => {
                return Err(wrong_type(
                    "integers, floats, numerics, dates, timestamps, times, enums, uuids and booleans",
                ));
            }
        },
        "choice" => {
            let values = match p.get("values") {
                Some(toml::Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    })
                    .collect::<Vec<_>>(),
                // An enum's choice is one of its labels unless values narrow it.
                None if matches!(ty, Ty::Enum(_)) => match ty {
                    Ty::Enum(labels) => labels.clone(),
                    _ => unreachable!(),
                },
                _ => bail!("{rule}: choice needs values, a non-empty list"),
            };
            for v in &values {
                ty.fits(v.as_bytes()).map_err(|e| anyhow!("{rule}: {e}"))?;
            }
            Transformer::Choice(values)
        }
        "first_name" | "last_name" | "full_name" | "email" | "username" | "phone" | "company"
        | "street_address" | "city" | "country" | "ipv4" | "ipv6" | "mac" | "card_number"
        | "iban" => {
            let fk = fake_kind(kind);
            let ok = ty.is_text()
                || (matches!(fk, FakeKind::Ipv4 | FakeKind::Ipv6) && *ty == Ty::Inet)
                || (fk == FakeKind::Mac && *ty == Ty::MacAddr);
            need(ok, || wrong_type("text"))?;
            let unique_default = matches!(fk, FakeKind::Email | FakeKind::Username);
            let unique = p.bool("unique")?.unwrap_or(unique_default);
            if unique && !fk.can_tag() {
                bail!(
                    "{rule}: {kind} has a fixed form that a unique tag would break; use unique = false (or hash or permute for a unique column)"
                );
            }
            Transformer::Fake { kind: fk, unique }
        }
        "template" => {
            need(ty.is_text(), || wrong_type("text"))?;
            Transformer::Template(
                parse_template(&p.need_string("template")?, columns)
                    .map_err(|e| anyhow!("{rule}: {e}"))?,
            )
        }
        "json_set" | "json_delete" => {
            need(*ty == Ty::Json, || wrong_type("json and jsonb"))?;
            let path: Vec<String> = p
                .need_string("path")?
                .split('.')
                .map(str::to_string)
                .collect();
            if kind == "json_delete" {
                Transformer::JsonDelete { path }
            } else {
                let value = match p.get("value") {
                    Some(v) => serde_json::to_vec(v)?,
                    None => bail!("{rule}: json_set needs value"),
                };
                Transformer::JsonSet { path, value }
            }
        }
        "dictionary" => {
            let file = p.need_string("file")?;
            let missing = match p.string("missing")?.as_deref().unwrap_or("keep") {
                "keep" => Missing::Keep,
                "null" => Missing::Null,
                "error" => Missing::Error,
                o => bail!("{rule}: missing = {o:?}: use keep, null or error"),
            };
            Transformer::Dictionary {
                map: read_dictionary(&file).map_err(|e| anyhow!("{rule}: {e}"))?,
                missing,
            }
        }
        "command" => {
            let run = p.need_string("run")?;
            let secs = p.int("timeout")?.unwrap_or(COMMAND_TIMEOUT_SECS);
            if secs < 1 {
                bail!("{rule}: command timeout must be at least 1 (seconds)");
            }
            let timeout = std::time::Duration::from_secs(secs as u64);
            Transformer::Command(std::sync::Mutex::new(None), run, timeout)
        }
        "hash" => {
            need(ty.is_text(), || wrong_type("text"))?;
            let base64 = match p.string("encoding")?.as_deref().unwrap_or("hex") {
                "hex" => false,
                "base64" => true,
                o => bail!("{rule}: encoding = {o:?}: use hex or base64"),
            };
            let length = match p.int("length")? {
                Some(n) if n < 1 => bail!("{rule}: length must be at least 1"),
                n => n.map(|n| n as usize),
            };
            Transformer::Hash { base64, length }
        }
        "permute" => match ty {
            Ty::Int { .. } => Transformer::PermuteInt,
            Ty::Uuid => Transformer::PermuteUuid,
            _ => return Err(wrong_type("smallint, integer, bigint and uuid key columns")),
        },
        other => {
            let near = super::rules::nearest(other, NAMES.iter().copied());
            bail!(
                "{rule}: unknown transformer {other:?}{}",
                near.map(|n| format!(" (did you mean {n:?}?)"))
                    .unwrap_or_default()
            )
        }
    };
    p.finish()?;
    Ok(t)
}

fn need(ok: bool, err: impl FnOnce() -> anyhow::Error) -> Result<()> {
    if ok { Ok(()) } else { Err(err()) }
}

fn type_name(ty: &Ty) -> String {
    match ty {
        Ty::Text { max: Some(n) } => format!("varchar({n})"),
        Ty::Text { max: None } => "text".into(),
        Ty::Int { bits: 16 } => "smallint".into(),
        Ty::Int { bits: 32 } => "integer".into(),
        Ty::Int { .. } => "bigint".into(),
        Ty::Float => "float".into(),
        Ty::Numeric { .. } => "numeric".into(),
        Ty::Other(s) => s.clone(),
        Ty::Enum(labels) => format!("enum ({})", labels.join(", ")),
        Ty::Array(e) => format!("{}[]", type_name(e)),
        t => format!("{t:?}").to_lowercase(),
    }
}

/// A time of day as PostgreSQL writes one (`HH:MM:SS`, then a fraction and, for `timetz`, a
/// zone): its seconds after midnight (`24:00:00` is 86400), and what follows them.
pub fn parse_time(v: &[u8]) -> Option<(u32, &[u8])> {
    let num = |a: usize| -> Option<u32> {
        let d = v.get(a..a + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    if v.get(2) != Some(&b':') || v.get(5) != Some(&b':') {
        return None;
    }
    let (h, m, s) = (num(0)?, num(3)?, num(6)?);
    let secs = h * 3600 + m * 60 + s;
    (h <= 24 && m < 60 && s < 60 && secs <= 86400).then_some((secs, &v[8..]))
}

fn clock_text(secs: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60).into_bytes();
    out.extend_from_slice(rest);
    out
}

fn int_range(bits: u32) -> (i64, i64) {
    match bits {
        16 => (i16::MIN.into(), i16::MAX.into()),
        32 => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

fn fake_kind(k: &str) -> FakeKind {
    match k {
        "first_name" => FakeKind::FirstName,
        "last_name" => FakeKind::LastName,
        "full_name" => FakeKind::FullName,
        "email" => FakeKind::Email,
        "username" => FakeKind::Username,
        "phone" => FakeKind::Phone,
        "company" => FakeKind::Company,
        "street_address" => FakeKind::StreetAddress,
        "city" => FakeKind::City,
        "country" => FakeKind::Country,
        "ipv4" => FakeKind::Ipv4,
        "ipv6" => FakeKind::Ipv6,
        "mac" => FakeKind::Mac,
        "card_number" => FakeKind::CardNumber,
        _ => FakeKind::Iban,
    }
}

/// `30 days`, `2 hours 30 minutes`, `90 seconds`, `1 week`.
pub fn parse_interval(s: &str) -> Result<i64> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() || words.len() % 2 != 0 {
        bail!("interval {s:?}: expected pairs like '30 days' or '2 hours 15 minutes'");
    }
    let mut total = 0i64;
    for pair in words.chunks(2) {
        let n: i64 = pair[0]
            .parse()
            .map_err(|_| anyhow!("interval {s:?}: {} is not a whole number", pair[0]))?;
        let unit = match pair[1].trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86400,
            "week" => 7 * 86400,
            u => bail!("interval {s:?}: unknown unit {u:?} (seconds, minutes, hours, days, weeks)"),
        };
        total += n * unit;
    }
    Ok(total)
}

fn parse_template(t: &str, columns: &dyn Fn(&str) -> Result<usize>) -> Result<Vec<TemplatePart>> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            parts.push(TemplatePart::Text(rest[..open + 1].to_string()));
            rest = &rest[open + 2..];
            continue;
        }
        parts.push(TemplatePart::Text(rest[..open].to_string()));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| anyhow!("template {t:?}: unclosed {{"))?;
        let name = &rest[open + 1..open + close];
        let (name, original) = match name.strip_suffix(":original") {
            Some(n) => (n, true),
            None => (name, false),
        };
        parts.push(TemplatePart::Column {
            index: columns(name)?,
            original,
        });
        rest = &rest[open + close + 1..];
    }
    parts.push(TemplatePart::Text(rest.replace("}}", "}")));
    Ok(parts)
}

/// A two-column CSV file (original, replacement); an empty replacement field is NULL when
/// unquoted, as in PostgreSQL's CSV.
fn read_dictionary(path: &str) -> Result<HashMap<Vec<u8>, Option<Vec<u8>>>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {path}: {e}"))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() != 2 {
            bail!(
                "{path}:{}: expected two fields, found {}",
                i + 1,
                fields.len()
            );
        }
        let mut it = fields.into_iter();
        let (k, v) = (it.next().unwrap(), it.next().unwrap());
        map.insert(
            k.unwrap_or_default().into_bytes(),
            v.map(String::into_bytes),
        );
    }
    Ok(map)
}

fn csv_fields(line: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                out.push((was_quoted || !cur.is_empty()).then(|| std::mem::take(&mut cur)));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    out.push((was_quoted || !cur.is_empty()).then_some(cur));
    out
}

/// A long-running external command: one COPY-escaped value per line in, one per line out.
pub struct External {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    /// Lines the command wrote, read on a thread so that a silent command can time out.
    lines: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
}

/// A command's default time to answer one value, in seconds (`timeout` overrides it).
pub const COMMAND_TIMEOUT_SECS: i64 = 30;

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl External {
    fn start(cmd: &str) -> Result<External> {
        use std::process::{Command, Stdio};
        let mut child = Command::new("sh")
            .args(["-c", cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow!("cannot start command {cmd:?}: {e}"))?;
        let input = child.stdin.take();
        let mut output = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            loop {
                let mut line = Vec::new();
                match output.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    r => {
                        let failed = r.is_err();
                        if tx.send(r.map(|_| line)).is_err() || failed {
                            return;
                        }
                    }
                }
            }
        });
        Ok(External {
            child,
            input,
            lines,
        })
    }

    /// The end of the stream: the command's input is closed, and it must then end without
    /// another line. A line it wrote beyond the values it read means its answers were off by
    /// one somewhere, so the output, already partly written, must not become a valid archive.
    pub fn finish(mut self, cmd: &str, timeout: std::time::Duration) -> Result<()> {
        self.input.take();
        match self.lines.recv_timeout(timeout) {
            Ok(_) => bail!(
                "command {cmd:?} wrote more lines than it read: its answers do not line up with the values"
            ),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!(
                    "command {cmd:?} did not end within {}s of its input's end",
                    timeout.as_secs()
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("command {cmd:?} failed: {status}");
        }
        Ok(())
    }
}

fn run_external(
    slot: &std::sync::Mutex<Option<External>>,
    cmd: &str,
    timeout: std::time::Duration,
    v: Option<&[u8]>,
) -> Result<Option<Vec<u8>>> {
    let mut guard = slot.lock().unwrap();
    if guard.is_none() {
        *guard = Some(External::start(cmd)?);
    }
    let ext = guard.as_mut().expect("just started");
    let mut line = Vec::new();
    crate::pg::copy_text::encode_field(v, &mut line);
    line.push(b'\n');
    let input = ext.input.as_mut().expect("open until finish");
    input
        .write_all(&line)
        .and_then(|_| input.flush())
        .map_err(|e| anyhow!("command {cmd:?} stopped reading: {e}"))?;
    let mut back = match ext.lines.recv_timeout(timeout) {
        Ok(line) => line?,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!(
            "command {cmd:?} gave no answer within {}s (it must print one line per line read, and flush; see timeout)",
            timeout.as_secs()
        ),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Vec::new(),
    };
    if back.last() != Some(&b'\n') {
        bail!(
            "command {cmd:?} ended without answering (it must print one line per line read, and flush)"
        );
    }
    back.pop();
    crate::pg::copy_text::decode_field(&back)
}

impl Transformer {
    /// Ends a `command` transformer's program (see [`External::finish`]); others have nothing
    /// to end.
    pub fn finish(&self) -> Result<()> {
        if let Transformer::Command(slot, cmd, timeout) = self {
            if let Some(ext) = slot.lock().unwrap().take() {
                ext.finish(cmd, *timeout)?;
            }
        }
        Ok(())
    }
}

impl Transformer {
    /// True when distinct values always give distinct values, so a unique key stays unique:
    /// permutations are bijections; `hash` keeps at least 64 bits; the fakes marked unique, `random` on a uuid and IPv6
    /// addresses carry at least 60 bits of the value's keyed hash (two of a million values
    /// collide with odds below 10^-6); a dictionary does when its values are distinct and a
    /// value it lacks cannot stay as it was. NULL is distinct from NULL unless the key says
    /// NULLS NOT DISTINCT (`nulls_collide`). Templates are judged by the caller, which knows
    /// the columns they read.
    pub fn keeps_distinct(&self, nulls_collide: bool) -> bool {
        match self {
            Transformer::PermuteInt | Transformer::PermuteUuid | Transformer::RandomUuid => true,
            Transformer::Null => !nulls_collide,
            Transformer::Each(inner) => inner.keeps_distinct(nulls_collide),
            // At least 64 bits of the MAC: 16 hex or 11 base64 characters.
            Transformer::Hash { base64, length } => {
                length.is_none_or(|n| n * if *base64 { 6 } else { 4 } >= 64)
            }
            Transformer::Fake { kind, unique } => *unique || kind.always_distinct(),
            Transformer::Dictionary { map, missing } => {
                let values: Vec<&Vec<u8>> = map.values().flatten().collect();
                let nulls = map.values().filter(|v| v.is_none()).count()
                    + usize::from(*missing == Missing::Null);
                let distinct: std::collections::HashSet<&Vec<u8>> =
                    values.iter().copied().collect();
                *missing != Missing::Keep
                    && distinct.len() == values.len()
                    && (!nulls_collide || nulls <= 1)
            }
            _ => false,
        }
    }

    /// True when every output has the column's type by construction.
    pub fn always_fits(&self) -> bool {
        matches!(
            self,
            Transformer::Null | Transformer::PermuteInt | Transformer::PermuteUuid
        )
    }

    /// Like [`Transformer::apply`], but into `out` (cleared first), returning whether the
    /// result is a value (false: NULL). The pseudonyms that dominate masking costs are written
    /// straight into the caller's reused buffer: an allocation and a free per value was a
    /// tenth of the time spent on a masked table.
    pub fn apply_into(&self, v: Option<&[u8]>, cx: &Ctx, out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match (self, v) {
            (Transformer::Fake { kind, unique }, Some(v)) if kind.is_name() => {
                fake_name_into(*kind, *unique, v, cx, out);
                Ok(true)
            }
            (Transformer::PermuteInt, Some(v)) => {
                let x = parse_int(v).ok_or_else(|| anyhow!("not an integer"))?;
                // Negative values map to negative values of the same magnitude class.
                let y = if x >= 0 {
                    cx.rk.permute_key(x as u64) as i64
                } else {
                    -1 - cx.rk.permute_key((-(x + 1)) as u64) as i64
                };
                int_text_into(y, out);
                Ok(true)
            }
            _ => match self.apply(v, cx)? {
                Some(x) => {
                    *out = x;
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }

    /// Applies the transformer to `v` (None is NULL). Like [`compile`], one arm per transformer
    /// and therefore long; the hot ones have direct paths in `apply_into`.
    pub fn apply(&self, v: Option<&[u8]>, cx: &Ctx) -> Result<Option<Vec<u8>>> {
        // Transformers that decide NULL themselves.
        match self {
            Transformer::Null => return Ok(None),
            Transformer::Set(x) => return Ok(x.clone()),
            Transformer::Dictionary { map, missing } => {
                // NULL is no value to look up: it stays NULL, whatever the empty key maps to.
                let Some(key) = v else {
                    return Ok(None);
                };
                return match map.get(key) {
                    Some(x) => Ok(x.clone()),
                    None => match missing {
                        Missing::Keep => Ok(v.map(<[u8]>::to_vec)),
                        Missing::Null => Ok(None),
                        Missing::Error => bail!(
                            "value {:?} is not in the dictionary",
                            String::from_utf8_lossy(key)
                        ),
                    },
                };
            }
            Transformer::Command(slot, cmd, timeout) => {
                return run_external(slot, cmd, *timeout, v);
            }
            Transformer::Template(parts) => return Ok(Some(template(parts, cx))),
            _ => {}
        }
        let Some(v) = v else { return Ok(None) };
        let text = || std::str::from_utf8(v).map_err(|_| anyhow!("value is not UTF-8"));
        let out: Vec<u8> = match self {
            Transformer::Replace { from, to } => text()?.replace(from.as_str(), to).into_bytes(),
            Transformer::RegexReplace { re, with } => re
                .replace_all(text()?, with.as_str())
                .into_owned()
                .into_bytes(),
            Transformer::Mask {
                keep_first,
                keep_last,
                ch,
                email,
            } => mask(text()?, *keep_first, *keep_last, *ch, *email).into_bytes(),
            Transformer::Truncate { length } => text()?
                .chars()
                .take(*length)
                .collect::<String>()
                .into_bytes(),
            Transformer::DateTrunc { unit } => map_time(text()?, |dt| {
                let d = dt.date();
                let d = match unit {
                    DateUnit::Month => d.with_day(1),
                    DateUnit::Year => d.with_day(1).and_then(|d| d.with_month(1)),
                }
                .unwrap_or(d);
                d.and_hms_opt(0, 0, 0).unwrap_or(dt)
            })?,
            Transformer::Bucket { size } => {
                let x: f64 = text()?
                    .parse()
                    .map_err(|_| anyhow!("{v:?} is not a number"))?;
                let b = (x / size).floor() * size;
                format_number(b, text()?).into_bytes()
            }
            Transformer::NoiseNumber { relative, ty } => {
                let x: f64 = text()?.parse().map_err(|_| anyhow!("not a number"))?;
                let mut rng = cx.rk.rng(v);
                let f = rng.random_range(-relative.abs()..=relative.abs());
                let y = x * (1.0 + f);
                match ty {
                    Ty::Int { .. } => format!("{}", y.round() as i64).into_bytes(),
                    _ => format_number(y, text()?).into_bytes(),
                }
            }
            Transformer::NoiseTime { seconds } => {
                let mut rng = cx.rk.rng(v);
                let shift = if *seconds > 0 {
                    rng.random_range(-*seconds..=*seconds)
                } else {
                    0
                };
                let date_only = v.len() == 10;
                map_time(text()?, |dt| {
                    let s = if date_only {
                        shift / 86400 * 86400
                    } else {
                        shift
                    };
                    dt + chrono::Duration::seconds(s)
                })?
            }
            Transformer::RandomInt { min, max } => {
                let mut rng = cx.rk.rng(v);
                rng.random_range(*min..=*max).to_string().into_bytes()
            }
            Transformer::RandomFloat { min, max, scale } => {
                let mut rng = cx.rk.rng(v);
                let x = if max > min {
                    rng.random_range(*min..*max)
                } else {
                    *min
                };
                match scale {
                    Some(s) => format!("{x:.*}", *s as usize).into_bytes(),
                    None => x.to_string().into_bytes(),
                }
            }
            Transformer::RandomDate {
                min,
                max,
                timestamp,
            } => {
                let mut rng = cx.rk.rng(v);
                let days = (*max - *min).num_days().max(0);
                let d = *min + chrono::Duration::days(rng.random_range(0..=days));
                if *timestamp {
                    let secs: u32 = rng.random_range(0..86400);
                    let t = d
                        .and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60)
                        .unwrap();
                    // In the original's shape (its time zone suffix, if any).
                    map_time(text()?, |_| t)?
                } else {
                    d.format("%Y-%m-%d").to_string().into_bytes()
                }
            }
            Transformer::RandomUuid => {
                let mut rng = cx.rk.rng(v);
                let mut b: [u8; 16] = rng.random();
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                uuid_text(&b).into_bytes()
            }
            Transformer::RandomBool => {
                let mut rng = cx.rk.rng(v);
                if rng.random::<bool>() {
                    b"t".to_vec()
                } else {
                    b"f".to_vec()
                }
            }
            Transformer::Choice(values) => {
                let mut rng = cx.rk.rng(v);
                values[rng.random_range(0..values.len())]
                    .clone()
                    .into_bytes()
            }
            Transformer::Fake { kind, unique } => fake_value(*kind, *unique, v, cx).into_bytes(),
            Transformer::JsonSet { path, value } => {
                super::json::edit(v, path, &super::json::Op::Set(value))?
            }
            Transformer::JsonDelete { path } => {
                super::json::edit(v, path, &super::json::Op::Delete)?
            }
            Transformer::PermuteInt => {
                let mut out = Vec::new();
                self.apply_into(Some(v), cx, &mut out)?;
                out
            }
            Transformer::PermuteUuid => {
                let b = parse_uuid(text()?).ok_or_else(|| anyhow!("not a uuid"))?;
                uuid_text(&cx.rk.permute_block(b)).into_bytes()
            }
            Transformer::RandomTime { min, max } => {
                let secs = cx.rk.rng(v).random_range(*min..=*max);
                clock_text(secs, b"")
            }
            Transformer::NoiseClock { seconds } => {
                let (secs, rest) = parse_time(v).ok_or_else(|| anyhow!("{v:?} is not a time"))?;
                let shift = match *seconds {
                    0 => 0,
                    s => cx.rk.rng(v).random_range(-s..=s),
                };
                // Around midnight, keeping the fraction and the zone: 23:50 + 20 min is 00:10.
                let moved = (i64::from(secs.min(86399)) + shift).rem_euclid(86400) as u32;
                clock_text(moved, rest)
            }
            Transformer::Each(inner) => {
                super::array::map_elements(v, |e| inner.apply(Some(e), cx))?
            }
            Transformer::Hash { base64, length } => {
                let mac = cx.rk.mac(v);
                let mut text = if *base64 {
                    openssl::base64::encode_block(&mac).into_bytes()
                } else {
                    // encode_to_slice: hex::encode's char iterator costs more than the MAC.
                    let mut out = vec![0; mac.len() * 2];
                    hex::encode_to_slice(mac, &mut out).expect("twice the length");
                    out
                };
                text.truncate(length.unwrap_or(usize::MAX).min(text.len()));
                text
            }
            Transformer::Null
            | Transformer::Set(_)
            | Transformer::Dictionary { .. }
            | Transformer::Command(..)
            | Transformer::Template(_) => unreachable!("handled above"),
        };
        Ok(Some(out))
    }
}

fn template(parts: &[TemplatePart], cx: &Ctx) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.extend_from_slice(t.as_bytes()),
            TemplatePart::Column { index, original } => {
                let row = if *original {
                    cx.original_row
                } else {
                    cx.masked_row
                };
                if let Some(Some(v)) = row.get(*index) {
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out
}

fn mask(s: &str, first: usize, last: usize, ch: char, email: bool) -> String {
    let (local, domain) = match s.rsplit_once('@') {
        Some((l, d)) if email => (l, Some(d)),
        _ => (s, None),
    };
    let n = local.chars().count();
    // A value no longer than the parts to keep would come out whole: then nothing is kept.
    let (first, last) = if n <= first + last {
        (0, 0)
    } else {
        (first, last)
    };
    let mut out: String = local
        .chars()
        .enumerate()
        .map(|(i, c)| if i < first || i + last >= n { c } else { ch })
        .collect();
    if let Some(d) = domain {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// Formats a number with as many decimals as the original had.
fn format_number(x: f64, original: &str) -> String {
    let decimals = original.split_once('.').map_or(0, |(_, f)| f.len());
    format!("{x:.decimals$}")
}

/// Rewrites a date or timestamp in PostgreSQL's ISO output format, keeping its shape (date
/// only, fractional seconds, time zone suffix). infinity and -infinity stay. Years are as
/// PostgreSQL writes them: four digits or more (`10000-01-01`), and ` BC` at the very end for
/// years before 1 (`0044-03-15 BC`, year 1 BC being astronomical year 0).
fn map_time(s: &str, f: impl Fn(NaiveDateTime) -> NaiveDateTime) -> Result<Vec<u8>> {
    if s == "infinity" || s == "-infinity" {
        return Ok(s.as_bytes().to_vec());
    }
    let bad = || anyhow!("{s:?} is not a date or timestamp in ISO format");
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let (date, time) = match body.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut parts = date.splitn(3, '-');
    let mut num = |min_len: usize| -> Result<u32> {
        let p = parts
            .next()
            .filter(|p| p.len() >= min_len && p.bytes().all(|b| b.is_ascii_digit()));
        p.and_then(|p| p.parse().ok()).ok_or_else(bad)
    };
    let (year, month, day) = (num(4)? as i32, num(2)?, num(2)?);
    let astro = if bc { 1 - year } else { year };
    let d = NaiveDate::from_ymd_opt(astro, month, day).ok_or_else(bad)?;
    let (clock, tz) = match time {
        Some(t) => {
            // HH:MM:SS, optional fraction, then the zone, if any, from its sign on.
            let zone_at = t
                .get(8..)
                .and_then(|r| r.find(['+', '-']))
                .map_or(t.len(), |i| i + 8);
            let clock =
                NaiveTime::parse_from_str(&t[..zone_at], "%H:%M:%S%.f").map_err(|_| bad())?;
            (Some((clock, t[..zone_at].contains('.'))), &t[zone_at..])
        }
        None => (None, ""),
    };
    let r = f(d.and_time(clock.map_or(NaiveTime::MIN, |(c, _)| c)));
    let (y, bc_out) = match r.year() {
        y if y <= 0 => (1 - y, true),
        y => (y, false),
    };
    let mut out = format!("{y:04}-{:02}-{:02}", r.month(), r.day());
    if let Some((_, frac)) = clock {
        let t = if frac {
            r.format(" %H:%M:%S%.6f")
        } else {
            r.format(" %H:%M:%S")
        };
        out.push_str(&t.to_string());
        out.push_str(tz);
    }
    if bc_out {
        out.push_str(" BC");
    }
    Ok(out.into_bytes())
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let h: String = s
        .chars()
        .filter(|c| *c != '-' && *c != '{' && *c != '}')
        .collect();
    let v = hex::decode(h).ok()?;
    v.try_into().ok()
}

fn fake_value(kind: FakeKind, unique: bool, v: &[u8], cx: &Ctx) -> String {
    use fake::faker::address::en::{BuildingNumber, CityName, CountryName, StreetName};
    use fake::faker::company::en::CompanyName;
    use fake::faker::internet::en::{IPv4, IPv6, MACAddress, Username};
    use fake::faker::phone_number::en::PhoneNumber;
    if kind.is_name() {
        let mut out = Vec::new();
        fake_name_into(kind, unique, v, cx, &mut out);
        return String::from_utf8(out).expect("built from valid UTF-8 pieces");
    }
    let h = cx.rk.hash(v);
    let mut rng = RuleKey::rng_from(h);
    let tag = || base32(h as u64);
    match kind {
        FakeKind::FirstName | FakeKind::LastName | FakeKind::FullName | FakeKind::Email => {
            unreachable!("written by fake_name_into")
        }
        FakeKind::Username => {
            let u: String = Username().fake_with_rng(&mut rng);
            if unique { format!("{u}_{}", tag()) } else { u }
        }
        FakeKind::Phone => PhoneNumber().fake_with_rng(&mut rng),
        FakeKind::Company | FakeKind::StreetAddress | FakeKind::City | FakeKind::Country => {
            let v: String = match kind {
                FakeKind::Company => CompanyName().fake_with_rng(&mut rng),
                FakeKind::StreetAddress => {
                    let n: String = BuildingNumber().fake_with_rng(&mut rng);
                    let s: String = StreetName().fake_with_rng(&mut rng);
                    format!("{n} {s}")
                }
                FakeKind::City => CityName().fake_with_rng(&mut rng),
                _ => CountryName().fake_with_rng(&mut rng),
            };
            if unique { format!("{v} {}", tag()) } else { v }
        }
        FakeKind::Ipv4 => IPv4().fake_with_rng(&mut rng),
        FakeKind::Ipv6 => IPv6().fake_with_rng(&mut rng),
        FakeKind::Mac => MACAddress().fake_with_rng(&mut rng),
        FakeKind::CardNumber => {
            let mut d: Vec<u32> = vec![4];
            d.extend((0..14).map(|_| rng.random_range(0..10u32)));
            d.push(luhn_check_digit(&d));
            d.iter()
                .map(|x| char::from_digit(*x, 10).unwrap())
                .collect()
        }
        FakeKind::Iban => {
            let bban: String = (0..18)
                .map(|_| char::from_digit(rng.random_range(0..10), 10).unwrap())
                .collect();
            iban("DE", &bban)
        }
    }
}

/// An integer's decimal text, without the formatting machinery (once per masked key).
/// An integer as PostgreSQL writes one (`-` and digits), read without going through `str`;
/// anything else (surrounding spaces, a `+`) takes the general parser, which decides.
fn parse_int(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(v).ok()?.trim().parse().ok();
    }
    // Up to 18 digits cannot overflow.
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(if neg { -n } else { n })
}

fn int_text_into(x: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut n = x.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if x < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// The first and last names of the `fake` crate's English lists, as they appear in e-mail
/// local parts (letters and digits only, lower case), index for index: computed once instead
/// of once per value.
struct EmailNames {
    first: Vec<String>,
    last: Vec<String>,
}

fn email_names() -> &'static EmailNames {
    static NAMES: std::sync::OnceLock<EmailNames> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let local = |s: &&str| -> String {
            s.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        };
        EmailNames {
            first: EN::NAME_FIRST_NAME.iter().map(local).collect(),
            last: EN::NAME_LAST_NAME.iter().map(local).collect(),
        }
    })
}

/// Names and e-mail addresses, drawn as the `fake` crate's `FirstName` and `LastName` draw
/// them (one index into each English list), so the pseudonyms are the crate's; written into
/// `out` without allocating.
fn fake_name_into(kind: FakeKind, unique: bool, v: &[u8], cx: &Ctx, out: &mut Vec<u8>) {
    let h = cx.rk.hash(v);
    let mut rng = RuleKey::rng_from(h);
    let (firsts, lasts) = (EN::NAME_FIRST_NAME, EN::NAME_LAST_NAME);
    match kind {
        FakeKind::FirstName => {
            out.extend_from_slice(firsts[rng.random_range(..firsts.len())].as_bytes());
        }
        FakeKind::LastName => {
            out.extend_from_slice(lasts[rng.random_range(..lasts.len())].as_bytes());
        }
        FakeKind::FullName => {
            // Composed here: the crate's Name goes through a template with string
            // replacement, three times slower.
            out.extend_from_slice(firsts[rng.random_range(..firsts.len())].as_bytes());
            out.push(b' ');
            out.extend_from_slice(lasts[rng.random_range(..lasts.len())].as_bytes());
        }
        FakeKind::Email => {
            let names = email_names();
            let first = &names.first[rng.random_range(..firsts.len())];
            let last = &names.last[rng.random_range(..lasts.len())];
            let domain = ["example.com", "example.net", "example.org"][rng.random_range(0..3)];
            out.extend_from_slice(first.as_bytes());
            out.push(b'.');
            out.extend_from_slice(last.as_bytes());
            if unique {
                // A suffix from the keyed hash keeps values unique in practice (64 bits: a
                // collision among a million values has odds of about 3 in 10^8) where a
                // column is usually unique.
                out.push(b'.');
                base32_into(h as u64, out);
            }
            out.push(b'@');
            out.extend_from_slice(domain.as_bytes());
        }
        _ => unreachable!("not a name kind"),
    }
    // Names take the tag after a space; an e-mail address took it in its local part.
    if unique && kind != FakeKind::Email {
        out.push(b' ');
        base32_into(h as u64, out);
    }
}

/// `x` in 13 base32 digits (lowest first), appended to `out`: a short unique tag.
fn base32_into(mut x: u64, out: &mut Vec<u8>) {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    for _ in 0..13 {
        out.push(A[(x & 31) as usize]);
        x >>= 5;
    }
}

fn base32(x: u64) -> String {
    let mut out = Vec::with_capacity(13);
    base32_into(x, &mut out);
    String::from_utf8(out).expect("ASCII")
}

/// The Luhn check digit for `digits` (the check digit itself not included).
pub fn luhn_check_digit(digits: &[u32]) -> u32 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                *d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// An IBAN with valid ISO 13616 check digits for `country` and `bban`.
pub fn iban(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap();
        for d in v.to_string().chars() {
            rem = (rem * 10 + d.to_digit(10).unwrap()) % 97;
        }
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_their_shape_bc_and_five_digit_years_included() {
        let same = |s: &str| String::from_utf8(map_time(s, |t| t).unwrap()).unwrap();
        for s in [
            "2020-05-17",
            "0044-03-15 BC",
            "10000-01-01",
            "2021-03-04 05:06:07",
            "2021-03-04 05:06:07.250000+05:30",
            "0001-01-01 00:00:00+00 BC",
            "12345-06-07 08:09:10-08",
        ] {
            assert_eq!(same(s), s);
        }
        let month = |s: &str| {
            let r = map_time(s, |t| t.date().with_day(1).unwrap().and_time(t.time())).unwrap();
            String::from_utf8(r).unwrap()
        };
        assert_eq!(month("0044-03-15 BC"), "0044-03-01 BC");
        let back = |s: &str| {
            let r = map_time(s, |t| t - chrono::Duration::days(1)).unwrap();
            String::from_utf8(r).unwrap()
        };
        assert_eq!(back("0001-01-01"), "0001-12-31 BC");
        assert!(map_time("2020-13-01", |t| t).is_err());
        assert!(map_time("20-01-01", |t| t).is_err());
    }

    #[test]
    fn integers_parse_as_rust_does() {
        for t in [
            "0",
            "7",
            "-7",
            "0042",
            "-0",
            "123456789012345678",
            "-123456789012345678",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            " 12 ",
            "+5",
            "",
            "-",
            "1-2",
            "12a",
            "١٢",
        ] {
            assert_eq!(
                parse_int(t.as_bytes()),
                t.trim().parse::<i64>().ok(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn integers_as_text() {
        for x in [0i64, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            int_text_into(x, &mut out);
            assert_eq!(out, x.to_string().into_bytes());
        }
    }

    /// The names and e-mails written without allocating are the ones the `fake` crate draws
    /// from the same generator: the pseudonyms do not change with the fast path.
    #[test]
    fn fast_names_are_the_crates_draws() {
        use fake::faker::name::en::{FirstName, LastName};
        let rk = super::super::keyed::Key::from_material(b"k").for_rule(b"rule");
        let cx = Ctx {
            rk: &rk,
            original_row: &[],
            masked_row: &[],
        };
        let local = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        };
        for i in 0..500 {
            let v = format!("value {i}");
            let h = rk.hash(v.as_bytes());
            let mut rng = RuleKey::rng_from(h);
            let first: &str = FirstName().fake_with_rng(&mut rng);
            let last: &str = LastName().fake_with_rng(&mut rng);
            let domain = ["example.com", "example.net", "example.org"][rng.random_range(0..3)];
            let want = [
                (FakeKind::FullName, false, format!("{first} {last}")),
                (
                    FakeKind::Email,
                    true,
                    format!(
                        "{}.{}.{}@{domain}",
                        local(first),
                        local(last),
                        base32(h as u64)
                    ),
                ),
            ];
            for (kind, unique, want) in want {
                let mut out = Vec::new();
                fake_name_into(kind, unique, v.as_bytes(), &cx, &mut out);
                assert_eq!(String::from_utf8(out).unwrap(), want);
            }
        }
    }

    #[test]
    fn check_digits_are_valid() {
        // 4111 1111 1111 1111 is the classic valid test number.
        let d: Vec<u32> = "411111111111111"
            .chars()
            .map(|c| c.to_digit(10).unwrap())
            .collect();
        assert_eq!(luhn_check_digit(&d), 1);
        // The IBAN example from ISO 13616.
        assert_eq!(iban("GB", "WEST12345698765432"), "GB82WEST12345698765432");
        assert_eq!(
            mask("alice@example.com", 1, 0, '*', true),
            "a****@example.com"
        );
        assert_eq!(
            mask("4111222233334444", 0, 4, '#', true),
            "############4444"
        );
        assert_eq!(parse_interval("1 day 2 hours").unwrap(), 93600);
        assert_eq!(
            String::from_utf8(map_time("2024-03-17 10:11:12.5+01", |d| d).unwrap()).unwrap(),
            "2024-03-17 10:11:12.500000+01"
        );
    }
}
