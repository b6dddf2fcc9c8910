//! COPY text rows turned into COPY binary tuples, for the column types whose text form the
//! client can read exactly. weir-load sends a table's rows in binary when it can: the server's
//! text input functions (timestamptz, numeric, integers, uuid, inet) were a fifth of its work
//! loading the benchmark's events table (`COPY ... FROM` a file on the server, 2026-12-05:
//! 4.30-4.38 s as text, 3.30-3.49 s as binary).
//!
//! The archive keeps COPY text (psql and pg_restore read it by hand, weir-mask rewrites it);
//! this is only how weir-load sends it. Each codec reads the form the type's output function
//! writes (DateStyle ISO, `extra_float_digits = 3`, hex bytea, as weir-extract sets them) and
//! makes of it exactly the value the input function would; any text outside what it reads
//! makes [`Converter::convert`] give up on the chunk, which then goes as text. The binary layouts are the types' send/receive functions
//! (src/backend/utils/adt: int.c, float.c, numeric.c, date.c, timestamp.c, uuid.c, network.c,
//! jsonb.c, arrayfuncs.c) and the stream's header and trailer are the COPY documentation's
//! "Binary Format".

use super::copy_text::{Delimiters, decode_field_into};
use std::borrow::Cow;

/// The stream's header: the signature, no flags, no header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The stream's trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Days between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// How one column's text becomes its binary form.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Bool,
    /// text, varchar, bpchar and json: the bytes as they are.
    Bytes,
    Jsonb,
    Bytea,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    /// inet (`false`) or cidr (`true`).
    Inet(bool),
    /// A one-dimensional array: its elements' codec and type OID.
    Array(Box<Codec>, u32),
}

impl Codec {
    /// The codec for a column of type `name`, as `format_type` writes it with an empty search
    /// path (so any type of the user's own is schema-qualified and has none).
    pub fn for_type(name: &str) -> Option<Codec> {
        if let Some(elem) = name.strip_suffix("[]") {
            let (codec, oid) = Codec::scalar(elem)?;
            return Some(Codec::Array(Box::new(codec), oid));
        }
        Codec::scalar(name).map(|(c, _)| c)
    }

    /// A scalar type's codec and OID (pg_type.dat).
    fn scalar(name: &str) -> Option<(Codec, u32)> {
        // A type modifier, `(12,2)` or `(3)`, changes neither form; the server applies it to
        // the binary value as it does to the text one.
        let (base, rest) = match name.split_once('(') {
            Some((b, r)) => (b, r.split_once(')').map(|(_, after)| after)?),
            None => (name, ""),
        };
        let c = match (base, rest) {
            ("smallint", "") => (Codec::Int2, 21),
            ("integer", "") => (Codec::Int4, 23),
            ("bigint", "") => (Codec::Int8, 20),
            ("real", "") => (Codec::Float4, 700),
            ("double precision", "") => (Codec::Float8, 701),
            ("numeric", "") => (Codec::Numeric, 1700),
            ("boolean", "") => (Codec::Bool, 16),
            ("text", "") => (Codec::Bytes, 25),
            ("character varying", "") => (Codec::Bytes, 1043),
            ("character", "") | ("bpchar", "") => (Codec::Bytes, 1042),
            ("json", "") => (Codec::Bytes, 114),
            ("jsonb", "") => (Codec::Jsonb, 3802),
            ("bytea", "") => (Codec::Bytea, 17),
            ("date", "") => (Codec::Date, 1082),
            ("timestamp", " without time zone") | ("timestamp without time zone", "") => {
                (Codec::Timestamp, 1114)
            }
            ("timestamp", " with time zone") | ("timestamp with time zone", "") => {
                (Codec::Timestamptz, 1184)
            }
            ("uuid", "") => (Codec::Uuid, 2950),
            ("inet", "") => (Codec::Inet(false), 869),
            ("cidr", "") => (Codec::Inet(true), 650),
            _ => return None,
        };
        Some(c)
    }

