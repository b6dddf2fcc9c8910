//! The rules file and its compilation against an archive's manifest.
//!
//! ```toml
//! [tables."public.users"]
//! columns.email = "email"                                   # one transformer by name
//! columns.name = { type = "full_name" }
//! columns.id = "permute"                                    # keyed permutation: keys stay keys
//! columns.note = [{ type = "regex_replace", pattern = "\\d", with = "#" },
//!                 { type = "truncate", length = 20, when = { column = "vip", equals = "t" } }]
//! drop_rows = { column = "deleted", equals = "t" }
//!
//! [tables."public.audit_*"]
//! data = false                                              # schema stays, rows go
//!
//! [tables."public.orders"]                                  # change streams only: routing
//! keep_rows = { column = "total", gt = 100 }
//! operations = ["insert", "update"]
//! exclude = ["card_token"]
//! rename = "analytics.orders"
//! rename_columns = { note = "remark" }
//! ```
//! Everything is checked before the first row: tables and columns must exist (the nearest
//! name is suggested), each transformer must be able to produce the column's type.

use super::constant::Order;
use super::transform::{self, Params, Transformer};
use super::types::Ty;
use crate::archive::{Manifest, Table};
use crate::pg::pattern::Pattern;
use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    tables: BTreeMap<String, TableRules>,
    large_objects: Option<LargeObjects>,
    #[serde(default)]
    schema: SchemaRules,
}

/// `[large_objects]`: what becomes of the archive's large objects, whose contents no column
/// rule reaches.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LargeObjects {
    pub action: LargeObjectAction,
    /// With `replace`: the contents every large object gets (empty by default).
    pub with: Option<String>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LargeObjectAction {
    /// Out of the archive: no `lo_create`, no contents (OIDs stored in columns then dangle).
    Drop,
    /// Each object stays (OID, owner) with the `with` contents.
    Replace,
    /// Through as they are, on purpose.
    Keep,
}

impl LargeObjectAction {
    /// What became of the large objects, as the manifest's `mask.large_objects` says it.
    pub fn done(self) -> &'static str {
        match self {
            LargeObjectAction::Drop => "dropped",
            LargeObjectAction::Replace => "replaced",
            LargeObjectAction::Keep => "kept",
        }
    }
}

/// `[schema]`: `comments = "drop"` empties every `COMMENT ON` of the schema.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SchemaRules {
    #[serde(default)]
    comments: Comments,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Comments {
    #[default]
    Keep,
    Drop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableRules {
    /// false drops the table's rows and keeps its schema.
    #[serde(default = "yes")]
    data: bool,
    keep_rows: Option<CondSpec>,
    drop_rows: Option<CondSpec>,
    #[serde(default)]
    columns: BTreeMap<String, Chain>,
    /// Columns whose rules the user vouches keep distinct values distinct, where weir cannot
    /// tell (a template built from a key, a command).
    #[serde(default)]
    assume_unique: Vec<String>,
    /// Columns that stay as they are, named so that `--strict` knows they were seen.
    #[serde(default)]
    keep: Vec<String>,
    /// Change streams only (pg_flo's routing): the kinds of change that pass.
    operations: Option<Vec<Operation>>,
    /// Change streams only: columns left out of every change.
    #[serde(default)]
    exclude: Vec<String>,
    /// Change streams only: the table's name downstream, `schema.table` or `table`.
    rename: Option<String>,
    /// Change streams only: columns' names downstream.
    #[serde(default)]
    rename_columns: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    /// The action letter of weir-cdc's lines.
    fn action(self) -> &'static str {
        match self {
            Operation::Insert => "I",
            Operation::Update => "U",
            Operation::Delete => "D",
            Operation::Truncate => "T",
        }
    }
}

