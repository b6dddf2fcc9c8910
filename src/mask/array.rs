//! Arrays in PostgreSQL's text form (`{a,"b c",NULL,{1,2}}`, optionally after a dimension
//! decoration such as `[0:1]=`), as `array_out` writes them (src/backend/utils/adt/
//! arrayfuncs.c): transformers apply to each element, and the array is written back the
//! same way, quoting what `array_out` quotes.

use anyhow::{Result, bail};

/// `v` with each non-NULL element replaced by `f`'s answer (`None`: NULL). NULL elements stay.
pub fn map_elements(
    v: &[u8],
    mut f: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<Vec<u8>> {
    let bad = || anyhow::anyhow!("not an array: {:?}", String::from_utf8_lossy(v));
    let mut out = Vec::with_capacity(v.len() + 16);
    let mut i = 0;
    if v.first() == Some(&b'[') {
        let eq = memchr::memchr(b'=', v).ok_or_else(bad)?;
        out.extend_from_slice(&v[..=eq]);
        i = eq + 1;
    }
    if v.get(i) != Some(&b'{') {
        return Err(bad());
    }
    let mut depth = 0usize;
    let mut elem = Vec::new();
    while i < v.len() {
        match v[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1).ok_or_else(bad)?;
                if depth == 0 {
                    out.push(b'}');
                    i += 1;
                    break;
                }
            }
            b',' => {}
            b'"' => {
                elem.clear();
                i += 1;
                loop {
                    match v.get(i) {
                        Some(b'\\') => {
                            elem.push(*v.get(i + 1).ok_or_else(bad)?);
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(&c) => {
                            elem.push(c);
                            i += 1;
                        }
                        None => return Err(bad()),
                    }
                }
                write_element(f(&elem)?, &mut out);
                i += 1;
                continue;
            }
            _ => {
                let start = i;
                while i < v.len() && !matches!(v[i], b',' | b'}') {
                    i += 1;
                }
                let e = &v[start..i];
                if e.eq_ignore_ascii_case(b"NULL") {
                    out.extend_from_slice(b"NULL");
                } else {
                    write_element(f(e)?, &mut out);
                }
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    if depth != 0 || i != v.len() {
        bail!("not an array: {:?}", String::from_utf8_lossy(v));
    }
    Ok(out)
}

/// An element as `array_out` writes it: quoted when empty, `NULL` in any case, or holding a
/// brace, quote, comma, backslash or white space; quotes and backslashes escaped.
fn write_element(e: Option<Vec<u8>>, out: &mut Vec<u8>) {
    let Some(e) = e else {
        out.extend_from_slice(b"NULL");
        return;
    };
    let quote = e.is_empty()
        || e.eq_ignore_ascii_case(b"NULL")
        || e.iter()
            .any(|c| matches!(c, b'{' | b'}' | b'"' | b',' | b'\\') || c.is_ascii_whitespace());
    if !quote {
        out.extend_from_slice(&e);
        return;
    }
    out.push(b'"');
    for &c in &e {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(v: &str) -> String {
        let out = map_elements(v.as_bytes(), |e| Ok(Some(e.to_ascii_uppercase()))).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn maps_each_element_and_quotes_as_array_out_does() {
        assert_eq!(
            upper("{a,\"b c\",NULL,\"x\\\"y\"}"),
            "{A,\"B C\",NULL,\"X\\\"Y\"}"
        );
        assert_eq!(upper("{{a,b},{c,d}}"), "{{A,B},{C,D}}");
        assert_eq!(upper("[0:1]={a,b}"), "[0:1]={A,B}");
        assert_eq!(upper("{}"), "{}");
        assert_eq!(upper("{\"null\"}"), "{\"NULL\"}");
        let emptied = map_elements(b"{a,b}", |_| Ok(Some(Vec::new()))).unwrap();
        assert_eq!(emptied, b"{\"\",\"\"}");
        let nulled = map_elements(b"{a,\"\\\\\"}", |_| Ok(None)).unwrap();
        assert_eq!(nulled, b"{NULL,NULL}");
        assert!(map_elements(b"{a,b", |_| Ok(None)).is_err());
        assert!(map_elements(b"a,b", |_| Ok(None)).is_err());
        assert!(map_elements(b"{a}}", |_| Ok(None)).is_err());
    }
}
