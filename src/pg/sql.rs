//! SQL text and server errors: identifier and literal quoting, and PostgreSQL errors turned
//! into one readable line naming the statement that failed.

use anyhow::anyhow;

/// Quotes an SQL identifier (always, so any name survives).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A PostgreSQL error as one readable line, with the statement that caused it.
pub fn pg_error(e: postgres::Error, what: &str) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            anyhow!("{m} [in: {}]", shorten(what))
        }
        None => anyhow!("{e} [in: {}]", shorten(what)),
    }
}

/// An error of a statement run through libpq ([`crate::pg::replication::ReplConn`]), naming
/// the statement as [`pg_error`] does.
pub fn in_statement(e: anyhow::Error, what: &str) -> anyhow::Error {
    let m = e.to_string();
    let m = m.strip_prefix("ERROR:  ").unwrap_or(&m);
    anyhow!("{m} [in: {}]", shorten(what))
}

fn shorten(s: &str) -> String {
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}
