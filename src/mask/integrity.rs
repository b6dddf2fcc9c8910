//! Rules checked against the constraints the manifest records, so that a masked archive still
//! restores: a foreign key's column gets the rule of the key it references (or the rule set
//! is refused), a unique key never gets a rule that could make two rows collide, and a
//! partition key is never changed (rows would no longer match their partition's bounds).

use super::rules::{ColumnPlan, ColumnRule, ColumnRules};
use super::transform::{TemplatePart, Transformer};
use crate::archive::{Manifest, Table, UniqueKey};
use anyhow::{Result, bail};
use std::collections::HashMap;

/// One column of a foreign key and the column it references.
struct Link<'a> {
    child: (&'a Table, &'a str),
    parent: (&'a Table, &'a str),
    constraint: &'a str,
}

fn column_name(t: &Table, c: &str) -> String {
    format!("{}.{}.{c}", t.schema, t.name)
}

/// The links of every foreign key between tables with rows (a key that references a
/// partitioned table is recorded again for each of its partitions, and those are used).
fn links(m: &Manifest) -> Vec<Link<'_>> {
    let by_oid: HashMap<u32, &Table> = m.tables.iter().map(|t| (t.oid, t)).collect();
    let mut out = Vec::new();
    for t in m.tables.iter().filter(|t| t.relkind == "r") {
        for fk in &t.foreign_keys {
            let Some(p) = by_oid.get(&fk.references_oid).filter(|p| p.relkind == "r") else {
                continue;
            };
            for (c, k) in fk.columns.iter().zip(&fk.references_columns) {
                out.push(Link {
                    child: (t, c),
                    parent: (p, k),
                    constraint: &fk.name,
                });
            }
        }
    }
    out
}

/// Gives every column that references a key with a rule that same rule, so masked keys and
/// the columns that reference them still match (equal rules give equal values: the rule's
/// text seeds its pseudonyms). A referencing column with a rule of its own must have the
/// same rule, or only `null`; anything else would leave rows pointing at keys that no longer
/// exist, and is refused with both columns named.
pub fn inherit_over_foreign_keys(m: &Manifest, rules: &mut ColumnRules) -> Result<()> {
    let links = links(m);
    // Until nothing changes: a rule reaches a column that references a column that
    // references the key. Each pass that changes something fills one more column.
    loop {
        let mut changed = false;
        for l in &links {
            let get = |r: &ColumnRules, (t, c): (&Table, &str)| -> Option<ColumnRule> {
                r.get(&t.id).and_then(|cols| cols.get(c)).cloned()
            };
            match (get(rules, l.parent), get(rules, l.child)) {
                (Some(p), None) => {
                    check_inheritable(&p, l)?;
                    let from = p.from.clone().or(Some(column_name(l.parent.0, l.parent.1)));
                    let rule = ColumnRule {
                        specs: p.specs,
                        from,
                    };
                    let (t, c) = l.child;
                    rules.entry(t.id).or_default().insert(c.to_string(), rule);
                    changed = true;
                }
                (None, Some(c)) if !only_nulls(&c) => bail!(
                    "rules mask {} but not {}, which it references ({}): the masked values \
                     would point at rows that do not exist; put the rule on {} and weir-mask \
                     applies it to every column that references it",
                    column_name(l.child.0, l.child.1),
                    column_name(l.parent.0, l.parent.1),
                    l.constraint,
                    column_name(l.parent.0, l.parent.1),
                ),
                (Some(p), Some(c)) if p.specs != c.specs && !only_nulls(&c) => bail!(
                    "rules for {} and {}, which it references ({}), differ: the masked values \
                     would not match; give the referencing column no rule (it takes the key's)",
                    column_name(l.child.0, l.child.1),
                    column_name(l.parent.0, l.parent.1),
                    l.constraint,
                ),
                _ => {}
            }
        }
        if !changed {
            return Ok(());
        }
    }
}

/// A rule made only of `null` keeps a foreign key valid whatever the key's rule is.
fn only_nulls(r: &ColumnRule) -> bool {
    r.specs
        .iter()
        .all(|s| s.get("type").and_then(|t| t.as_str()) == Some("null") && !s.contains_key("when"))
}

/// A key's rule can pass to the columns that reference it only if it reads nothing but the
/// value: a condition or a template reads other columns of the key's row, which the
/// referencing row does not have.
fn check_inheritable(p: &ColumnRule, l: &Link) -> Result<()> {
    for s in &p.specs {
        let reads_row = if s.contains_key("when") {
            Some("a condition (when)")
        } else if s.get("type").and_then(|t| t.as_str()) == Some("template") {
            Some("a template")
        } else {
            None
        };
        if let Some(what) = reads_row {
            bail!(
                "the rule for {} has {what}, and {} references it ({}): the referencing rows \
                 cannot evaluate it, so their values would not match; use a rule that reads \
                 only the key's value (permute, hash)",
                column_name(l.parent.0, l.parent.1),
                column_name(l.child.0, l.child.1),
                l.constraint,
            );
        }
    }
    Ok(())
}

