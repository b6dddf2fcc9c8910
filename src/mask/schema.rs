//! What weir-mask does to the schema (the `pg_dump` custom-format file in the archive): it takes
//! out the credentials pg_dump copies from the catalogs, and on request the comments.
//!
//! - User mappings, foreign servers and foreign-data wrappers: every option whose name says
//!   it holds a secret ([`secret_option`]) leaves the `OPTIONS (...)` list. The object stays,
//!   so the restored copy loads and a user adds the password there, as with
//!   `ALTER USER MAPPING ... OPTIONS (ADD password '...')`.
//! - Subscriptions: `password` and `sslpassword` leave the connection string. pg_dump always
//!   writes `connect = false`, so the subscription is restored disabled either way.
//! - `comments = "drop"` in the rules' `[schema]` section: every `COMMENT ON` is emptied.
//!
//! Function bodies, view definitions, defaults and CHECK constraints stay as they are: they
//! are code, and a literal inside them is not told apart here (README says so).

use crate::pg::dump_toc;
use anyhow::Result;

/// What [`scrub`] made of the schema.
pub struct Scrubbed {
    /// The schema to write (the input, byte for byte, when nothing was changed).
    pub file: Vec<u8>,
    /// One line per credential taken out, naming the object and the option.
    pub removed: Vec<String>,
    /// `COMMENT ON` statements of the schema (all of them, whether kept or emptied).
    pub comments: Vec<String>,
}

/// Options named like this hold a secret: `password` (postgres_fdw, mysql_fdw, oracle_fdw,
/// tds_fdw, ...), `sslpassword`, `aws_secret_access_key`, `session_token`, `passphrase`, and
/// the like. `password_required` is a switch, not a secret.
pub fn secret_option(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const WORDS: [&str; 7] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "private_key",
    ];
    n != "password_required" && WORDS.iter().any(|w| n.contains(w))
}

/// Takes the credentials (and with `drop_comments` the comments) out of a custom-format schema.
pub fn scrub(file: &[u8], drop_comments: bool) -> Result<Scrubbed> {
    let toc = dump_toc::read(file)?;
    let mut defns = Vec::new();
    let mut removed = Vec::new();
    let mut comments = Vec::new();
    for (i, e) in toc.entries.iter().enumerate() {
        let Some(defn) = e.defn.as_deref() else {
            continue;
        };
        let text = String::from_utf8_lossy(defn);
        let changed = match e.desc.as_str() {
            "USER MAPPING" | "SERVER" | "FOREIGN DATA WRAPPER" => {
                let (sql, names) = strip_options(&text);
                let what = object_name(&e.desc, &e.tag);
                removed.extend(names.iter().map(|n| format!("option {n} of {what}")));
                (!names.is_empty()).then_some(sql)
            }
            "SUBSCRIPTION" => strip_subscription(&text).map(|(sql, keys)| {
                let what = format!("subscription {}", e.tag);
                let keys = keys
                    .iter()
                    .map(|k| format!("{k} in the connection of {what}"));
                removed.extend(keys);
                sql
            }),
            "COMMENT" => {
                comments.push(text.trim_end().to_string());
                drop_comments.then(String::new)
            }
            _ => None,
        };
        if let Some(sql) = changed {
            defns.push((i, sql.into_bytes()));
        }
    }
    let file = match defns.is_empty() {
        true => file.to_vec(),
        false => toc.rewrite(file, &defns),
    };
    Ok(Scrubbed {
        file,
        removed,
        comments,
    })
}

/// "user mapping for app on server remote" from pg_dump's tag "USER MAPPING app SERVER remote".
fn object_name(desc: &str, tag: &str) -> String {
    let desc = desc.to_ascii_lowercase();
    match tag.strip_prefix("USER MAPPING ") {
        Some(rest) => format!(
            "user mapping for {}",
            rest.replacen(" SERVER ", " on server ", 1)
        ),
        None => format!("{desc} {tag}"),
    }
}