impl Default for TableRules {
    fn default() -> TableRules {
        TableRules {
            data: true,
            keep_rows: None,
            drop_rows: None,
            columns: BTreeMap::new(),
            assume_unique: Vec::new(),
            keep: Vec::new(),
            operations: None,
            exclude: Vec::new(),
            rename: None,
            rename_columns: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Chain {
    Name(String),
    One(toml::Table),
    Many(Vec<toml::Table>),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CondSpec {
    column: String,
    equals: Option<toml::Value>,
    not_equals: Option<toml::Value>,
    #[serde(rename = "in")]
    one_of: Option<Vec<toml::Value>>,
    is_null: Option<bool>,
    matches: Option<String>,
    gt: Option<toml::Value>,
    gte: Option<toml::Value>,
    lt: Option<toml::Value>,
    lte: Option<toml::Value>,
    contains: Option<String>,
}

/// A condition on the original values of a row.
pub struct Condition {
    pub column: usize,
    test: Test,
    /// How the column's value is brought to the form the constants were compiled to.
    canon: super::constant::Canon,
}

enum Test {
    Equals(Vec<u8>),
    NotEquals(Vec<u8>),
    OneOf(Vec<Vec<u8>>),
    IsNull(bool),
    Matches(regex::bytes::Regex),
    /// `gt` and the rest: the orderings that hold, the constant, how the type orders.
    Compare(&'static [std::cmp::Ordering], Vec<u8>, Order),
    Contains(Vec<u8>),
}

impl Condition {
    pub fn holds(&self, row: &[Option<Vec<u8>>]) -> bool {
        let raw = row[self.column].as_deref();
        let v = || raw.and_then(|v| self.canon.apply(v));
        match &self.test {
            Test::Equals(x) => v().is_some_and(|v| *v == **x),
            Test::NotEquals(x) => raw.is_some() && v().is_none_or(|v| *v != **x),
            Test::OneOf(xs) => v().is_some_and(|v| xs.iter().any(|x| **x == *v)),
            Test::IsNull(want) => raw.is_none() == *want,
            Test::Matches(re) => raw.is_some_and(|v| re.is_match(v)),
            Test::Compare(holds, x, order) => v()
                .and_then(|v| order.cmp(&v, x))
                .is_some_and(|o| holds.contains(&o)),
            Test::Contains(x) => raw.is_some_and(|v| memchr::memmem::find(v, x).is_some()),
        }
    }
}

/// One step of a column's chain.
pub struct Step {
    /// `public.users.email[0] (email)`, for messages.
    pub name: String,
    /// Keyed by the canonical rule text that seeds its pseudonyms: the transformer and its
    /// parameters, not the table or column, so equal rules give equal values everywhere
    /// (joins still match).
    pub key: super::keyed::RuleKey,
    pub when: Option<Condition>,
    pub transformer: Transformer,
}

pub struct ColumnPlan {
    pub index: usize,
    pub ty: Ty,
    pub steps: Vec<Step>,
    /// Templates run after every other column, so they can read masked values.
    pub late: bool,
    /// False when every step always yields a value of the column's type (permutations, NULL),
    /// so the per-value check can be skipped.
    pub check_fit: bool,
}

/// What to do with one table of the archive.
pub struct TablePlan {
    pub data: bool,
    pub keep: Option<Condition>,
    pub drop: Option<Condition>,
    pub columns: Vec<ColumnPlan>,
    /// Some column has a template, which reads the masked values of others.
    pub templates: bool,
    /// Columns that must be decoded: masked ones and those conditions or templates read.
    pub decode: Vec<bool>,
    /// The rules say `data = false` (the archive may have no rows for it anyway).
    pub dropped: bool,
    /// The table has a section in the rules file (not only rules inherited over keys).
    pub section: bool,
    /// The columns listed in `keep`.
    pub kept: Vec<usize>,
    /// What a change stream's lines of the table become besides masked.
    pub route: Route,
}

/// pg_flo's routing rules, which only a change stream has a use for: which kinds of change
/// pass, which columns are left out, and the names downstream.
#[derive(Default)]
pub struct Route {
    /// The action letters (`I`, `U`, `D`, `T`) that pass; `None`: all of them.
    pub operations: Option<Vec<&'static str>>,
    /// By column index; empty when nothing is excluded.
    pub exclude: Vec<bool>,
    /// The schema and table downstream.
    pub rename: Option<(String, String)>,
    /// By column index, the name downstream; empty when no column is renamed.
    pub columns: Vec<Option<String>>,
}

impl Route {
    pub fn is_empty(&self) -> bool {
        self.operations.is_none()
            && self.exclude.is_empty()
            && self.rename.is_none()
            && self.columns.is_empty()
    }

    pub fn passes(&self, action: &str) -> bool {
        self.operations.as_ref().is_none_or(|o| o.contains(&action))
    }

    pub fn excluded(&self, i: usize) -> bool {
        self.exclude.get(i).copied().unwrap_or(false)
    }
}

impl TablePlan {
    /// Does a change stream's line of the table change (masked, filtered or routed)?
    pub fn changes_lines(&self) -> bool {
        self.rewrites_rows() || !self.data || !self.route.is_empty()
    }

    /// Does the plan change anything in the rows? If not, chunks pass through untouched.
    pub fn rewrites_rows(&self) -> bool {
        self.data && (self.keep.is_some() || self.drop.is_some() || !self.columns.is_empty())
    }
}

/// The compiled rules: a plan per table id of the manifest.
pub struct Plan {
    pub tables: BTreeMap<u32, TablePlan>,
    /// The `[large_objects]` rule, if any.
    pub large_objects: Option<LargeObjects>,
    /// `[schema] comments = "drop"`.
    pub drop_comments: bool,
}

pub fn parse(text: &str, origin: &str) -> Result<RulesText> {
    let file: RulesFile = toml::from_str(text)
        .map_err(|e| anyhow!("{origin}: {}", crate::plumbing::one_line(&e.to_string())))?;
    Ok(RulesText { file })
}

/// A parsed rules file, not yet checked against an archive.
pub struct RulesText {
    file: RulesFile,
}

/// Does `p` select table `t` or the partitioned table at the top of its tree?
fn selects(p: &Pattern, t: &Table) -> bool {
    p.matches_table(&t.schema, &t.name, true)
        || t.partition_root
            .as_ref()
            .is_some_and(|[s, n]| p.matches_table(s, n, true))
}

/// One column's rule as written, or as inherited from the key the column references.
#[derive(Clone)]
pub struct ColumnRule {
    pub specs: Vec<toml::Table>,
    /// `public.parent.id` when the rule came over a foreign key from that column.
    pub from: Option<String>,
}

/// The column rules of every table, by table id and column name.
pub type ColumnRules = BTreeMap<u32, BTreeMap<String, ColumnRule>>;

impl Chain {
    fn specs(&self) -> Vec<toml::Table> {
        match self {
            Chain::Name(n) => {
                let mut tb = toml::Table::new();
                tb.insert("type".into(), toml::Value::String(n.clone()));
                vec![tb]
            }
            Chain::One(tb) => vec![tb.clone()],
            Chain::Many(v) => v.clone(),
        }
    }
}

impl RulesText {
    pub fn compile(&self, m: &Manifest, key: &super::keyed::Key) -> Result<Plan> {
        let sections = self.sections(m)?;
        let mut rules: ColumnRules = sections
            .iter()
            .map(|(id, (_, r))| {
                let columns = r.columns.iter().map(|(c, chain)| {
                    let rule = ColumnRule {
                        specs: chain.specs(),
                        from: None,
                    };
                    (c.clone(), rule)
                });
                (*id, columns.collect())
            })
            .collect();
        super::integrity::inherit_over_foreign_keys(m, &mut rules)?;
        let none = TableRules::default();
        let mut tables = BTreeMap::new();
        for t in m.tables.iter().filter(|t| t.relkind != "p") {
            let columns = rules.remove(&t.id).unwrap_or_default();
            let (pattern, section) = match sections.get(&t.id) {
                Some((p, r)) => (p.to_string(), *r),
                None if columns.is_empty() => continue,
                None => (format!("{}.{}", t.schema, t.name), &none),
            };
            let cx = TableCx { t, pattern, key };
            let mut plan = cx.compile(section, &columns)?;
            plan.section = sections.contains_key(&t.id);
            tables.insert(t.id, plan);
        }
        if let Some(lo) = &self.file.large_objects {
            if lo.with.is_some() && lo.action != LargeObjectAction::Replace {
                bail!("[large_objects]: `with` goes with action = \"replace\" only");
            }
        }
        Ok(Plan {
            tables,
            large_objects: self.file.large_objects.clone(),
            drop_comments: self.file.schema.comments == Comments::Drop,
        })
    }

    /// Each table's rule section, checked: every pattern matches a table, no table is matched
    /// twice. Partitioned parents are left out: their leaves were matched too.
    fn sections<'a>(&'a self, m: &Manifest) -> Result<BTreeMap<u32, (&'a str, &'a TableRules)>> {
        let mut out = BTreeMap::new();
        for (pattern, rules) in &self.file.tables {
            let p = Pattern::table(pattern)?;
            let matched: Vec<&Table> = m.tables.iter().filter(|t| selects(&p, t)).collect();
            if matched.is_empty() {
                bail!(
                    "rules for table {pattern}: no table in the archive matches{}",
                    hint(nearest_table(pattern, m))
                );
            }
            for t in matched.into_iter().filter(|t| t.relkind != "p") {
                if out.insert(t.id, (pattern.as_str(), rules)).is_some() {
                    bail!(
                        "table {}.{} is matched by two rule sections; give it one",
                        t.schema,
                        t.name
                    );
                }
            }
        }
        Ok(out)
    }
}

/// The table nearest to a pattern that matched nothing. An unqualified pattern is compared
/// with table names, a qualified one with qualified names; the suggestion is always qualified.
fn nearest_table(pattern: &str, m: &Manifest) -> Option<String> {
    let qualified = pattern.contains('.');
    let name = |t: &Table| {
        if qualified {
            format!("{}.{}", t.schema, t.name)
        } else {
            t.name.clone()
        }
    };
    let near = nearest(pattern, m.tables.iter().map(name))?;
    m.tables
        .iter()
        .find(|t| name(t) == near)
        .map(|t| format!("{}.{}", t.schema, t.name))
}

fn hint(n: Option<String>) -> String {
    n.map(|n| format!(" (did you mean {n}?)"))
        .unwrap_or_default()
}

/// One table being compiled: resolves its column names with the same wording everywhere.
struct TableCx<'a> {
    t: &'a Table,
    pattern: String,
    key: &'a super::keyed::Key,
}

impl TableCx<'_> {
    fn qualified(&self) -> String {
        format!("{}.{}", self.t.schema, self.t.name)
    }

    fn column(&self, name: &str) -> Result<usize> {
        let t = self.t;
        t.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                let near = nearest(name, t.columns.iter().map(|c| c.name.clone()));
                anyhow!(
                    "rules for {}: table {} has no column {name:?}{}",
                    self.pattern,
                    self.qualified(),
                    hint(near.map(|n| format!("{n:?}")))
                )
            })
    }

