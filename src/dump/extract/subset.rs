//! `--subset`: rows that satisfy a condition, every row they reference (transitively, across
//! composite, nullable and self-referencing keys and cycles), optionally the rows that
//! reference them, and nothing that would break a foreign key.
//!
//! The closure is computed by the server inside the snapshot, as one recursive query over
//! `(table, ctid)` pairs; every worker that COPYs a subset table runs it in the same
//! snapshot, so all of them see the same closure. Tables fall in three groups:
//! - **closure tables** (seeds, the tables kept rows reference, and with `--subset-dependents`
//!   the tables that reference seeds): only the rows of the closure;
//! - **restricted tables**, which reference closure or restricted tables but are not in the
//!   closure: their rows minus those that reference a row left out (and minus the rows that
//!   reference those, transitively), so no row points at a missing one;
//! - all others: every row.

use crate::archive::Table;
use crate::pg::pattern::Pattern;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};

/// What the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct SubsetSpec {
    /// `TABLE:CONDITION`
    pub seeds: Vec<String>,
    /// `CHILD(COLS)->PARENT(COLS)`
    pub virtual_fks: Vec<String>,
    pub dependents: bool,
}

/// One foreign key (real or declared) between tables with rows, by index into the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Edge {
    child: usize,
    child_cols: Vec<String>,
    parent: usize,
    parent_cols: Vec<String>,
}

/// The role of a table in the subset, as the manifest records it.
pub const SEED: &str = "seed";
pub const CLOSURE: &str = "referenced";
pub const RESTRICTED: &str = "restricted";

/// The planned subset: each filtered table's role and the query that selects its rows.
pub struct Subset {
    roles: BTreeMap<u32, &'static str>,
    selects: BTreeMap<u32, String>,
}

impl Subset {
    /// The role of table `id`, if the subset filters it.
    pub fn role(&self, id: u32) -> Option<&'static str> {
        self.roles.get(&id).copied()
    }

    /// The COPY query of a filtered table.
    pub fn copy_query(&self, t: &Table) -> Option<String> {
        Some(format!("COPY ({}) TO STDOUT", self.select(t)?))
    }

    /// The query that selects a filtered table's rows.
    pub fn select(&self, t: &Table) -> Option<String> {
        self.selects.get(&t.id).cloned()
    }
}

/// Each filtered table's query. A closure table's walk covers only the tables whose rows can
/// lead to it, and a seed table that no key leads back to needs no walk at all: its rows are
/// those its condition picks (every worker runs its table's walk, so a smaller one is time
/// saved on the server). Restricted tables need the whole closure.
fn selects(
    tables: &[Table],
    seeds: &[(usize, String)],
    edges: &[Edge],
    (closure, down, restricted): (&BTreeSet<usize>, &BTreeSet<usize>, &BTreeSet<usize>),
) -> BTreeMap<u32, String> {
    let flows = flows(edges, closure, down);
    // Every restricted table reads the same whole closure.
    let all: BTreeSet<usize> = (0..tables.len()).collect();
    let whole = (!restricted.is_empty())
        .then(|| with_clause(tables, seeds, edges, (closure, down, restricted), &all));
    let mut out = BTreeMap::new();
    for &i in closure.iter().chain(restricted) {
        let t = &tables[i];
        let head = format!("SELECT {} FROM ONLY {}", t.column_list(), t.qualified());
        let query = if let (true, Some(with)) = (restricted.contains(&i), &whole) {
            format!(
                "{with} {head} WHERE NOT EXISTS (SELECT 1 FROM bad b WHERE b.rel = {} AND b.tid = ctid)",
                t.id
            )
        } else if !flows.iter().any(|(_, to)| *to == i) {
            let cond = &seeds.iter().find(|(s, _)| *s == i).expect("a seed").1;
            format!("{head} WHERE {cond}")
        } else {
            let only = reaching(i, &flows);
            let none = BTreeSet::new();
            let with = with_clause(tables, seeds, edges, (closure, down, &none), &only);
            format!(
                "{with} {head} WHERE ctid = ANY (ARRAY(SELECT k.tid FROM kept k WHERE k.rel = {}))",
                t.id
            )
        };
        out.insert(t.id, query);
    }
    out
}

/// Which way rows pull others in: (from, to) by table, for each key the walk follows.
fn flows(edges: &[Edge], closure: &BTreeSet<usize>, down: &BTreeSet<usize>) -> Vec<(usize, usize)> {
    let up = edges
        .iter()
        .filter(|e| closure.contains(&e.child))
        .map(|e| (e.child, e.parent));
    let dn = edges
        .iter()
        .filter(|e| down.contains(&e.parent))
        .map(|e| (e.parent, e.child));
    up.chain(dn).collect()
}