/// Removes the secret options from every `OPTIONS (...)` list of `sql`; says which it removed.
/// pg_dump writes each option as `quote_ident(name) quote_literal(value)`.
fn strip_options(sql: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(sql.len());
    let mut removed = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find(" OPTIONS (") {
        out.push_str(&rest[..at]);
        let list = &rest[at + " OPTIONS (".len()..];
        let Some((items, used)) = option_list(list) else {
            // Not a list as pg_dump writes one: leave it and look further.
            out.push_str(&rest[at..at + 1]);
            rest = &rest[at + 1..];
            continue;
        };
        let (kept, gone): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|(n, _)| !secret_option(n));
        removed.extend(gone.into_iter().map(|(n, _)| n));
        if !kept.is_empty() {
            let kept: Vec<&str> = kept.iter().map(|(_, text)| *text).collect();
            out.push_str(&format!(" OPTIONS (\n    {}\n)", kept.join(",\n    ")));
        }
        rest = &list[used..];
    }
    out.push_str(rest);
    (out, removed)
}

/// The items of an option list up to its `)`: each option's name and its whole text; and how
/// many bytes the list took, the `)` included.
fn option_list(s: &str) -> Option<(Vec<(String, &str)>, usize)> {
    let mut items = Vec::new();
    let mut at = 0;
    loop {
        at += s[at..].len() - s[at..].trim_start().len();
        let start = at;
        let (name, n) = identifier(&s[at..])?;
        at += n;
        at += s[at..].len() - s[at..].trim_start().len();
        let (_, n) = literal(&s[at..])?;
        at += n;
        items.push((name, &s[start..at]));
        at += s[at..].len() - s[at..].trim_start().len();
        match s[at..].chars().next()? {
            ',' => at += 1,
            ')' => return Some((items, at + 1)),
            _ => return None,
        }
    }
}

/// An identifier as `quote_ident` writes it: bare, or in double quotes with `""` inside.
fn identifier(s: &str) -> Option<(String, usize)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if body[i + 1..].starts_with('"') {
                    chars.next();
                } else {
                    return Some((name, i + 2));
                }
            }
            name.push(c);
        }
        return None;
    }
    let n = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (n > 0).then(|| (s[..n].to_string(), n))
}

/// A string literal: `'...'` with `''` inside, or `E'...'` (what `quote_literal` writes for a
/// value with a backslash) with backslash escapes too. Its value and its length in `s`.
fn literal(s: &str) -> Option<(String, usize)> {
    let (escapes, body, skip) = match s.strip_prefix("E'") {
        Some(b) => (true, b, 2),
        None => (false, s.strip_prefix('\'')?, 1),
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if body[i + 1..].starts_with('\'') => {
                chars.next();
                value.push('\'');
            }
            '\'' => return Some((value, skip + i + 1)),
            '\\' if escapes => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// `CREATE SUBSCRIPTION name CONNECTION '...' ...` without the connection's secrets; `None` when
/// it holds none.
fn strip_subscription(sql: &str) -> Option<(String, Vec<String>)> {
    let at = sql.find(" CONNECTION ")? + " CONNECTION ".len();
    let (conninfo, used) = literal(&sql[at..])?;
    let (clean, removed) = strip_conninfo(&conninfo);
    if removed.is_empty() {
        return None;
    }
    let sql = format!("{}{}{}", &sql[..at], sql_literal(&clean), &sql[at + used..]);
    Some((sql, removed))
}

/// A literal PostgreSQL reads the same with `standard_conforming_strings` on or off.
fn sql_literal(s: &str) -> String {
    match s.contains('\\') {
        true => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        false => crate::pg::sql::quote_literal(s),
    }
}

/// The connection keys that hold secrets (libpq's `password` and `sslpassword`).
const SECRET_KEYS: [&str; 2] = ["password", "sslpassword"];

/// A libpq connection string without its secrets, in either of libpq's forms: `key=value`
/// pairs, or a `postgresql://user:password@host/db?password=...` URI (libpq's
/// conninfo_parse and conninfo_uri_parse). Returns it and the keys it removed.
fn strip_conninfo(conninfo: &str) -> (String, Vec<String>) {
    let c = conninfo.trim();
    if c.starts_with("postgresql://") || c.starts_with("postgres://") {
        return strip_uri(c);
    }
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for (k, v) in conninfo_pairs(c) {
        if SECRET_KEYS.contains(&k.as_str()) {
            removed.push(k);
        } else {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    match removed.is_empty() {
        true => (conninfo.to_string(), removed),
        false => (kept.join(" "), removed),
    }
}

/// `key = value` pairs; a value is bare up to white space, or single-quoted, with `\` escaping
/// the next character in both.
fn conninfo_pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return pairs;
        }
        while chars.next_if(|c| c.is_whitespace() || *c == '=').is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if_eq(&'\'').is_some();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '\'' if quoted => break,
                c if c.is_whitespace() && !quoted => break,
                c => value.push(c),
            }
        }
        pairs.push((key, value));
    }
}