    fn ty(&self, index: usize) -> Ty {
        Ty::of(&self.t.columns[index])
    }

    fn compile(
        &self,
        rules: &TableRules,
        columns: &BTreeMap<String, ColumnRule>,
    ) -> Result<TablePlan> {
        let mut decode = vec![false; self.t.columns.len()];
        let keep = self.condition(rules.keep_rows.as_ref(), &mut decode)?;
        let drop = self.condition(rules.drop_rows.as_ref(), &mut decode)?;
        let mut plans = Vec::new();
        for (name, rule) in columns {
            plans.push(self.column_plan(name, rule, &mut decode)?);
        }
        plans.sort_by_key(|c| (c.late, c.index));
        let plans = order_templates(plans, &|i| {
            self.t.columns.get(i).map_or(String::new(), |c| {
                format!("{}.{}", self.qualified(), c.name)
            })
        })?;
        for name in &rules.assume_unique {
            let i = self.column(name)?;
            if !plans.iter().any(|c| c.index == i) {
                bail!(
                    "rules for {}: assume_unique names {name:?}, which has no rule",
                    self.pattern
                );
            }
        }
        let mut kept = Vec::new();
        for name in &rules.keep {
            let i = self.column(name)?;
            if let Some(p) = plans.iter().find(|c| c.index == i) {
                bail!(
                    "rules for {}: keep names {name:?}, which has a rule ({})",
                    self.pattern,
                    p.steps[0].name
                );
            }
            kept.push(i);
        }
        super::integrity::check_not_null(self.t, &plans)?;
        super::integrity::check_partition_key(self.t, &plans)?;
        super::integrity::check_unique(self.t, &plans, &rules.assume_unique)?;
        Ok(TablePlan {
            data: rules.data && self.t.data,
            keep,
            drop,
            templates: plans.iter().any(|c| c.late),
            columns: plans,
            decode,
            dropped: !rules.data,
            section: true,
            kept,
            route: self.route(rules)?,
        })
    }

