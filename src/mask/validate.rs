//! `--validate` and `--strict`: what the rules leave unmasked, checked against the schema.
//!
//! A column "looks personal" by its name (split into words: `dateOfBirth`, `user_email`) or its
//! type (inet, macaddr). The report lists, per table, the rules, the columns kept on purpose,
//! the columns without a rule (marked when they look personal), and the constraints a rule
//! may break; `--strict` turns an unruled personal column, or any column a table's rules do
//! not name, into an error, so a column added to production never reaches a masked copy
//! unseen.

use super::rules::{Plan, TablePlan};
use crate::archive::{Manifest, Table};
use std::io::Write;

/// Name words and what they suggest. Whole words only: `name` matches `first_name` and
/// `name`, never `rename_count`.
const WORDS: &[(&[&str], &str)] = &[
    (&["email", "mail", "e-mail"], "an e-mail address"),
    (
        &["phone", "mobile", "tel", "telephone", "fax", "msisdn"],
        "a phone number",
    ),
    (
        &[
            "name",
            "firstname",
            "lastname",
            "fullname",
            "surname",
            "forename",
            "given",
            "middle",
            "maiden",
        ],
        "a name",
    ),
    (
        &[
            "address", "addr", "street", "city", "zip", "zipcode", "postcode", "postal",
        ],
        "an address",
    ),
    (
        &["birth", "birthday", "birthdate", "dob", "born"],
        "a birth date",
    ),
    (
        &[
            "ssn", "sin", "nino", "national", "passport", "license", "licence", "taxid", "tin",
        ],
        "a national identifier",
    ),
    (&["iban", "bic", "swift"], "a bank account"),
    (&["card", "ccn", "pan", "cvv", "cvc"], "a payment card"),
    (&["ip", "ipaddr", "ipaddress"], "an IP address"),
    (
        &["password", "passwd", "pwd", "secret", "token", "apikey"],
        "a secret",
    ),
    (
        &["lat", "lng", "lon", "latitude", "longitude", "gps", "geo"],
        "a location",
    ),
    (&["gender", "sex"], "a gender"),
    (&["salary", "income", "wage"], "an income"),
    (&["username", "login"], "a user name"),
];

/// The words of a column name: split at non-letters and at lower-to-upper case changes.
fn words(name: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            out.push(String::new());
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(String::new());
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.last_mut().unwrap().extend(c.to_lowercase());
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Why a column looks like personal data, if it does.
pub fn looks_personal(name: &str, type_name: &str) -> Option<&'static str> {
    let ws = words(name);
    let joined = ws.concat();
    for (list, what) in WORDS {
        if ws.iter().any(|w| list.contains(&w.as_str())) || list.contains(&joined.as_str()) {
            return Some(what);
        }
    }
    match type_name {
        "inet" | "cidr" => Some("an IP address"),
        "macaddr" | "macaddr8" => Some("a MAC address"),
        _ => None,
    }
}

/// A table whose rows would go into the masked archive (on a `--schema-only` archive, too:
/// the rules are judged against the schema).
fn has_rows(t: &Table, plan: Option<&TablePlan>) -> bool {
    t.relkind == "r" && plan.is_none_or(|p| !p.dropped)
}

fn ruled(plan: Option<&TablePlan>, i: usize) -> bool {
    plan.is_some_and(|p| p.columns.iter().any(|c| c.index == i) || p.kept.contains(&i))
}

/// What `--strict` refuses, one sentence each.
pub fn strict_violations(m: &Manifest, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for t in &m.tables {
        let p = plan.tables.get(&t.id);
        if !has_rows(t, p) {
            continue;
        }
        for (_, c) in t.columns.iter().enumerate().filter(|(i, _)| !ruled(p, *i)) {
            let q = format!("{}.{}.{}", t.schema, t.name, c.name);
            if let Some(what) = looks_personal(&c.name, &c.type_name) {
                out.push(format!("{q} looks like {what} and has no rule"));
            } else if p.is_some_and(|p| p.section) {
                out.push(format!(
                    "{q} is not named in the rules of its table (give it a rule, or list it in keep)"
                ));
            }
        }
    }
    if let Some(lo) = unruled_large_objects(m, plan) {
        out.push(format!(
            "{lo} and no rule covers them (add [large_objects] with action = \"drop\", \"replace\" or \"keep\")"
        ));
    }
    out
}

/// "3 large objects", when the archive carries large objects that no rule covers; an archive
/// of older weir does not say how many it carries, and then it may carry some.
fn unruled_large_objects(m: &Manifest, plan: &Plan) -> Option<String> {
    if !m.blobs || plan.large_objects.is_some() {
        return None;
    }
    match m.large_objects {
        Some(0) => None,
        Some(n) => Some(format!("the archive carries {n} large objects")),
        None => Some("the archive may carry large objects (it does not say how many)".into()),
    }
}

