//! DDL in WAL order: `weir-cdc --track-ddl` installs an event trigger on the source that writes
//! each DDL statement into WAL as a transactional logical message (`pg_logical_emit_message`,
//! prefix [`PREFIX`]) at `ddl_command_end`, so it arrives inside its transaction, between the
//! changes before and after it (pg_flo polls a table instead, out of order with the data);
//! `weir-apply --apply-ddl` runs it there.
//!
//! The message is `{"tag": "ALTER TABLE", "search_path": "...", "sql": "..."}`: the command
//! tag, the session's search_path and `current_query()`, the text the client sent. That text
//! may hold several statements (a migration sent as one query): [`Replay`] runs, for each
//! message, the next statement of the text whose words start as the tag does, so DML and
//! transaction control around the DDL (which arrive as changes, or not at all) are left out.
//! What is not captured: DDL on temporary objects (skipped), on global objects (roles,
//! databases, tablespaces: event triggers do not fire for them), and DDL whose text is not the
//! statement itself (a DO block, a function): that one stops weir-apply with the LSN to pass
//! with `--skip-ddl-through` once it was applied by hand.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The logical message prefix of a DDL statement.
pub const PREFIX: &str = "weir.ddl";

/// Installs (or replaces) the event triggers in the database `c` is connected to. Event
/// triggers need a superuser.
pub fn install(c: &mut postgres::Client) -> Result<()> {
    c.batch_execute(INSTALL)
        .context("--track-ddl installs an event trigger, which needs a superuser on the source")
}

/// Removes what [`install`] made.
pub fn remove(c: &mut postgres::Client) -> Result<()> {
    c.batch_execute(
        "DROP EVENT TRIGGER IF EXISTS weir_ddl; DROP EVENT TRIGGER IF EXISTS weir_ddl_drops; \
         DROP SCHEMA IF EXISTS weir_ddl CASCADE;",
    )
    .context("removing the DDL event triggers")
}

// ddl_command_end sees every DDL statement of the database but those on global objects
// (PostgreSQL docs, "Event Trigger Firing Matrix"); sql_drop fires first for a DROP and tells
// whether it dropped only temporary objects, which the other cannot see.
const INSTALL: &str = r#"
CREATE SCHEMA IF NOT EXISTS weir_ddl;
CREATE OR REPLACE FUNCTION weir_ddl.drops() RETURNS event_trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM pg_catalog.set_config('weir.ddl_temporary',
    (SELECT coalesce(bool_and(is_temporary), false)::text
       FROM pg_catalog.pg_event_trigger_dropped_objects()), true);
END $f$;
CREATE OR REPLACE FUNCTION weir_ddl.emit() RETURNS event_trigger LANGUAGE plpgsql AS $f$
DECLARE
  temporary boolean;
BEGIN
  SELECT coalesce(bool_and(schema_name LIKE 'pg\_temp%'), false) INTO temporary
    FROM pg_catalog.pg_event_trigger_ddl_commands();
  IF temporary OR coalesce(current_setting('weir.ddl_temporary', true), '') = 'true' THEN
    PERFORM pg_catalog.set_config('weir.ddl_temporary', 'false', true);
    RETURN;
  END IF;
  PERFORM pg_catalog.pg_logical_emit_message(true, 'weir.ddl',
    pg_catalog.json_build_object('tag', tg_tag,
      'search_path', pg_catalog.current_setting('search_path'),
      'sql', pg_catalog.current_query())::text);
END $f$;
DROP EVENT TRIGGER IF EXISTS weir_ddl_drops;
CREATE EVENT TRIGGER weir_ddl_drops ON sql_drop EXECUTE FUNCTION weir_ddl.drops();
DROP EVENT TRIGGER IF EXISTS weir_ddl;
CREATE EVENT TRIGGER weir_ddl ON ddl_command_end EXECUTE FUNCTION weir_ddl.emit();
"#;

/// A DDL message's content.
#[derive(Deserialize, Debug)]
pub struct Ddl {
    pub tag: String,
    pub search_path: String,
    pub sql: String,
}

impl Ddl {
    pub fn parse(content: &str) -> Result<Ddl> {
        serde_json::from_str(content).context("a weir.ddl message that is not weir-cdc's")
    }
}

