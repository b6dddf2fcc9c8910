//! Roles in a masked archive: `weir/globals.sql` is `pg_dumpall --globals-only` output, whose
//! `CREATE ROLE`/`ALTER ROLE ... PASSWORD '...'` clauses carry every role's password verifier
//! (SCRAM-SHA-256 or MD5). A verifier is a secret: with it an attacker can try passwords
//! offline, and an MD5 one logs in as the role by itself (PostgreSQL docs, "Password
//! Authentication"). So a masked archive keeps the roles and drops the clauses, as
//! `pg_dumpall --no-role-passwords` does, unless `--keep-role-passwords` asks otherwise.

/// The SQL with every role's `PASSWORD '...'` clause removed, and how many were.
pub fn strip_role_passwords(sql: &str) -> (String, usize) {
    let mut out = String::with_capacity(sql.len());
    let mut removed = 0;
    for line in sql.split_inclusive('\n') {
        match role_statement(line).and_then(|after| password_clause(line, after)) {
            Some((start, end)) => {
                out.push_str(&line[..start]);
                out.push_str(&line[end..]);
                removed += 1;
            }
            None => out.push_str(line),
        }
    }
    (out, removed)
}

/// For a `CREATE ROLE` or `ALTER ROLE` line, the byte offset just past the role's name.
fn role_statement(line: &str) -> Option<usize> {
    let rest = ["CREATE ROLE ", "ALTER ROLE "]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    let skipped = line.len() - rest.len();
    Some(skipped + identifier_len(rest)?)
}

/// The length of the identifier at the start of `s`: a quoted one (with `""` inside), or
/// everything up to the next space or semicolon.
fn identifier_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Some(s.find([' ', ';']).unwrap_or(s.len()));
    }
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The span of ` [ENCRYPTED] PASSWORD '...'` after offset `from` (the literal with `''`
/// escapes), if there is one.
fn password_clause(line: &str, from: usize) -> Option<(usize, usize)> {
    let at = from + line[from..].find(" PASSWORD '")?;
    let start = match line[..at].strip_suffix(" ENCRYPTED") {
        Some(s) => s.len(),
        None => at,
    };
    let b = line.as_bytes();
    let mut i = at + " PASSWORD '".len();
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some((start, i + 1));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_go_and_everything_else_stays() {
        let sql = "\
CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';
CREATE ROLE \"odd PASSWORD 'x\";
ALTER ROLE \"odd PASSWORD 'x\" WITH LOGIN ENCRYPTED PASSWORD 'md5abc''def' VALID UNTIL 'infinity';
ALTER ROLE nopass WITH LOGIN;
COMMENT ON ROLE app IS 'has PASSWORD ''x''';
";
        let (out, n) = strip_role_passwords(sql);
        assert_eq!(n, 2);
        assert_eq!(
            out,
            "\
CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN;
CREATE ROLE \"odd PASSWORD 'x\";
ALTER ROLE \"odd PASSWORD 'x\" WITH LOGIN VALID UNTIL 'infinity';
ALTER ROLE nopass WITH LOGIN;
COMMENT ON ROLE app IS 'has PASSWORD ''x''';
"
        );
    }
}
