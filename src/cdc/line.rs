//! weir-cdc's change stream as weir-apply and weir-mask read it (docs/FORMAT.md, 13): one line at a time
//! from a reused buffer, its strings borrowed from the buffer unless they hold an escape, so
//! reading a line costs no allocation but its list of columns.

use crate::plumbing::{ExitCode, coded};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::borrow::Cow;
use std::io::BufRead;

/// One line; fields a kind of line lacks are absent (a message's `transactional` is not
/// read).
#[derive(Debug, Deserialize)]
pub struct Line<'a> {
    pub action: &'a str,
    pub xid: Option<u32>,
    pub lsn: Option<&'a str>,
    pub nextlsn: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    #[serde(borrow)]
    pub schema: Option<Text<'a>>,
    #[serde(borrow)]
    pub table: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub columns: Vec<Field<'a>>,
    #[serde(borrow, default)]
    pub identity: Vec<Field<'a>>,
    /// A row of the initial copy.
    #[serde(default)]
    pub snapshot: bool,
    /// A message's prefix and content.
    #[serde(borrow, default)]
    pub prefix: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub content: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Field<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(rename = "type", borrow)]
    pub type_name: Text<'a>,
    #[serde(borrow)]
    pub value: Value<'a>,
}

/// A JSON string: borrowed from the line, or unescaped into a copy of its own.
#[derive(Debug, PartialEq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A value as the stream writes it: null, a JSON boolean (type boolean), or the type's text
/// output as a string (any JSON number is taken as its text too).
#[derive(Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Text(t) => Ok(Text(t)),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("null, a boolean, a string or a number")
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(b))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(s)))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(n.to_string())))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(n.to_string())))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(n.to_string())))
    }
}

impl Field<'_> {
    pub fn is_null(&self) -> bool {
        self.value == Value::Null
    }

    /// The value in the form the type's input function reads: text output, booleans as
    /// `t`/`f`, bytea's hex with its `\x` back (the stream writes wal2json's forms).
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Null => None,
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "t" } else { "f" })),
            Value::Text(s) if &*self.type_name == "bytea" => Some(Cow::Owned(format!("\\x{s}"))),
            Value::Text(s) => Some(Cow::Borrowed(s)),
        }
    }

    /// The value in COPY's text format (PostgreSQL docs, COPY, "Text Format").
    pub fn copy_value(&self, out: &mut Vec<u8>) {
        let s = match &self.value {
            Value::Null => return out.extend_from_slice(b"\\N"),
            Value::Bool(b) => return out.push(if *b { b't' } else { b'f' }),
            Value::Text(s) => s,
        };
        if &*self.type_name == "bytea" {
            out.extend_from_slice(b"\\\\x");
        }
        let b = s.as_bytes();
        let mut from = 0;
        for (i, &c) in b.iter().enumerate() {
            let esc: &[u8] = match c {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                _ => continue,
            };
            out.extend_from_slice(&b[from..i]);
            out.extend_from_slice(esc);
            from = i + 1;
        }
        out.extend_from_slice(&b[from..]);
    }
}

/// The stream's lines, one at a time, with their numbers for errors.
pub struct Reader<R> {
    input: R,
    buf: Vec<u8>,
    number: usize,
    unread: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Reader {
            input,
            buf: Vec::with_capacity(1 << 16),
            number: 0,
            unread: false,
        }
    }

    /// Moves to the next non-empty line; false at the end of the stream. A line without its
    /// newline at the end is still read: whether it parses says whether it is whole.
    pub fn advance(&mut self) -> Result<bool> {
        if std::mem::take(&mut self.unread) {
            return Ok(true);
        }
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .context("reading the change stream")?;
            if n == 0 {
                return Ok(false);
            }
            self.number += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
        }
    }

    /// The next [`advance`](Self::advance) stays on the line it is on.
    pub fn unread(&mut self) {
        self.unread = true;
    }

    /// The bytes of the line [`advance`](Self::advance) moved to, without its newline.
    pub fn raw(&self) -> &[u8] {
        &self.buf
    }

    /// The line [`advance`](Self::advance) moved to.
    pub fn line(&self) -> Result<Line<'_>> {
        serde_json::from_slice(&self.buf).map_err(|e| {
            coded(
                ExitCode::BadArchive,
                format!("line {}: not a weir-cdc change line ({e})", self.number),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(type_name: &'a str, value: Value<'a>) -> Field<'a> {
        Field {
            name: Text("c".into()),
            type_name: Text(type_name.into()),
            value,
        }
    }

    #[test]
    fn values_reach_copy_as_their_types_read_them() {
        let mut out = Vec::new();
        field("text", Value::Text("a\tb\\c\nd".into())).copy_value(&mut out);
        out.push(b'|');
        field("bytea", Value::Text("0aff".into())).copy_value(&mut out);
        out.push(b'|');
        field("boolean", Value::Bool(true)).copy_value(&mut out);
        out.push(b'|');
        field("integer", Value::Null).copy_value(&mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd|\\\\x0aff|t|\\N");
        assert_eq!(
            field("bytea", Value::Text("00".into())).text().unwrap(),
            "\\x00"
        );
    }

    #[test]
    fn lines_borrow_what_needs_no_unescaping() {
        let text = br#"{"action":"I","xid":7,"lsn":"0/1","schema":"public","table":"t\"q","columns":[{"name":"a","type":"integer","value":"1"},{"name":"b","type":"boolean","value":false},{"name":"c","type":"text","value":null},{"name":"d","type":"numeric","value":2.5}],"snapshot":true}
"#;
        let mut r = Reader::new(&text[..]);
        assert!(r.advance().unwrap());
        let l = r.line().unwrap();
        assert_eq!((l.action, l.xid, l.lsn), ("I", Some(7), Some("0/1")));
        assert!(matches!(
            l.schema.as_ref().unwrap().0,
            Cow::Borrowed("public")
        ));
        assert_eq!(&**l.table.as_ref().unwrap(), "t\"q");
        let v: Vec<Option<Cow<str>>> = l.columns.iter().map(|f| f.text()).collect();
        assert_eq!(
            v,
            [Some("1".into()), Some("f".into()), None, Some("2.5".into())]
        );
        assert!(matches!(
            l.columns[0].value,
            Value::Text(Cow::Borrowed("1"))
        ));
        assert!(!r.advance().unwrap());
    }
}