/// A connection URI without the password of its user part or of its query.
fn strip_uri(uri: &str) -> (String, Vec<String>) {
    let mut removed = Vec::new();
    let scheme_end = uri.find("://").map_or(0, |i| i + 3);
    let (head, query) = match uri.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (uri, None),
    };
    let mut out = head.to_string();
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    if let Some(at) = head[scheme_end..authority_end].rfind('@') {
        let userinfo = &head[scheme_end..scheme_end + at];
        if let Some((user, _)) = userinfo.split_once(':') {
            removed.push("password".to_string());
            out = format!("{}{user}{}", &head[..scheme_end], &head[scheme_end + at..]);
        }
    }
    if let Some(q) = query {
        let mut kept = Vec::new();
        for pair in q.split('&') {
            let key = pair.split('=').next().unwrap_or("");
            match SECRET_KEYS.contains(&key) {
                true => removed.push(key.to_string()),
                false => kept.push(pair),
            }
        }
        if !kept.is_empty() {
            out = format!("{out}?{}", kept.join("&"));
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_options_leave_the_list_and_the_rest_stays() {
        let sql = "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    password 'it''s',\n    \"user\" 'app'\n);\n";
        let (out, gone) = strip_options(sql);
        assert_eq!(gone, ["password"]);
        assert_eq!(
            out,
            "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    \"user\" 'app'\n);\n"
        );
        let only =
            "CREATE USER MAPPING FOR app SERVER remote OPTIONS (\n    password E'a\\\\b'\n);\n";
        let (out, gone) = strip_options(only);
        assert_eq!(
            (out.as_str(), gone.len()),
            ("CREATE USER MAPPING FOR app SERVER remote;\n", 1)
        );
        let none = "CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (\n    host 'h'\n);\n";
        assert_eq!(strip_options(none), (none.to_string(), vec![]));
        assert!(secret_option("aws_secret_access_key") && secret_option("sslpassword"));
        assert!(!secret_option("password_required") && !secret_option("user"));
    }

    #[test]
    fn connection_strings_lose_their_passwords_in_both_forms() {
        let (c, r) = strip_conninfo("host=db port=5432 password='a b\\'c' dbname=app");
        assert_eq!(
            (c.as_str(), r),
            (
                "host='db' port='5432' dbname='app'",
                vec!["password".into()]
            )
        );
        let (c, r) = strip_conninfo("postgresql://app:pw@db:5432/app?sslmode=require&password=x");
        assert_eq!(c, "postgresql://app@db:5432/app?sslmode=require");
        assert_eq!(r, ["password", "password"]);
        assert_eq!(strip_conninfo("host=db").1.len(), 0);
        let sql = "CREATE SUBSCRIPTION s CONNECTION 'host=db password=''p''' PUBLICATION p WITH (connect = false, slot_name = 's');\n";
        let (out, _) = strip_subscription(sql).unwrap();
        assert_eq!(
            out,
            "CREATE SUBSCRIPTION s CONNECTION 'host=''db''' PUBLICATION p WITH (connect = false, slot_name = 's');\n"
        );
    }
}
