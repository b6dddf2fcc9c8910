//! `json_set` and `json_delete` as edits of the text: the value is scanned, not parsed into a
//! tree, and only the spans a path reaches are replaced or cut, so every other byte stays as
//! it was: numbers such as `1.10` or integers beyond 2^64, key order, whitespace, and the
//! duplicate keys a `json` (not `jsonb`) value may hold. A path step that names a key reaches
//! every member with that key, duplicates included, so no copy of a masked value survives.

use anyhow::{Result, anyhow, bail};

pub enum Op<'a> {
    /// The new value's JSON text.
    Set(&'a [u8]),
    Delete,
}

/// Applies `op` at `path` (keys, or indexes into arrays) and returns the edited document.
/// Setting a missing key adds it, creating the objects on the way; a path through something
/// else (a scalar, an index beyond an array) changes nothing.
pub fn edit(doc: &[u8], path: &[String], op: &Op) -> Result<Vec<u8>> {
    let start = ws(doc, 0);
    let end = skip_value(doc, start)?;
    if ws(doc, end) != doc.len() {
        bail!("not JSON: text after the value at byte {end}");
    }
    Ok(match edit_value(doc, start, path, op)? {
        Some(v) => [&doc[..start], &v, &doc[end..]].concat(),
        None => doc.to_vec(),
    })
}

/// One member of an object or element of an array: where its key (if any) starts, its value.
struct Item {
    start: usize,
    key: Option<String>,
    value: (usize, usize),
}

/// The new text of the value at `start`, or `None` when the path changes nothing in it.
fn edit_value(b: &[u8], start: usize, path: &[String], op: &Op) -> Result<Option<Vec<u8>>> {
    let (step, rest) = path.split_first().expect("path is never empty");
    let (items, close) = match b[start] {
        b'{' | b'[' => items(b, start)?,
        _ => return Ok(None),
    };
    let object = b[start] == b'{';
    let hit: Vec<usize> = (0..items.len())
        .filter(|&i| match &items[i].key {
            Some(k) => k == step,
            None => step.parse::<usize>().ok() == Some(i),
        })
        .collect();
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for &i in &hit {
        let (vs, ve) = items[i].value;
        let new = match (rest.is_empty(), op) {
            (true, Op::Set(v)) => Some(v.to_vec()),
            (true, Op::Delete) => None,
            (false, _) => edit_value(b, vs, rest, op)?,
        };
        if let Some(new) = new {
            edits.push((vs, ve, new));
        }
    }
    if rest.is_empty() && matches!(op, Op::Delete) {
        if hit.is_empty() {
            return Ok(None);
        }
        return Ok(Some(without(b, start, close, &items, &hit)));
    }
    if let (true, true, Op::Set(v)) = (hit.is_empty(), object, op) {
        let member = [json_string(step).as_slice(), b": ", &nested(rest, v)].concat();
        edits.push(match items.last() {
            Some(last) => (
                last.value.1,
                last.value.1,
                [b", ", member.as_slice()].concat(),
            ),
            None => (start + 1, start + 1, member),
        });
    }
    if edits.is_empty() {
        return Ok(None);
    }
    Ok(Some(splice(b, start, close + 1, edits)))
}

/// `{"a": {"b": v}}` for the steps left of a path into keys that do not exist yet.
fn nested(path: &[String], v: &[u8]) -> Vec<u8> {
    match path.split_first() {
        None => v.to_vec(),
        Some((k, rest)) => [
            b"{".as_slice(),
            &json_string(k),
            b": ",
            &nested(rest, v),
            b"}",
        ]
        .concat(),
    }
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("a string always serializes")
}

/// `b[start..end]` with the given spans replaced (they never overlap).
fn splice(b: &[u8], start: usize, end: usize, mut edits: Vec<(usize, usize, Vec<u8>)>) -> Vec<u8> {
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(end - start);
    let mut at = start;
    for (s, e, new) in edits {
        out.extend_from_slice(&b[at..s]);
        out.extend_from_slice(&new);
        at = e;
    }
    out.extend_from_slice(&b[at..end]);
    out
}

/// The container without the items `drop`: each kept item keeps the separator that preceded
/// it, except the first kept one, which takes the place of the first item.
fn without(b: &[u8], start: usize, close: usize, items: &[Item], drop: &[usize]) -> Vec<u8> {
    let mut out = b[start..items[0].start].to_vec();
    let mut emitted = false;
    for (i, it) in items.iter().enumerate() {
        if drop.contains(&i) {
            continue;
        }
        if emitted {
            out.extend_from_slice(&b[items[i - 1].value.1..it.start]);
        }
        out.extend_from_slice(&b[it.start..it.value.1]);
        emitted = true;
    }
    let last = items.last().expect("something was dropped").value.1;
    out.extend_from_slice(&b[last..=close]);
    out
}