    /// Appends the binary form of `v` (a decoded text value) to `out`; false when `v` is not
    /// in the form this reads exactly.
    fn encode(&self, v: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Codec::Int2 => match int(v, i16::MIN.into(), i16::MAX.into()) {
                Some(n) => out.extend_from_slice(&(n as i16).to_be_bytes()),
                None => return false,
            },
            Codec::Int4 => match int(v, i32::MIN.into(), i32::MAX.into()) {
                Some(n) => out.extend_from_slice(&(n as i32).to_be_bytes()),
                None => return false,
            },
            Codec::Int8 => match int(v, i64::MIN, i64::MAX) {
                Some(n) => out.extend_from_slice(&n.to_be_bytes()),
                None => return false,
            },
            Codec::Float4 => match float::<f32>(v) {
                Some(f) => out.extend_from_slice(&f.to_be_bytes()),
                None => return false,
            },
            Codec::Float8 => match float::<f64>(v) {
                Some(f) => out.extend_from_slice(&f.to_be_bytes()),
                None => return false,
            },
            Codec::Numeric => return numeric(v, out),
            Codec::Bool => match v {
                b"t" => out.push(1),
                b"f" => out.push(0),
                _ => return false,
            },
            Codec::Bytes => out.extend_from_slice(v),
            Codec::Jsonb => {
                // jsonb's binary form is a version number and the JSON text (jsonb_recv).
                out.push(1);
                out.extend_from_slice(v);
            }
            Codec::Bytea => return bytea(v, out),
            Codec::Date => match date_value(v) {
                Some(d) => out.extend_from_slice(&d.to_be_bytes()),
                None => return false,
            },
            Codec::Timestamp | Codec::Timestamptz => {
                match timestamp(v, *self == Codec::Timestamptz) {
                    Some(t) => out.extend_from_slice(&t.to_be_bytes()),
                    None => return false,
                }
            }
            Codec::Uuid => return uuid(v, out),
            Codec::Inet(cidr) => return inet(v, *cidr, out),
            Codec::Array(elem, oid) => return array(v, elem, *oid, out),
        }
        true
    }
}

/// Turns a table's COPY text rows into binary tuples, column by column.
#[derive(Debug)]
pub struct Converter {
    codecs: Vec<Codec>,
}

impl Converter {
    /// A converter for columns of these types, in COPY's column order; `None` when any has no
    /// codec (the table's rows then go as text).
    pub fn for_types<'a>(types: impl IntoIterator<Item = &'a str>) -> Option<Converter> {
        let codecs: Option<Vec<Codec>> = types.into_iter().map(Codec::for_type).collect();
        codecs
            .filter(|c| !c.is_empty() && c.len() <= i16::MAX as usize)
            .map(|codecs| Converter { codecs })
    }

    /// Appends the binary tuples of `text`'s rows (whole rows of COPY text) to `out`, without
    /// header or trailer. False, with `out` left partly written, when a row has the wrong
    /// number of fields or a value is not one this reads exactly.
    pub fn convert(&self, text: &[u8], out: &mut Vec<u8>) -> bool {
        let mut field = Vec::new();
        let mut start = 0;
        let mut col = 0;
        for end in Delimiters::new(text) {
            if col == 0 {
                out.extend_from_slice(&(self.codecs.len() as i16).to_be_bytes());
            }
            let Some(codec) = self.codecs.get(col) else {
                return false;
            };
            if !put_field(codec, &text[start..end], &mut field, out) {
                return false;
            }
            col += 1;
            if text[end] == b'\n' {
                if col != self.codecs.len() {
                    return false;
                }
                col = 0;
            }
            start = end + 1;
        }
        col == 0 && start == text.len()
    }
}

/// A NULL field or array element: length -1, no value.
const NULL: [u8; 4] = (-1i32).to_be_bytes();