/// The tables whose rows can lead to rows of `target`, itself included.
fn reaching(target: usize, flows: &[(usize, usize)]) -> BTreeSet<usize> {
    let mut out = BTreeSet::from([target]);
    loop {
        let before = out.len();
        for (from, to) in flows {
            if out.contains(to) {
                out.insert(*from);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Plans the subset over the chosen tables; `None` without `--subset`.
pub fn plan(tables: &[Table], spec: &SubsetSpec) -> Result<Option<Subset>> {
    if spec.seeds.is_empty() {
        if spec.dependents || !spec.virtual_fks.is_empty() {
            bail!("--subset-dependents and --virtual-fk need --subset");
        }
        return Ok(None);
    }
    let seeds = seeds(tables, &spec.seeds)?;
    let mut edges = real_edges(tables);
    for v in &spec.virtual_fks {
        edges.extend(virtual_edges(tables, v)?);
    }
    let (closure, down) = closure_tables(&seeds, &edges, spec.dependents);
    let restricted = restricted_tables(&closure, &edges);
    let mut roles = BTreeMap::new();
    for &i in &closure {
        let seed = seeds.iter().any(|(s, _)| *s == i);
        roles.insert(tables[i].id, if seed { SEED } else { CLOSURE });
    }
    for &i in &restricted {
        roles.insert(tables[i].id, RESTRICTED);
    }
    // A seed's --where narrows its seeds; anywhere else it would leave out rows that others
    // reference.
    for (&id, role) in &roles {
        let t = tables.iter().find(|t| t.id == id).expect("a chosen table");
        if let (Some(f), false) = (&t.filter, *role == SEED) {
            bail!(
                "--where on {} ({f}) would leave out rows that the subset needs; \
                 put the condition in --subset instead",
                name(t)
            );
        }
    }
    let selects = selects(tables, &seeds, &edges, (&closure, &down, &restricted));
    Ok(Some(Subset { roles, selects }))
}

fn name(t: &Table) -> String {
    format!("{}.{}", t.schema, t.name)
}

/// Does `p` name `t` or the partitioned table at the top of its tree?
fn names(p: &Pattern, t: &Table) -> bool {
    p.matches_table(&t.schema, &t.name, true)
        || t.partition_root
            .as_ref()
            .is_some_and(|[s, n]| p.matches_table(s, n, true))
}

/// The tables with rows a pattern names (a partitioned table: its partitions).
fn matching(tables: &[Table], pattern: &str, what: &str) -> Result<Vec<usize>> {
    let p = Pattern::table(pattern)?;
    let found: Vec<usize> = (0..tables.len())
        .filter(|&i| tables[i].data && names(&p, &tables[i]))
        .collect();
    if found.is_empty() {
        bail!("{what}: no table with rows in the extraction matches {pattern:?}");
    }
    Ok(found)
}

/// `TABLE:CONDITION` arguments, each table's conditions joined with OR (and with the
/// table's own `--where` filter by AND).
fn seeds(tables: &[Table], args: &[String]) -> Result<Vec<(usize, String)>> {
    let mut by_table: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for a in args {
        let (t, cond) = a
            .split_once(':')
            .ok_or_else(|| anyhow!("--subset {a:?}: expected TABLE:CONDITION"))?;
        for i in matching(tables, t, &format!("--subset {a:?}"))? {
            by_table.entry(i).or_default().push(format!("({cond})"));
        }
    }
    Ok(by_table
        .into_iter()
        .map(|(i, conds)| {
            let any = conds.join(" OR ");
            let cond = match &tables[i].filter {
                Some(f) => format!("({any}) AND {f}"),
                None => any,
            };
            (i, cond)
        })
        .collect())
}

/// The foreign keys the manifest records, between tables with rows. A key that references a
/// partitioned table is recorded for each of its partitions; those records are used.
fn real_edges(tables: &[Table]) -> Vec<Edge> {
    let by_oid: BTreeMap<u32, usize> = (0..tables.len()).map(|i| (tables[i].oid, i)).collect();
    let mut out = Vec::new();
    for (child, t) in tables.iter().enumerate().filter(|(_, t)| t.data) {
        for fk in &t.foreign_keys {
            let Some(&parent) = by_oid.get(&fk.references_oid) else {
                continue;
            };
            if tables[parent].data && !fk.columns.is_empty() {
                out.push(Edge {
                    child,
                    child_cols: fk.columns.clone(),
                    parent,
                    parent_cols: fk.references_columns.clone(),
                });
            }
        }
    }
    out
}

/// `CHILD(a, b)->PARENT(x, y)`: a foreign key the schema does not declare.
fn virtual_edges(tables: &[Table], arg: &str) -> Result<Vec<Edge>> {
    let bad = || anyhow!("--virtual-fk {arg:?}: expected CHILD(COLUMNS)->PARENT(COLUMNS)");
    let side = |s: &str| -> Result<(String, Vec<String>)> {
        let (t, cols) = s.trim().split_once('(').ok_or_else(bad)?;
        let cols = cols.strip_suffix(')').ok_or_else(bad)?;
        let cols: Vec<String> = cols.split(',').map(|c| c.trim().to_string()).collect();
        if cols.iter().any(String::is_empty) {
            return Err(bad());
        }
        Ok((t.trim().to_string(), cols))
    };
    let (c, p) = arg.split_once("->").ok_or_else(bad)?;
    let ((ct, child_cols), (pt, parent_cols)) = (side(c)?, side(p)?);
    if child_cols.len() != parent_cols.len() {
        bail!("--virtual-fk {arg:?}: the two column lists differ in length");
    }
    let what = format!("--virtual-fk {arg:?}");
    let (children, parents) = (matching(tables, &ct, &what)?, matching(tables, &pt, &what)?);
    let sides = [(&children, &child_cols), (&parents, &parent_cols)];
    for (i, col) in sides.iter().flat_map(|(ts, cols)| {
        ts.iter()
            .flat_map(move |i| cols.iter().map(move |c| (*i, c)))
    }) {
        if !tables[i].columns.iter().any(|c| c.name == *col) {
            bail!("{what}: table {} has no column {col:?}", name(&tables[i]));
        }
    }
    let mut out = Vec::new();
    for &child in &children {
        for &parent in &parents {
            out.push(Edge {
                child,
                child_cols: child_cols.clone(),
                parent,
                parent_cols: parent_cols.clone(),
            });
        }
    }
    Ok(out)
}

/// The closure tables, and those of them whose rows may pull in the rows that reference them
/// (seeds and, with dependents, the tables reached downward). A pure walk of the key graph.
fn closure_tables(
    seeds: &[(usize, String)],
    edges: &[Edge],
    dependents: bool,
) -> (BTreeSet<usize>, BTreeSet<usize>) {
    let mut closure: BTreeSet<usize> = seeds.iter().map(|(i, _)| *i).collect();
    let mut down: BTreeSet<usize> = if dependents {
        closure.clone()
    } else {
        BTreeSet::new()
    };
    loop {
        let before = (closure.len(), down.len());
        for e in edges {
            if closure.contains(&e.child) {
                closure.insert(e.parent);
            }
            if down.contains(&e.parent) {
                down.insert(e.child);
                closure.insert(e.child);
            }
        }
        if (closure.len(), down.len()) == before {
            return (closure, down);
        }
    }
}

/// Tables outside the closure that reference a closure or restricted table.
fn restricted_tables(closure: &BTreeSet<usize>, edges: &[Edge]) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    loop {
        let before = out.len();
        for e in edges {
            let filtered = closure.contains(&e.parent) || out.contains(&e.parent);
            if filtered && !closure.contains(&e.child) {
                out.insert(e.child);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// `p.x = c.a AND p.y = c.b`
fn join_on(e: &Edge) -> String {
    let pairs = e.parent_cols.iter().zip(&e.child_cols);
    let eq: Vec<String> = pairs
        .map(|(p, c)| format!("p.{} = c.{}", q(p), q(c)))
        .collect();
    eq.join(" AND ")
}

fn q(s: &str) -> String {
    crate::pg::sql::quote_ident(s)
}

/// The shared clause: `kept(rel, tid, down)`, the closure, and `bad(rel, tid)`, the rows of
/// restricted tables that reference a row left out. PostgreSQL lets a recursive term read its
/// own query once only, so each step is one LATERAL over the rows found last, with an arm per
/// key and direction; an arm runs only for rows of its table (`k.rel`), finding a referenced
/// row by the parent's key and a referencing one by the child's columns (an index there
/// keeps `--subset-dependents` fast). UNION stops at rows already found, so cycles end.
fn with_clause(
    tables: &[Table],
    seeds: &[(usize, String)],
    edges: &[Edge],
    (closure, down, restricted): (&BTreeSet<usize>, &BTreeSet<usize>, &BTreeSet<usize>),
    only: &BTreeSet<usize>,
) -> String {
    let t = |i: usize| format!("ONLY {}", tables[i].qualified());
    let id = |i: usize| tables[i].id;
    let base: Vec<String> = seeds
        .iter()
        .filter(|(i, _)| only.contains(i))
        .map(|(i, cond)| format!("SELECT {}, ctid, true FROM {} WHERE {cond}", id(*i), t(*i)))
        .collect();
    let edges: Vec<&Edge> = edges
        .iter()
        .filter(|e| only.contains(&e.child) && only.contains(&e.parent))
        .collect();
    let mut arms = Vec::new();
    for e in edges.iter().filter(|e| closure.contains(&e.child)) {
        arms.push(format!(
            "SELECT {}, p.ctid, false FROM {} c JOIN {} p ON {} WHERE k.rel = {} AND c.ctid = k.tid",
            id(e.parent),
            t(e.child),
            t(e.parent),
            join_on(e),
            id(e.child)
        ));
    }
    for e in edges.iter().filter(|e| down.contains(&e.parent)) {
        arms.push(format!(
            "SELECT {}, c.ctid, true FROM {} p JOIN {} c ON {} WHERE k.rel = {} AND k.down AND p.ctid = k.tid",
            id(e.child),
            t(e.parent),
            t(e.child),
            join_on(e),
            id(e.parent)
        ));
    }
    let mut with = format!(
        "WITH RECURSIVE kept(rel, tid, down) AS ({}",
        base.join(" UNION ALL ")
    );
    if !arms.is_empty() {
        with.push_str(&format!(
            " UNION SELECT x.* FROM kept k, LATERAL ({}) x",
            arms.join(" UNION ALL ")
        ));
    }
    with.push(')');
    if !restricted.is_empty() {
        with.push_str(&format!(
            ", {}",
            bad_clause(tables, &edges, closure, restricted)
        ));
    }
    with
}

/// `bad(rel, tid)`: rows of restricted tables whose key into a closure table finds no kept
/// row (NULL keys reference nothing, as MATCH SIMPLE says), then the rows that reference bad
/// rows, transitively.
fn bad_clause(
    tables: &[Table],
    edges: &[&Edge],
    closure: &BTreeSet<usize>,
    restricted: &BTreeSet<usize>,
) -> String {
    let t = |i: usize| format!("ONLY {}", tables[i].qualified());
    let id = |i: usize| tables[i].id;
    let mut base = Vec::new();
    let mut arms = Vec::new();
    for e in edges.iter().filter(|e| restricted.contains(&e.child)) {
        if closure.contains(&e.parent) {
            let not_null: Vec<String> = e
                .child_cols
                .iter()
                .map(|c| format!("c.{} IS NOT NULL", q(c)))
                .collect();
            base.push(format!(
                "SELECT {}, c.ctid FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM kept k \
                 JOIN {} p ON p.ctid = k.tid WHERE k.rel = {} AND {})",
                id(e.child),
                t(e.child),
                not_null.join(" AND "),
                t(e.parent),
                id(e.parent),
                join_on(e)
            ));
        } else if restricted.contains(&e.parent) {
            arms.push(format!(
                "SELECT {}, c.ctid FROM {} p JOIN {} c ON {} WHERE b.rel = {} AND p.ctid = b.tid",
                id(e.child),
                t(e.parent),
                t(e.child),
                join_on(e),
                id(e.parent)
            ));
        }
    }
    if base.is_empty() {
        // Restricted only through other restricted tables in a cycle with no way into the
        // closure cannot happen (a restricted table reaches the closure), but keep SQL valid.
        base.push("SELECT 0, '(0,0)'::pg_catalog.tid WHERE false".into());
    }
    let mut out = format!("bad(rel, tid) AS ({}", base.join(" UNION ALL "));
    if !arms.is_empty() {
        out.push_str(&format!(
            " UNION SELECT x.* FROM bad b, LATERAL ({}) x",
            arms.join(" UNION ALL ")
        ));
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(child: usize, parent: usize) -> Edge {
        Edge {
            child,
            child_cols: vec!["p".into()],
            parent,
            parent_cols: vec!["id".into()],
        }
    }

    #[test]
    fn closure_follows_references_up_and_dependents_down_from_seeds_only() {
        // 0 customers <- 1 orders <- 2 items -> 3 products; 4 reviews -> 0 customers;
        // 5 employees -> 5 (self); 1 orders -> 5 employees.
        let edges = vec![
            edge(1, 0),
            edge(2, 1),
            edge(2, 3),
            edge(4, 0),
            edge(5, 5),
            edge(1, 5),
        ];
        let seeds = vec![(1, "true".to_string())];
        let (closure, down) = closure_tables(&seeds, &edges, false);
        assert_eq!(closure, BTreeSet::from([0, 1, 5]));
        assert!(down.is_empty());
        // items and reviews reference filtered tables: restricted; products is untouched.
        assert_eq!(restricted_tables(&closure, &edges), BTreeSet::from([2, 4]));
        let (closure, down) = closure_tables(&seeds, &edges, true);
        assert_eq!(closure, BTreeSet::from([0, 1, 2, 3, 5]));
        assert_eq!(down, BTreeSet::from([1, 2]));
        // Customers were reached upward: their reviews are restricted, not pulled in.
        assert_eq!(restricted_tables(&closure, &edges), BTreeSet::from([4]));
    }
}