/// The members of the object (or elements of the array) at `start`, and where it closes.
fn items(b: &[u8], start: usize) -> Result<(Vec<Item>, usize)> {
    let object = b[start] == b'{';
    let close = if object { b'}' } else { b']' };
    let mut out = Vec::new();
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&close) {
        return Ok((out, i));
    }
    loop {
        let item_start = i;
        let key = if object {
            let end = skip_string(b, i)?;
            let k: String = serde_json::from_slice(&b[i..end])
                .map_err(|e| anyhow!("not JSON: bad key at byte {i}: {e}"))?;
            i = ws(b, end);
            expect(b, i, b':')?;
            i = ws(b, i + 1);
            Some(k)
        } else {
            None
        };
        let end = skip_value(b, i)?;
        out.push(Item {
            start: item_start,
            key,
            value: (i, end),
        });
        i = ws(b, end);
        match b.get(i) {
            Some(&c) if c == close => return Ok((out, i)),
            Some(b',') => i = ws(b, i + 1),
            _ => bail!("not JSON: expected , or {} at byte {i}", close as char),
        }
    }
}

fn expect(b: &[u8], i: usize, c: u8) -> Result<()> {
    if b.get(i) != Some(&c) {
        bail!("not JSON: expected {} at byte {i}", c as char);
    }
    Ok(())
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the value at `i` (no leading whitespace).
fn skip_value(b: &[u8], i: usize) -> Result<usize> {
    match b.get(i) {
        Some(b'{') | Some(b'[') => Ok(items(b, i)?.1 + 1),
        Some(b'"') => skip_string(b, i),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let mut j = i + 1;
            while matches!(b.get(j), Some(c) if c.is_ascii_digit() || b"+-.eE".contains(c)) {
                j += 1;
            }
            Ok(j)
        }
        _ => bail!("not JSON: unexpected byte at {i}"),
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize> {
    if b[i..].starts_with(word) {
        Ok(i + word.len())
    } else {
        bail!("not JSON: unexpected byte at {i}")
    }
}

fn skip_string(b: &[u8], i: usize) -> Result<usize> {
    expect(b, i, b'"')?;
    let mut j = i + 1;
    loop {
        match b.get(j) {
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => j += 2,
            Some(_) => j += 1,
            None => bail!("not JSON: unterminated string at byte {i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(doc: &str, path: &str, op: &Op) -> String {
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        String::from_utf8(edit(doc.as_bytes(), &path, op).unwrap()).unwrap()
    }

    #[test]
    fn edits_touch_only_what_they_edit() {
        let doc =
            r#"{"b": 1.10, "a": {"x": 18446744073709551617, "ssn": "1"},  "ssn": "2", "ssn": "3"}"#;
        assert_eq!(
            run(doc, "ssn", &Op::Delete),
            r#"{"b": 1.10, "a": {"x": 18446744073709551617, "ssn": "1"}}"#
        );
        assert_eq!(
            run(doc, "a.ssn", &Op::Set(b"null")),
            r#"{"b": 1.10, "a": {"x": 18446744073709551617, "ssn": null},  "ssn": "2", "ssn": "3"}"#
        );
        assert_eq!(
            run(doc, "b", &Op::Delete),
            r#"{"a": {"x": 18446744073709551617, "ssn": "1"},  "ssn": "2", "ssn": "3"}"#
        );
        assert_eq!(run("{}", "a.b", &Op::Set(b"1")), r#"{"a": {"b": 1}}"#);
        assert_eq!(
            run(r#"{"k": 0}"#, "n", &Op::Set(b"2")),
            r#"{"k": 0, "n": 2}"#
        );
        assert_eq!(run("[1, 2.50, 3]", "1", &Op::Delete), "[1, 3]");
        assert_eq!(run("[1, 2.50, 3]", "0", &Op::Delete), "[2.50, 3]");
        assert_eq!(
            run("[1, 2.50, 3]", "2", &Op::Set(b"true")),
            "[1, 2.50, true]"
        );
        assert_eq!(run("[1]", "5", &Op::Set(b"0")), "[1]");
        assert_eq!(run(r#"{"a": 1}"#, "a.b", &Op::Set(b"0")), r#"{"a": 1}"#);
        assert_eq!(run(r#"{"a\u0062": 1}"#, "ab", &Op::Delete), "{}");
        assert!(edit(b"{\"a\": ", &["a".into()], &Op::Delete).is_err());
        assert!(edit(b"{} x", &["a".into()], &Op::Delete).is_err());
    }
}