/// One field: its length and binary value, or -1 for NULL.
fn put_field(codec: &Codec, raw: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    if raw == b"\\N" {
        out.extend_from_slice(&NULL);
        return true;
    }
    // Numbers, dates, uuids and addresses are never written with an escape: a backslash in
    // one makes its codec refuse the value.
    let text_like = matches!(
        codec,
        Codec::Bytes | Codec::Jsonb | Codec::Bytea | Codec::Array(..)
    );
    if !(text_like && raw.contains(&b'\\')) {
        return put_value(codec, raw, out);
    }
    // Not `\N` (above), so always a value.
    decode_field_into(raw, scratch).is_ok() && put_value(codec, scratch, out)
}

/// `v`'s length and binary value; false when its codec refuses it.
fn put_value(codec: &Codec, v: &[u8], out: &mut Vec<u8>) -> bool {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    if !codec.encode(v, out) {
        return false;
    }
    let Ok(len) = i32::try_from(out.len() - at - 4) else {
        return false;
    };
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    true
}

/// A decimal integer as int2in/int4in/int8in read it from int*out: an optional minus sign and
/// digits, nothing else, within the type's range.
fn int(v: &[u8], min: i64, max: i64) -> Option<i64> {
    let (neg, digits) = match v.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, v),
    };
    // Nineteen digits fit in a u64 unchecked (10^19 - 1 < 2^64).
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        let x = d.wrapping_sub(b'0');
        if x > 9 {
            return None;
        }
        n = n * 10 + u64::from(x);
    }
    let n = if neg { -i128::from(n) } else { i128::from(n) };
    (i128::from(min)..=i128::from(max))
        .contains(&n)
        .then_some(n as i64)
}

/// A float as float4in/float8in read it: the three special words, or a decimal number whose
/// value rounds to a finite float that is not a zero made of nonzero digits (the server
/// refuses those as out of range). Rust's parser rounds correctly, as strtod does.
fn float<F: std::str::FromStr + Into<f64> + Copy>(v: &[u8]) -> Option<F> {
    let s = std::str::from_utf8(v).ok()?;
    let special = matches!(s, "NaN" | "Infinity" | "-Infinity");
    if !special
        && !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    let f: F = match s {
        "Infinity" => "inf".parse().ok()?,
        "-Infinity" => "-inf".parse().ok()?,
        _ => s.parse().ok()?,
    };
    let x: f64 = f.into();
    if special {
        return Some(f);
    }
    let zero_digits = || {
        let mantissa = s.split(['e', 'E']).next().unwrap_or("");
        mantissa.bytes().all(|b| !(b'1'..=b'9').contains(&b))
    };
    (x.is_finite() && (x != 0.0 || zero_digits())).then_some(f)
}