/// What the schema report says: the credentials that will be taken out, and every comment,
/// which travels as written unless the rules drop them.
pub fn schema_report(
    s: &super::schema::Scrubbed,
    plan: &Plan,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for r in &s.removed {
        writeln!(out, "schema: {r}: removed")?;
    }
    let fate = match plan.drop_comments {
        true => "dropped ([schema] comments = \"drop\")",
        false => "kept as written (free text: [schema] comments = \"drop\" empties them)",
    };
    if !s.comments.is_empty() {
        writeln!(out, "schema: {} comments, {fate}:", s.comments.len())?;
        for c in &s.comments {
            writeln!(out, "  {}", c.replace('\n', " "))?;
        }
    }
    Ok(())
}

/// The large objects' line of the report.
fn large_objects_report(m: &Manifest, plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    use super::rules::LargeObjectAction as A;
    if !m.blobs || m.large_objects == Some(0) {
        return Ok(());
    }
    let n = m.large_objects.map_or("the".to_string(), |n| n.to_string());
    match plan.large_objects.as_ref().map(|l| l.action) {
        None => writeln!(out, "large objects: {n}, no rule: pass through UNMASKED"),
        Some(A::Drop) => writeln!(out, "large objects: {n}, dropped"),
        Some(A::Replace) => writeln!(out, "large objects: {n}, contents replaced"),
        Some(A::Keep) => writeln!(out, "large objects: {n}, kept unmasked by rule"),
    }
}

/// The validation report: every table with rows and something to say.
pub fn report(m: &Manifest, plan: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    for t in &m.tables {
        let p = plan.tables.get(&t.id);
        if t.relkind != "r" {
            continue;
        }
        if !has_rows(t, p) {
            if p.is_some_and(|p| p.dropped) {
                writeln!(out, "{}.{}: rows dropped (data = false)", t.schema, t.name)?;
            }
            continue;
        }
        let personal: Vec<usize> = (0..t.columns.len())
            .filter(|&i| !ruled(p, i))
            .filter(|&i| looks_personal(&t.columns[i].name, &t.columns[i].type_name).is_some())
            .collect();
        if p.is_none() && personal.is_empty() {
            continue;
        }
        writeln!(out, "{}.{}", t.schema, t.name)?;
        table_report(t, p, out)?;
    }
    large_objects_report(m, plan, out)
}

fn table_report(t: &Table, p: Option<&TablePlan>, out: &mut dyn Write) -> std::io::Result<()> {
    for (i, c) in t.columns.iter().enumerate() {
        let plan = p.and_then(|p| p.columns.iter().find(|c| c.index == i));
        let line = match plan {
            Some(cp) => {
                let steps: Vec<&str> = cp
                    .steps
                    .iter()
                    .map(|s| {
                        s.name
                            .rsplit_once(" (")
                            .map_or("", |(_, k)| k.trim_end_matches(')'))
                    })
                    .collect();
                format!("  rule     {}: {}", c.name, steps.join(" then "))
            }
            None if p.is_some_and(|p| p.kept.contains(&i)) => format!("  keep     {}", c.name),
            None => match looks_personal(&c.name, &c.type_name) {
                Some(what) => format!("  NO RULE  {} (looks like {what})", c.name),
                None => format!("  no rule  {}", c.name),
            },
        };
        writeln!(out, "{line}")?;
        if let (Some(_), Some(base)) = (plan, &c.base) {
            writeln!(
                out,
                "  domain   {}: {} over {base}; weir-mask does not evaluate its CHECK constraints",
                c.name, c.type_name
            )?;
        }
    }
    let changed = |name: &String| {
        p.is_some_and(|p| p.columns.iter().any(|c| t.columns[c.index].name == *name))
    };
    for u in t.unique.iter().filter(|u| u.columns.iter().any(changed)) {
        writeln!(
            out,
            "  unique   {} ({}): the rules keep distinct values distinct",
            u.name,
            u.columns.join(", ")
        )?;
    }
    for ch in t.checks.iter().filter(|c| c.columns.iter().any(changed)) {
        writeln!(
            out,
            "  check    {} ({}): {} reads a masked column and may refuse its values",
            ch.name,
            ch.columns.join(", "),
            ch.definition
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_columns_by_name_and_type() {
        assert_eq!(
            looks_personal("user_email", "text"),
            Some("an e-mail address")
        );
        assert_eq!(looks_personal("dateOfBirth", "date"), Some("a birth date"));
        assert_eq!(looks_personal("last_name", "text"), Some("a name"));
        assert_eq!(looks_personal("LastName", "text"), Some("a name"));
        assert_eq!(looks_personal("client", "inet"), Some("an IP address"));
        assert_eq!(looks_personal("rename_count", "integer"), None);
        assert_eq!(looks_personal("shipping", "text"), None);
        assert_eq!(
            looks_personal("created_at", "timestamp with time zone"),
            None
        );
    }
}