    /// The routing rules, checked: named columns exist, no key column is excluded (updates
    /// and deletes downstream find their rows by it), no two columns end with one name.
    fn route(&self, rules: &TableRules) -> Result<Route> {
        let n = self.t.columns.len();
        let mut route = Route {
            operations: rules
                .operations
                .as_ref()
                .map(|o| o.iter().map(|o| o.action()).collect()),
            ..Route::default()
        };
        let key: Vec<&str> = self
            .t
            .unique
            .iter()
            .filter(|k| k.kind == "primary")
            .flat_map(|k| k.columns.iter().map(String::as_str))
            .collect();
        for name in &rules.exclude {
            let i = self.column(name)?;
            if key.contains(&name.as_str()) {
                bail!(
                    "rules for {}: exclude names {name:?}, part of the primary key: updates and deletes downstream find their rows by it",
                    self.pattern
                );
            }
            route.exclude.resize(n, false);
            route.exclude[i] = true;
        }
        for (from, to) in &rules.rename_columns {
            let i = self.column(from)?;
            if route.excluded(i) {
                bail!(
                    "rules for {}: {from:?} is both excluded and renamed",
                    self.pattern
                );
            }
            route.columns.resize(n, None);
            route.columns[i] = Some(to.clone());
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self
            .t
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !route.excluded(*i))
        {
            let name = route
                .columns
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| c.name.clone());
            if !names.insert(name.clone()) {
                bail!(
                    "rules for {}: two columns would be named {name:?} downstream",
                    self.pattern
                );
            }
        }
        route.rename = rules.rename.as_ref().map(|r| match r.split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => (self.t.schema.clone(), r.clone()),
        });
        Ok(route)
    }

    /// A condition (`keep_rows`, `drop_rows`, `when`), its constants typed as the column.
    fn condition(&self, spec: Option<&CondSpec>, decode: &mut [bool]) -> Result<Option<Condition>> {
        let Some(c) = spec else { return Ok(None) };
        let index = self.column(&c.column)?;
        decode[index] = true;
        let ty = self.ty(index);
        let typed = |v: &toml::Value| super::constant::compile(v, &ty, &c.column);
        let one_of = |v: &Vec<toml::Value>| v.iter().map(typed).collect::<Result<Vec<_>>>();
        let regex = |re: &String| {
            regex::bytes::Regex::new(re).map_err(|e| anyhow!("condition on {}: {e}", c.column))
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        let ordered = |v: &toml::Value, holds: &'static [std::cmp::Ordering]| {
            let order = Order::of(&ty).ok_or_else(|| {
                anyhow!(
                    "condition on {}: gt, gte, lt and lte compare numbers, text, dates, times, timestamps, uuids, booleans and enums; the column is {}",
                    c.column,
                    self.t.columns[index].type_name
                )
            })?;
            Ok::<_, anyhow::Error>(Test::Compare(holds, typed(v)?, order))
        };
        let tests = [
            c.equals.as_ref().map(typed).transpose()?.map(Test::Equals),
            c.not_equals
                .as_ref()
                .map(typed)
                .transpose()?
                .map(Test::NotEquals),
            c.one_of.as_ref().map(one_of).transpose()?.map(Test::OneOf),
            c.is_null.map(Test::IsNull),
            c.matches
                .as_ref()
                .map(regex)
                .transpose()?
                .map(Test::Matches),
            c.gt.as_ref().map(|v| ordered(v, &[Greater])).transpose()?,
            c.gte
                .as_ref()
                .map(|v| ordered(v, &[Greater, Equal]))
                .transpose()?,
            c.lt.as_ref().map(|v| ordered(v, &[Less])).transpose()?,
            c.lte
                .as_ref()
                .map(|v| ordered(v, &[Less, Equal]))
                .transpose()?,
            c.contains
                .as_ref()
                .map(|t| Test::Contains(t.as_bytes().to_vec())),
        ];
        let mut tests: Vec<Test> = tests.into_iter().flatten().collect();
        if tests.len() != 1 {
            bail!(
                "condition on {}: give exactly one of equals, not_equals, in, is_null, matches, gt, gte, lt, lte, contains",
                c.column
            );
        }
        Ok(Some(Condition {
            column: index,
            test: tests.pop().unwrap(),
            canon: super::constant::Canon::of(&ty),
        }))
    }

    fn column_plan(
        &self,
        name: &str,
        rule: &ColumnRule,
        decode: &mut [bool],
    ) -> Result<ColumnPlan> {
        let index = self.column(name)?;
        decode[index] = true;
        let ty = self.ty(index);
        let mut steps = Vec::new();
        for (i, spec) in rule.specs.iter().enumerate() {
            steps.push(self.step(name, i, rule, spec.clone(), &ty, decode)?);
        }
        let late = steps
            .iter()
            .any(|s| matches!(s.transformer, Transformer::Template(_)));
        let check_fit = !steps.iter().all(|s| s.transformer.always_fits());
        Ok(ColumnPlan {
            index,
            ty,
            steps,
            late,
            check_fit,
        })
    }

    /// Step `i` of column `name`'s chain.
    fn step(
        &self,
        name: &str,
        i: usize,
        rule: &ColumnRule,
        mut spec: toml::Table,
        ty: &Ty,
        decode: &mut [bool],
    ) -> Result<Step> {
        let q = self.qualified();
        let kind = match spec.remove("type") {
            Some(toml::Value::String(k)) => k,
            _ => bail!("{q}.{name}[{i}]: every transformer needs type = \"...\""),
        };
        let from = rule
            .from
            .as_ref()
            .map(|f| format!(", from {f}"))
            .unwrap_or_default();
        let step_name = format!("{q}.{name}[{i}] ({kind}{from})");
        let when = match spec.remove("when") {
            Some(v) => {
                let c: CondSpec = v.try_into().map_err(|e| {
                    let e = crate::plumbing::one_line(&e.to_string());
                    anyhow!("{step_name}: when: {e}")
                })?;
                self.condition(Some(&c), decode)?
            }
            None => None,
        };
        // Seeded by the rule's text without its condition: equal rules give equal values.
        let rule_key = self.key.for_rule(format!("{kind}:{spec}").as_bytes());
        let params = Params::new(&step_name, &spec);
        let transformer = transform::compile(&kind, &params, ty, &|c| self.column(c))?;
        if let Transformer::Template(parts) = &transformer {
            for p in parts {
                if let transform::TemplatePart::Column { index, .. } = p {
                    decode[*index] = true;
                }
            }
        }
        Ok(Step {
            name: step_name,
            key: rule_key,
            when,
            transformer,
        })
    }
}