/// numeric_out's text (`-123.4500`, `NaN`, `Infinity`, `-Infinity`) in numeric_send's form:
/// base-10000 digits aligned on the decimal point, the weight of the first, the sign and the
/// display scale, with leading and trailing zero digits left out.
fn numeric(v: &[u8], out: &mut Vec<u8>) -> bool {
    const POS: u16 = 0x0000;
    const NEG: u16 = 0x4000;
    let special = match v {
        b"NaN" => Some(0xC000u16),
        b"Infinity" => Some(0xD000),
        b"-Infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        for x in [0u16, 0, sign, 0] {
            out.extend_from_slice(&x.to_be_bytes());
        }
        return true;
    }
    let (neg, body) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int_part, frac) = match body.iter().position(|&b| b == b'.') {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &b""[..]),
    };
    let digits_ok = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if int_part.is_empty() || !digits_ok(int_part) || !digits_ok(frac) {
        return false;
    }
    if body.contains(&b'.') && frac.is_empty() {
        return false;
    }
    let Ok(dscale) = u16::try_from(frac.len()) else {
        return false;
    };
    if dscale > 0x3FFF {
        return false;
    }
    // Groups of four decimal digits, written after the header's place: the integer part
    // padded on the left, the fraction on the right; zero groups at either end go after.
    let lead = (4 - int_part.len() % 4) % 4;
    let int_groups = (int_part.len() + lead) / 4;
    let head = out.len();
    out.extend_from_slice(&[0; 8]);
    let (mut acc, mut n) = (0u16, lead);
    for &d in int_part.iter().chain(frac) {
        acc = acc * 10 + u16::from(d - b'0');
        n += 1;
        if n == 4 {
            out.extend_from_slice(&acc.to_be_bytes());
            (acc, n) = (0, 0);
        }
    }
    if n > 0 {
        out.extend_from_slice(&(acc * 10u16.pow(4 - n as u32)).to_be_bytes());
    }
    let groups = (out.len() - head - 8) / 2;
    let group = |out: &Vec<u8>, i: usize| out[head + 8 + 2 * i] | out[head + 9 + 2 * i] != 0;
    let Some(first) = (0..groups).find(|&i| group(out, i)) else {
        // Zero, whatever its sign was written as: no digits, weight 0, positive.
        out.truncate(head);
        for x in [0u16, 0, POS, dscale] {
            out.extend_from_slice(&x.to_be_bytes());
        }
        return true;
    };
    let last = (first..groups)
        .rev()
        .find(|&i| group(out, i))
        .unwrap_or(first);
    out.truncate(head + 8 + 2 * (last + 1));
    out.copy_within(head + 8 + 2 * first.., head + 8);
    out.truncate(head + 8 + 2 * (last + 1 - first));
    let (Ok(weight), Ok(ndigits)) = (
        i16::try_from(int_groups as i64 - 1 - first as i64),
        u16::try_from(last + 1 - first),
    ) else {
        return false;
    };
    let sign = if neg { NEG } else { POS };
    out[head..head + 2].copy_from_slice(&ndigits.to_be_bytes());
    out[head + 2..head + 4].copy_from_slice(&weight.to_be_bytes());
    out[head + 4..head + 6].copy_from_slice(&sign.to_be_bytes());
    out[head + 6..head + 8].copy_from_slice(&dscale.to_be_bytes());
    true
}