/// Which statement of a query text the DDL messages of one transaction have reached.
#[derive(Default)]
pub struct Replay {
    text: String,
    statements: Vec<String>,
    next: usize,
}

impl Replay {
    /// The statement of `d.sql` to run for this message: the next one, after the last taken
    /// from the same text, whose words begin as the tag's do (the same text again from its
    /// start when none is left: the same query run twice).
    pub fn statement(&mut self, d: &Ddl) -> Result<String> {
        if d.sql != self.text {
            self.text = d.sql.clone();
            self.statements = split(&d.sql).into_iter().map(str::to_string).collect();
            self.next = 0;
        }
        let found = (self.next..self.statements.len())
            .chain(0..self.next)
            .find(|&i| tagged(&self.statements[i], &d.tag));
        let Some(i) = found else {
            bail!(
                "{} came from a statement weir cannot replay on its own (a DO block or a function?): {}",
                d.tag,
                crate::plumbing::one_line(&excerpt(&d.sql))
            );
        };
        self.next = i + 1;
        Ok(self.statements[i].clone())
    }

    /// A new transaction: nothing taken yet.
    pub fn reset(&mut self) {
        *self = Replay::default();
    }
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Does `statement` begin as a statement of `tag` does: its first word the tag's, the
/// tag's other words among its next few, in order (`CREATE UNIQUE INDEX` for `CREATE
/// INDEX`, `CREATE OR REPLACE FUNCTION` for `CREATE FUNCTION`, `CREATE TABLE t AS` for
/// `CREATE TABLE AS`)?
fn tagged(statement: &str, tag: &str) -> bool {
    let words: Vec<String> = code_words(statement, 12);
    let mut tag = tag.split_whitespace().map(str::to_ascii_uppercase);
    let Some(first) = tag.next() else {
        return false;
    };
    if words.first() != Some(&first) {
        return false;
    }
    let mut rest = words.iter().skip(1);
    tag.all(|t| rest.any(|w| *w == t))
}

/// The first `n` words of a statement, upper-cased, comments left out.
fn code_words(statement: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut lex = Lexer::new(statement);
    while let Some((c, code)) = lex.next_char() {
        if code && (c.is_alphanumeric() || c == '_') {
            word.push(c.to_ascii_uppercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
            if out.len() == n {
                return out;
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The statements of a query text: split at semicolons outside quotes, dollar quotes and
/// comments (PostgreSQL docs, "Lexical Structure"), empty ones left out.
pub fn split(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lex = Lexer::new(sql);
    let mut start = 0;
    let mut blank = true;
    while let Some((c, code)) = lex.next_char() {
        if code && c == ';' {
            if !blank {
                out.push(sql[start..lex.at - 1].trim());
            }
            (start, blank) = (lex.at, true);
        } else if (code && !c.is_whitespace()) || (!code && lex.in_literal()) {
            blank = false;
        }
    }
    if !blank {
        out.push(sql[start..].trim());
    }
    out
}

/// Walks SQL text a character at a time, saying whether each is code (not inside a string,
/// a quoted identifier, a dollar-quoted string or a comment).
struct Lexer<'a> {
    s: &'a str,
    at: usize,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Code,
    /// `'...'`; with backslash escapes for `E'...'`.
    Quote {
        backslash: bool,
    },
    Ident,
    Dollar(String),
    Line,
    Block(u32),
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer {
            s,
            at: 0,
            state: State::Code,
        }
    }

    fn in_literal(&self) -> bool {
        matches!(
            self.state,
            State::Quote { .. } | State::Ident | State::Dollar(_)
        )
    }

    fn peek(&self, off: usize) -> Option<char> {
        self.s[self.at..].chars().nth(off)
    }

    /// The next character, and whether it is code.
    fn next_char(&mut self) -> Option<(char, bool)> {
        let c = self.peek(0)?;
        let rest = &self.s[self.at..];
        let was_code = self.state == State::Code;
        let mut len = c.len_utf8();
        match &mut self.state {
            State::Code => match c {
                '\'' => {
                    let prev = self.s[..self.at].chars().next_back();
                    let backslash = matches!(prev, Some('E' | 'e'));
                    self.state = State::Quote { backslash };
                }
                '"' => self.state = State::Ident,
                '-' if rest.starts_with("--") => self.state = State::Line,
                '/' if rest.starts_with("/*") => {
                    self.state = State::Block(1);
                    len = 2;
                }
                '$' => {
                    if let Some(tag) = dollar_tag(rest) {
                        len = tag.len();
                        self.state = State::Dollar(tag);
                    }
                }
                _ => {}
            },
            State::Quote { backslash } => match c {
                '\\' if *backslash => len += self.peek(1).map_or(0, char::len_utf8),
                '\'' if rest.starts_with("''") => len = 2,
                '\'' => self.state = State::Code,
                _ => {}
            },
            State::Ident => match c {
                '"' if rest.starts_with("\"\"") => len = 2,
                '"' => self.state = State::Code,
                _ => {}
            },
            State::Dollar(tag) => {
                if rest.starts_with(tag.as_str()) {
                    len = tag.len();
                    self.state = State::Code;
                }
            }
            State::Line => {
                if c == '\n' {
                    self.state = State::Code;
                }
            }
            State::Block(depth) => {
                if rest.starts_with("/*") {
                    *depth += 1;
                    len = 2;
                } else if rest.starts_with("*/") {
                    *depth -= 1;
                    len = 2;
                    if *depth == 0 {
                        self.state = State::Code;
                    }
                }
            }
        }
        self.at += len;
        // The character that opens a string or comment is not code; the one that closes it is
        // not either.
        Some((c, was_code && self.state == State::Code))
    }
}

/// `$tag$` or `$$` at the start of `s`.
fn dollar_tag(s: &str) -> Option<String> {
    let end = s[1..].find('$')? + 2;
    let inner = &s[1..end - 1];
    let ok = inner
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_alphabetic() || (i > 0 && c.is_ascii_digit()));
    ok.then(|| s[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_of_code_only() {
        let sql = "BEGIN; INSERT INTO t VALUES ('a;b', E'c\\';d'); -- x; y\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $b$ SELECT 1; $b$;\n\
                   /* a; /* nested; */ b; */ ALTER TABLE \"odd;name\" ADD c int;;COMMIT";
        let parts = split(sql);
        assert_eq!(parts.len(), 5, "{parts:#?}");
        assert!(parts[1].starts_with("INSERT") && parts[1].ends_with("'c\\';d')"));
        assert!(parts[2].ends_with("$b$"));
        assert!(parts[3].contains("ALTER TABLE \"odd;name\" ADD c int"));
        assert_eq!(parts[4], "COMMIT");
    }

    #[test]
    fn each_message_takes_the_next_statement_of_its_tag() {
        let sql = "BEGIN; ALTER TABLE a ADD x int; INSERT INTO a VALUES (1); \
                   CREATE UNIQUE INDEX i ON a (x); ALTER TABLE a ADD y int; COMMIT;";
        let msg = |tag: &str| Ddl {
            tag: tag.into(),
            search_path: "public".into(),
            sql: sql.into(),
        };
        let mut r = Replay::default();
        assert_eq!(
            r.statement(&msg("ALTER TABLE")).unwrap(),
            "ALTER TABLE a ADD x int"
        );
        assert_eq!(
            r.statement(&msg("CREATE INDEX")).unwrap(),
            "CREATE UNIQUE INDEX i ON a (x)"
        );
        assert_eq!(
            r.statement(&msg("ALTER TABLE")).unwrap(),
            "ALTER TABLE a ADD y int"
        );
        let body = Ddl {
            tag: "ALTER TABLE".into(),
            search_path: String::new(),
            sql: "DO $$ BEGIN ALTER TABLE a ADD z int; END $$".into(),
        };
        assert!(r.statement(&body).is_err());
        assert!(tagged(
            "create or replace function f() returns int",
            "CREATE FUNCTION"
        ));
        assert!(tagged("CREATE TABLE t AS SELECT 1", "CREATE TABLE AS"));
        assert!(!tagged("INSERT INTO t SELECT 1", "CREATE TABLE AS"));
    }
}