/// Orders the template columns (the late ones, already after all others) so that a template
/// reading another template's column runs after it and gets its masked value, whatever the
/// column order (issue 13). Templates that read each other in a circle are a rule error.
fn order_templates(
    columns: Vec<ColumnPlan>,
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<ColumnPlan>> {
    let late: Vec<usize> = columns.iter().filter(|c| c.late).map(|c| c.index).collect();
    let reads = |c: &ColumnPlan| -> Vec<usize> {
        let parts = c.steps.iter().filter_map(|s| match &s.transformer {
            Transformer::Template(parts) => Some(parts),
            _ => None,
        });
        parts
            .flatten()
            .filter_map(|p| match p {
                transform::TemplatePart::Column {
                    index,
                    original: false,
                } => Some(*index),
                _ => None,
            })
            .filter(|i| *i != c.index && late.contains(i))
            .collect()
    };
    let (mut done, mut pending): (Vec<ColumnPlan>, Vec<ColumnPlan>) =
        columns.into_iter().partition(|c| !c.late);
    while !pending.is_empty() {
        let placed: Vec<usize> = done.iter().map(|c| c.index).collect();
        let Some(next) = pending
            .iter()
            .position(|c| reads(c).iter().all(|i| placed.contains(i)))
        else {
            let names: Vec<String> = pending.iter().map(|c| name(c.index)).collect();
            bail!(
                "templates read each other in a circle: {}",
                names.join(", ")
            );
        };
        done.push(pending.remove(next));
    }
    Ok(done)
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a likely typo.
pub fn nearest(name: &str, candidates: impl Iterator<Item = impl Into<String>>) -> Option<String> {
    candidates
        .map(Into::into)
        .map(|c: String| (levenshtein(name, &c), c))
        .filter(|(d, c)| *d <= 3.max(c.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names() {
        assert_eq!(levenshtein("emial", "email"), 2);
        assert_eq!(
            nearest("emial", ["id", "email", "name"].into_iter()),
            Some("email".to_string())
        );
        assert_eq!(nearest("zzzzzz", ["id", "email"].into_iter()), None);
    }
}
