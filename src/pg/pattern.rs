//! Object-name patterns as `pg_dump -t/-n` and psql's `\d` read them (PostgreSQL documentation,
//! psql, "Patterns"): `*` matches any run of characters, `?` any one character, an unquoted `.`
//! separates schema from name, unquoted letters fold to lower case, and double quotes make
//! their contents literal (`""` inside quotes is one `"`).

use anyhow::{Result, bail};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(char),
    Star,
    One,
}

/// A parsed pattern: an optional schema part and a name part.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    schema: Option<Vec<Tok>>,
    name: Vec<Tok>,
}

impl Pattern {
    /// Parses a table pattern (`schema.table`, `table`, `"Mixed Case".*`).
    pub fn table(text: &str) -> Result<Pattern> {
        let mut parts = split(text)?;
        match parts.len() {
            1 => Ok(Pattern {
                text: text.into(),
                schema: None,
                name: parts.pop().unwrap(),
            }),
            2 => {
                let name = parts.pop().unwrap();
                Ok(Pattern {
                    text: text.into(),
                    schema: parts.pop(),
                    name,
                })
            }
            // database.schema.table: the database part must be the current one; pg_dump
            // checks that, we accept and ignore it the same way.
            3 => {
                let name = parts.pop().unwrap();
                Ok(Pattern {
                    text: text.into(),
                    schema: parts.pop(),
                    name,
                })
            }
            _ => bail!("improper qualified name (too many dotted names): {text}"),
        }
    }

    /// Parses a schema pattern (`-n`).
    pub fn schema(text: &str) -> Result<Pattern> {
        let mut parts = split(text)?;
        match parts.len() {
            1 => Ok(Pattern {
                text: text.into(),
                schema: None,
                name: parts.pop().unwrap(),
            }),
            2 => Ok(Pattern {
                text: text.into(),
                schema: None,
                name: parts.pop().unwrap(),
            }),
            _ => bail!("improper qualified name (too many dotted names): {text}"),
        }
    }

    /// Does a table match? `visible` is `pg_table_is_visible()`: an unqualified pattern only
    /// matches tables found through the search path, as in pg_dump.
    pub fn matches_table(&self, schema: &str, name: &str, visible: bool) -> bool {
        match &self.schema {
            Some(s) => glob(s, schema) && glob(&self.name, name),
            None => visible && glob(&self.name, name),
        }
    }

    pub fn matches_schema(&self, schema: &str) -> bool {
        glob(&self.name, schema)
    }
}

fn split(text: &str) -> Result<Vec<Vec<Tok>>> {
    let mut parts = vec![Vec::new()];
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    parts.last_mut().unwrap().push(Tok::Lit('"'));
                } else {
                    quoted = false;
                }
            } else {
                parts.last_mut().unwrap().push(Tok::Lit(c));
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '.' => parts.push(Vec::new()),
            '*' => parts.last_mut().unwrap().push(Tok::Star),
            '?' => parts.last_mut().unwrap().push(Tok::One),
            c => {
                for l in c.to_lowercase() {
                    parts.last_mut().unwrap().push(Tok::Lit(l));
                }
            }
        }
    }
    if quoted {
        bail!("unterminated quoted identifier in pattern {text:?}");
    }
    if parts.iter().any(|p| p.is_empty()) && parts.len() > 1 {
        bail!("empty name in pattern {text:?}");
    }
    Ok(parts)
}

fn glob(pat: &[Tok], s: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let (mut p, mut i) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(Tok::Star) => {
                back = Some((p, i));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += 1;
            }
            Some(Tok::Lit(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match back {
                Some((bp, bi)) => {
                    p = bp + 1;
                    i = bi + 1;
                    back = Some((bp, bi + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_pattern_rules() {
        let p = Pattern::table("public.*").unwrap();
        assert!(p.matches_table("public", "anything", false));
        assert!(!p.matches_table("other", "anything", true));
        let p = Pattern::table("Audit_?og").unwrap();
        assert!(p.matches_table("s", "audit_log", true));
        assert!(!p.matches_table("s", "audit_log", false));
        assert!(!p.matches_table("s", "Audit_log", true));
        let p = Pattern::table("\"My.Schema\".\"T\"\"x\"").unwrap();
        assert!(p.matches_table("My.Schema", "T\"x", false));
        let p = Pattern::table("a*b*c").unwrap();
        assert!(p.matches_table("s", "aXbYbc", true));
        assert!(!p.matches_table("s", "aXbYd", true));
        assert!(Pattern::table("\"open").is_err());
        assert!(Pattern::table("a.b.c.d").is_err());
        assert!(Pattern::schema("pub*").unwrap().matches_schema("public"));
    }
}