/// bytea's hex output, `\x` and two digits a byte.
fn bytea(v: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(hex) = v.strip_prefix(b"\\x") else {
        return false;
    };
    hex_pairs(hex, out)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Fixed-width decimal digits.
fn digits(v: &[u8]) -> Option<i64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms", days_from_civil), for years 1 to 9999.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > month_days[m as usize - 1]
    {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD`, as days since 2000-01-01.
fn days(v: &[u8]) -> Option<i64> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&v[..4])?, digits(&v[5..7])?, digits(&v[8..])?);
    Some(days_from_civil(y, m, d)? - PG_EPOCH_DAYS)
}

/// A date, ISO style, AD years 1 to 9999, or infinity (date.h: DATEVAL_NOBEGIN/NOEND).
fn date_value(v: &[u8]) -> Option<i32> {
    match v {
        b"infinity" => Some(i32::MAX),
        b"-infinity" => Some(i32::MIN),
        _ => i32::try_from(days(v)?).ok(),
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, with a `+HH[:MM[:SS]]` offset when `zoned`, as
/// microseconds since 2000-01-01 00:00 (UTC when zoned), or infinity (DT_NOBEGIN/DT_NOEND).
fn timestamp(v: &[u8], zoned: bool) -> Option<i64> {
    match v {
        b"infinity" => return Some(i64::MAX),
        b"-infinity" => return Some(i64::MIN),
        _ => {}
    }
    if v.len() < 19 || v[10] != b' ' || v[13] != b':' || v[16] != b':' {
        return None;
    }
    let day = days(&v[..10])?;
    let (h, mi, s) = (
        digits(&v[11..13])?,
        digits(&v[14..16])?,
        digits(&v[17..19])?,
    );
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut rest = &v[19..];
    let mut micros = 0;
    if let Some(f) = rest.strip_prefix(b".") {
        let n = f.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return None;
        }
        micros = digits(&f[..n])? * 10i64.pow(6 - n as u32);
        rest = &f[n..];
    }
    let local = ((day * 24 + h) * 60 + mi) * 60 + s;
    let offset = match zoned {
        true => offset_seconds(rest)?,
        false if rest.is_empty() => 0,
        false => return None,
    };
    // Years 1 to 9999 are well inside timestamp's range (4713 BC to 294276 AD).
    Some((local - offset) * 1_000_000 + micros)
}

/// `+HH`, `+HH:MM` or `+HH:MM:SS` (or `-`), as seconds east of UTC.
fn offset_seconds(v: &[u8]) -> Option<i64> {
    let (sign, rest) = match v.split_first()? {
        (b'+', r) => (1, r),
        (b'-', r) => (-1, r),
        _ => return None,
    };
    let mut parts = rest.split(|&b| b == b':');
    let mut secs = 0;
    let mut n = 0;
    for (i, p) in parts.by_ref().enumerate() {
        if i > 2 || p.len() != 2 {
            return None;
        }
        let x = digits(p)?;
        if i > 0 && x > 59 {
            return None;
        }
        secs = secs * 60 + x;
        n = i + 1;
    }
    // Pad to seconds: +05 is five hours, +05:30 five and a half.
    Some(sign * secs * 60i64.pow(3 - n as u32))
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, uuid_out's form.
fn uuid(v: &[u8], out: &mut Vec<u8>) -> bool {
    if v.len() != 36 || [8, 13, 18, 23].iter().any(|&i| v[i] != b'-') {
        return false;
    }
    [&v[..8], &v[9..13], &v[14..18], &v[19..23], &v[24..]]
        .iter()
        .all(|part| hex_pairs(part, out))
}

/// Two hex digits a byte.
fn hex_pairs(hex: &[u8], out: &mut Vec<u8>) -> bool {
    if hex.len() % 2 != 0 {
        return false;
    }
    for pair in hex.chunks_exact(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return false,
        }
    }
    true
}

/// inet_out's and cidr_out's text, an address with an optional `/bits`, in network_send's
/// form: family (PGSQL_AF_INET 2, PGSQL_AF_INET6 3), bits, is_cidr, length, address.
fn inet(v: &[u8], cidr: bool, out: &mut Vec<u8>) -> bool {
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => match b.parse::<u8>() {
            Ok(n) if !b.starts_with('+') => (a, Some(n)),
            _ => return false,
        },
        None => (s, None),
    };
    let (v4, v6);
    let (family, max, bytes): (u8, u8, &[u8]) = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            v4 = a.octets();
            (2, 32, &v4)
        }
        Ok(std::net::IpAddr::V6(a)) => {
            v6 = a.octets();
            (3, 128, &v6)
        }
        Err(_) => return false,
    };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return false;
    }
    out.extend_from_slice(&[family, bits, u8::from(cidr), bytes.len() as u8]);
    out.extend_from_slice(bytes);
    true
}

/// A one-dimensional array as array_out writes it (`{a,"b c",NULL}`, default bounds), in
/// array_send's form. Nested arrays, explicit bounds and anything array_out would not write
/// are refused.
fn array(v: &[u8], elem: &Codec, oid: u32, out: &mut Vec<u8>) -> bool {
    let Some(body) = v.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}")) else {
        return false;
    };
    let head = out.len();
    // ndim, has-nulls flag, element type; then the one dimension's length and lower bound.
    let ndim: i32 = if body.is_empty() { 0 } else { 1 };
    out.extend_from_slice(&ndim.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&oid.to_be_bytes());
    if body.is_empty() {
        return true;
    }
    let dims = out.len();
    out.extend_from_slice(&[0; 8]);
    let (mut count, mut nulls) = (0i32, false);
    let mut i = 0;
    loop {
        let Some((item, quoted, next)) = array_item(body, i) else {
            return false;
        };
        if !quoted && item.eq_ignore_ascii_case(b"NULL") {
            out.extend_from_slice(&NULL);
            nulls = true;
        } else if !put_value(elem, &item, out) {
            return false;
        }
        count += 1;
        match body.get(next) {
            None => break,
            Some(b',') => i = next + 1,
            Some(_) => return false,
        }
    }
    out[head + 4..head + 8].copy_from_slice(&i32::from(nulls).to_be_bytes());
    out[dims..dims + 4].copy_from_slice(&count.to_be_bytes());
    out[dims + 4..dims + 8].copy_from_slice(&1i32.to_be_bytes());
    true
}

/// The array element starting at `i`: quoted (a backslash escapes any character) or bare (no
/// quote, backslash, brace or white space, not empty). Returns it, whether it was quoted, and
/// where it ends.
fn array_item(body: &[u8], i: usize) -> Option<(Cow<'_, [u8]>, bool, usize)> {
    if body.get(i) == Some(&b'"') {
        let rest = &body[i + 1..];
        let close = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if rest[close] == b'"' {
            return Some((Cow::Borrowed(&rest[..close]), true, i + 1 + close + 1));
        }
        let mut item = rest[..close].to_vec();
        let mut j = close;
        loop {
            match *rest.get(j)? {
                b'"' => return Some((Cow::Owned(item), true, i + 1 + j + 1)),
                b'\\' => {
                    item.push(*rest.get(j + 1)?);
                    j += 2;
                }
                c => {
                    item.push(c);
                    j += 1;
                }
            }
        }
    }
    let end = body[i..]
        .iter()
        .position(|&b| b == b',')
        .map_or(body.len(), |p| i + p);
    let bare = &body[i..end];
    let plain = |b: &u8| !b"\"\\{} \t\n\r\x0b\x0c".contains(b);
    if bare.is_empty() || !bare.iter().all(plain) {
        return None;
    }
    Some((Cow::Borrowed(bare), false, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USECS_PER_DAY: i64 = 86_400_000_000;

    fn enc(c: &Codec, v: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        c.encode(v.as_bytes(), &mut out).then_some(out)
    }

    fn words(b: &[u8]) -> Vec<i16> {
        b.chunks(2)
            .map(|w| i16::from_be_bytes([w[0], w[1]]))
            .collect()
    }

    #[test]
    fn integers_in_range_only() {
        assert_eq!(enc(&Codec::Int2, "-32768"), Some(vec![0x80, 0]));
        assert_eq!(enc(&Codec::Int2, "32768"), None);
        assert_eq!(enc(&Codec::Int4, "7"), Some(vec![0, 0, 0, 7]));
        assert_eq!(
            enc(&Codec::Int8, "-9223372036854775808"),
            Some(i64::MIN.to_be_bytes().to_vec())
        );
        assert_eq!(enc(&Codec::Int8, "9223372036854775808"), None);
        for bad in ["", "-", "+1", " 1", "1.0", "1e3"] {
            assert_eq!(enc(&Codec::Int4, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn floats_round_as_the_server_does_and_refuse_what_it_refuses() {
        assert_eq!(
            enc(&Codec::Float8, "0.1"),
            Some(0.1f64.to_be_bytes().to_vec())
        );
        assert_eq!(
            enc(&Codec::Float4, "0.1"),
            Some(0.1f32.to_be_bytes().to_vec())
        );
        assert_eq!(
            enc(&Codec::Float8, "-0"),
            Some((-0.0f64).to_be_bytes().to_vec())
        );
        assert_eq!(
            enc(&Codec::Float8, "-Infinity"),
            Some(f64::NEG_INFINITY.to_be_bytes().to_vec())
        );
        assert!(enc(&Codec::Float8, "NaN").is_some());
        assert_eq!(enc(&Codec::Float8, "1e400"), None, "out of range");
        assert_eq!(enc(&Codec::Float8, "1e-400"), None, "underflow");
        assert_eq!(enc(&Codec::Float4, "1e39"), None);
        assert_eq!(enc(&Codec::Float8, "inf"), None);
        assert_eq!(enc(&Codec::Float8, "0x10"), None);
    }

    #[test]
    fn numerics_in_base_10000_with_weight_and_scale() {
        // 12345.678 = 1 2345 . 6780: weight 1, dscale 3.
        let b = enc(&Codec::Numeric, "-12345.678").unwrap();
        assert_eq!(words(&b), [3, 1, 0x4000, 3, 1, 2345, 6780]);
        // 0.00012 = 0000 . 0001 2000: weight -1, leading zero group left out.
        assert_eq!(
            words(&enc(&Codec::Numeric, "0.00012").unwrap()),
            [2, -1, 0, 5, 1, 2000]
        );
        // 1000000 = 100 0000: trailing zero group left out.
        assert_eq!(
            words(&enc(&Codec::Numeric, "1000000").unwrap()),
            [1, 1, 0, 0, 100]
        );
        assert_eq!(words(&enc(&Codec::Numeric, "-0.00").unwrap()), [0, 0, 0, 2]);
        assert_eq!(
            words(&enc(&Codec::Numeric, "NaN").unwrap()),
            [0, 0, 0xC000u16 as i16, 0]
        );
        for bad in ["", "1.", ".5", "1e5", "+1", "1,0", "--1"] {
            assert_eq!(enc(&Codec::Numeric, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        assert_eq!(enc(&Codec::Date, "2000-01-01"), Some(vec![0; 4]));
        assert_eq!(
            enc(&Codec::Date, "1999-12-31"),
            Some((-1i32).to_be_bytes().to_vec())
        );
        assert_eq!(
            enc(&Codec::Date, "2024-02-29"),
            Some(8825i32.to_be_bytes().to_vec())
        );
        assert_eq!(enc(&Codec::Date, "2023-02-29"), None);
        assert_eq!(enc(&Codec::Date, "0044-03-15 BC"), None);
        assert_eq!(
            enc(&Codec::Date, "infinity"),
            Some(i32::MAX.to_be_bytes().to_vec())
        );
        let ts = |v| enc(&Codec::Timestamptz, v).map(|b| i64::from_be_bytes(b.try_into().unwrap()));
        assert_eq!(ts("2000-01-01 00:00:00+00"), Some(0));
        assert_eq!(ts("2000-01-01 05:30:00.5+05:30"), Some(500_000));
        assert_eq!(ts("1999-12-31 23:59:59.999999-00:00:01"), Some(999_999));
        assert_eq!(ts("2000-01-01 00:00:00"), None, "no offset");
        assert_eq!(ts("2000-01-01 24:00:00+00"), None);
        assert_eq!(ts("2000-01-01 00:00:00.1234567+00"), None);
        let plain =
            |v| enc(&Codec::Timestamp, v).map(|b| i64::from_be_bytes(b.try_into().unwrap()));
        assert_eq!(
            plain("2000-01-02 00:00:01.25"),
            Some(USECS_PER_DAY + 1_250_000)
        );
        assert_eq!(plain("2000-01-02 00:00:01+00"), None);
    }

    #[test]
    fn uuids_addresses_bytea_and_booleans() {
        let u = enc(&Codec::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(u[..3], [0xa0, 0xee, 0xbc]);
        assert_eq!(enc(&Codec::Uuid, "a0eebc999c0b4ef8bb6d6bb9bd380a11"), None);
        assert_eq!(
            enc(&Codec::Inet(false), "10.1.2.3"),
            Some(vec![2, 32, 0, 4, 10, 1, 2, 3])
        );
        assert_eq!(
            enc(&Codec::Inet(true), "10.1.0.0/16"),
            Some(vec![2, 16, 1, 4, 10, 1, 0, 0])
        );
        assert_eq!(
            enc(&Codec::Inet(false), "::1/64").unwrap()[..4],
            [3, 64, 0, 16]
        );
        assert_eq!(enc(&Codec::Inet(false), "10.1.2.3/33"), None);
        assert_eq!(enc(&Codec::Inet(false), "fe80::1%eth0"), None);
        assert_eq!(enc(&Codec::Bytea, "\\x00ff"), Some(vec![0, 255]));
        assert_eq!(enc(&Codec::Bytea, "\\000"), None, "escape format");
        assert_eq!(enc(&Codec::Bool, "t"), Some(vec![1]));
        assert_eq!(enc(&Codec::Bool, "true"), None);
    }

    #[test]
    fn one_dimensional_arrays_with_quotes_and_nulls() {
        let text = Codec::for_type("text[]").unwrap();
        let b = enc(&text, r#"{a,"b c",NULL,"NULL","x\"y"}"#).unwrap();
        let mut want = Vec::new();
        for w in [1i32, 1] {
            want.extend_from_slice(&w.to_be_bytes());
        }
        want.extend_from_slice(&25u32.to_be_bytes());
        for w in [5i32, 1, 1] {
            want.extend_from_slice(&w.to_be_bytes());
        }
        want.push(b'a');
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(b"b c");
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&4i32.to_be_bytes());
        want.extend_from_slice(b"NULL");
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(b"x\"y");
        assert_eq!(b, want);
        assert_eq!(enc(&text, "{}").unwrap().len(), 12);
        for bad in ["{{a}}", "[0:1]={a,b}", "{a,}", "{ a}", "a", "{\"a}"] {
            assert_eq!(enc(&text, bad), None, "{bad:?}");
        }
        assert_eq!(
            Codec::for_type("integer[]"),
            Some(Codec::Array(Box::new(Codec::Int4), 23))
        );
        assert!(enc(&Codec::for_type("integer[]").unwrap(), "{1,x}").is_none());
    }

    #[test]
    fn types_by_name_with_modifiers_and_none_for_others() {
        assert_eq!(Codec::for_type("numeric(12,2)"), Some(Codec::Numeric));
        assert_eq!(Codec::for_type("character varying(20)"), Some(Codec::Bytes));
        assert_eq!(
            Codec::for_type("timestamp(3) with time zone"),
            Some(Codec::Timestamptz)
        );
        assert_eq!(
            Codec::for_type("timestamp without time zone"),
            Some(Codec::Timestamp)
        );
        for other in [
            "public.mood",
            "interval",
            "integer[][]",
            "money",
            "tsvector",
            "\"char\"",
        ] {
            assert_eq!(Codec::for_type(other), None, "{other}");
        }
    }

    #[test]
    fn rows_become_tuples_or_nothing() {
        let c = Converter::for_types(["integer", "text"]).unwrap();
        let mut out = Vec::new();
        assert!(c.convert(b"1\ta\\tb\n2\t\\N\n", &mut out));
        let mut want = Vec::new();
        want.extend_from_slice(&2i16.to_be_bytes());
        want.extend_from_slice(&4i32.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&3i32.to_be_bytes());
        want.extend_from_slice(b"a\tb");
        want.extend_from_slice(&2i16.to_be_bytes());
        want.extend_from_slice(&4i32.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(out, want);
        for bad in [&b"1\n"[..], b"1\ta\tb\n", b"x\ta\n", b"1\ta"] {
            assert!(!c.convert(bad, &mut Vec::new()), "{bad:?}");
        }
        assert!(Converter::for_types(["integer", "interval"]).is_none());
    }
}