/// Refuses `null` on a NOT NULL column: the load would fail at the first row.
pub fn check_not_null(t: &Table, plans: &[ColumnPlan]) -> Result<()> {
    for p in plans.iter().filter(|p| t.columns[p.index].not_null) {
        if let Some(s) = p
            .steps
            .iter()
            .find(|s| matches!(s.transformer, Transformer::Null))
        {
            bail!(
                "{}: {} is NOT NULL, so the load would refuse the NULL; use set or a fake",
                s.name,
                t.columns[p.index].name
            );
        }
    }
    Ok(())
}

/// Refuses a rule on a column that decides which partition a row belongs to.
pub fn check_partition_key(t: &Table, plans: &[ColumnPlan]) -> Result<()> {
    for p in plans {
        let name = &t.columns[p.index].name;
        if t.partition_key.contains(name) {
            let root = t.partition_root.as_ref().map_or_else(
                || format!("{}.{}", t.schema, t.name),
                |[s, n]| format!("{s}.{n}"),
            );
            bail!(
                "{}: {name} is a partition key of {root}; a rule that changes it would put \
                 rows in a partition whose bounds refuse them, so leave it unmasked",
                p.steps[0].name
            );
        }
    }
    Ok(())
}

/// Refuses a rule that could give two rows the same value in a unique key. Safe: rules that
/// keep distinct values distinct (see [`keeps_distinct`]) and those the user vouches for in
/// `assume_unique`.
pub fn check_unique(t: &Table, plans: &[ColumnPlan], assume_unique: &[String]) -> Result<()> {
    for u in &t.unique {
        for p in plans {
            let name = &t.columns[p.index].name;
            if !u.columns.contains(name) || assume_unique.contains(name) {
                continue;
            }
            if let Some(step) = first_colliding_step(t, p, plans, u) {
                bail!(
                    "{}: two rows could get the same {name}, which {} {} ({}) refuses; use a \
                     rule that keeps distinct values distinct (permute, hash, a fake with \
                     unique = true, no condition), or list {name:?} in the table's \
                     assume_unique if this one does",
                    step,
                    describe(u),
                    u.name,
                    u.columns.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn describe(u: &UniqueKey) -> &'static str {
    match u.kind.as_str() {
        "primary" => "primary key",
        "unique" => "unique constraint",
        "exclusion" => "exclusion constraint",
        _ => "unique index",
    }
}

/// The name of the first step of `p` that may map two values to one, if any.
fn first_colliding_step(
    t: &Table,
    p: &ColumnPlan,
    plans: &[ColumnPlan],
    u: &UniqueKey,
) -> Option<String> {
    p.steps
        .iter()
        .find(|s| {
            // A step that runs on some rows only can map a value onto another row's
            // unchanged one.
            s.when.is_some() || !keeps_distinct(t, &s.transformer, plans, u.nulls_not_distinct)
        })
        .map(|s| s.name.clone())
}

/// Does the transformer map distinct values to distinct values? A template does when it
/// reads exactly one column, and that column is unique by itself and keeps distinct values
/// distinct (`user_{id}@example.com`).
fn keeps_distinct(t: &Table, tr: &Transformer, plans: &[ColumnPlan], nulls_collide: bool) -> bool {
    let Transformer::Template(parts) = tr else {
        return tr.keeps_distinct(nulls_collide);
    };
    let read: Vec<(usize, bool)> = parts
        .iter()
        .filter_map(|p| match p {
            TemplatePart::Column { index, original } => Some((*index, *original)),
            TemplatePart::Text(_) => None,
        })
        .collect();
    let [(index, original)] = read[..] else {
        return false;
    };
    let name = &t.columns[index].name;
    let unique_alone = t.unique.iter().any(|u| {
        u.kind != "exclusion" && !u.partial && u.columns.len() == 1 && u.columns[0] == *name
    });
    // Templates read each other without circles (order_templates refused those), so this
    // recursion ends.
    let masked_distinct = || {
        plans.iter().find(|p| p.index == index).is_none_or(|p| {
            p.steps.iter().all(|s| {
                s.when.is_none() && keeps_distinct(t, &s.transformer, plans, nulls_collide)
            })
        })
    };
    unique_alone && (original || masked_distinct())
}
