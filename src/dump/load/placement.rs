//! Which load worker takes which table, and which of a table's post-data statements (its
//! indexes, primary key, unique and exclusion constraints) that worker runs inside the
//! transaction that loaded the table, as soon as the archive's done entry says its rows are
//! all in (format 3). The builds then overlap other tables' loads, as pg_restore's do, and
//! still commit only with everything else, after the trailer verified (issue 18).
//!
//! An index built in one transaction sees only that transaction's rows, so a placed table is
//! loaded by one worker alone. A table bigger than an even share of the load is not placed:
//! on one connection it would take longer than all the rest, so its chunks go to whichever
//! worker is free, and its indexes are built after the commit, as for archives before format 3.
//! Pure over the manifest and the schema's entries; unit-tested below.

use crate::archive::Table;
use std::collections::{HashMap, HashSet};

/// One entry of the schema's post-data section, as `pg_restore --file` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostDataEntry {
    /// The table-of-contents entry's number (`--use-list` names it).
    pub dump_id: u32,
    /// The object's OID in the source (what a table's `owned_oids` lists).
    pub oid: u32,
    /// `INDEX`, `CONSTRAINT`, `FK CONSTRAINT`, `TRIGGER`, ...
    pub kind: String,
    /// The statements, with the tablespace they were written for set first.
    pub sql: String,
}

/// The kinds of entry a worker builds in its own transaction: they read only their table, and
/// they are what takes the time. Foreign keys read a second table; triggers, rules and
/// policies cost nothing to create.
const BUILT_WHILE_LOADING: [&str; 2] = ["INDEX", "CONSTRAINT"];

/// What building a table's index costs, in percent of loading its rows: measured 12% for each
/// of the benchmark's events indexes (1.21 s for two, against 5.1 s of COPY) and 20% for
/// users' primary key (0.33 s against 1.7 s), 2026-12-05. Without it, small tables went
/// to the worker that loads events, which then finished last by their 0.2 s.
const BUILD_COST_PERCENT: u64 = 15;

/// The entries each table's worker could build while loading, by table.
fn builds_of<'e>(
    tables: &[&Table],
    entries: &'e [PostDataEntry],
) -> HashMap<u32, Vec<&'e PostDataEntry>> {
    let owner: HashMap<u32, u32> = tables
        .iter()
        .flat_map(|t| t.owned_oids.iter().map(|o| (*o, t.id)))
        .collect();
    let mut by_table: HashMap<u32, Vec<&PostDataEntry>> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| BUILT_WHILE_LOADING.contains(&e.kind.as_str()))
    {
        if let Some(table) = owner.get(&e.oid) {
            by_table.entry(*table).or_default().push(e);
        }
    }
    by_table
}

#[derive(Debug, Default)]
pub struct Placement {
    /// The worker of each placed table; a table not here goes to whichever is free.
    worker: HashMap<u32, usize>,
    /// What a placed table's worker runs once its rows are in.
    builds: HashMap<u32, String>,
    /// The entries those are: the post-data restore after the commit leaves them out.
    pub built: HashSet<u32>,
    /// Per placed table, how many relations its builds create (each holds a lock).
    created: HashMap<u32, u64>,
    /// Every post-data entry is built while loading: nothing is left for after the commit.
    pub all_built: bool,
}

impl Placement {
    /// Places `tables` (those this load copies rows into) on `jobs` workers: the costliest
    /// first, each on the worker with the least cost so far, after the unplaced tables' even
    /// share is counted on every worker. A table's cost is its bytes on disk in the source,
    /// plus a share of them for each index it builds (see [`BUILD_COST_PERCENT`]).
    pub fn plan(tables: &[&Table], entries: &[PostDataEntry], jobs: usize) -> Placement {
        let jobs = jobs.max(1);
        let builds = builds_of(tables, entries);
        let count = |t: &Table| builds.get(&t.id).map_or(0, Vec::len) as u64;
        let cost = |t: &Table| t.bytes_on_disk * (100 + BUILD_COST_PERCENT * count(t)) / 100;
        let share = tables.iter().map(|t| cost(t)).sum::<u64>() / jobs as u64;
        let (mut placed, shared): (Vec<&Table>, Vec<&Table>) = tables
            .iter()
            .partition(|t| cost(t) <= share && t.partition_root.is_none());
        let mut load = vec![shared.iter().map(|t| cost(t)).sum::<u64>() / jobs as u64; jobs];
        placed.sort_by_key(|t| (std::cmp::Reverse(cost(t)), t.id));
        let mut p = Placement {
            all_built: true,
            ..Placement::default()
        };
        for t in &placed {
            let w = (0..jobs).min_by_key(|w| (load[*w], *w)).expect("jobs >= 1");
            load[w] += cost(t);
            p.worker.insert(t.id, w);
            for e in builds.get(&t.id).into_iter().flatten() {
                p.builds.entry(t.id).or_default().push_str(&e.sql);
                *p.created.entry(t.id).or_default() += 1;
                p.built.insert(e.dump_id);
            }
        }
        p.all_built = p.built.len() == entries.len();
        p
    }

    pub fn worker_of(&self, table: u32) -> Option<usize> {
        self.worker.get(&table).copied()
    }

    /// The statements to run for `table` once its rows are in; given out once.
    pub fn take_build(&mut self, table: u32) -> Option<String> {
        self.builds.remove(&table)
    }

    /// The locks the workers hold at most: each placed table's on its one worker, with one
    /// for each relation its builds create; every other table's on every worker.
    /// `per_table` counts a table's own (it, and its TOAST table and index).
    pub fn locks(&self, tables: &[&Table], per_table: impl Fn(&Table) -> u64, jobs: usize) -> u64 {
        let each = |t: &&Table| match self.worker.contains_key(&t.id) {
            true => per_table(t) + self.created.get(&t.id).copied().unwrap_or(0),
            false => per_table(t) * jobs.max(1) as u64,
        };
        tables.iter().map(each).sum()
    }
}

/// Splits `pg_restore --file=- --verbose --section=post-data` output into its entries. Each
/// begins with a `-- TOC entry N (class C OID O)` comment and its `-- Name: ...; Type: T; ...`
/// line; pg_restore writes `SET default_tablespace` before an entry's header only when the
/// tablespace changes (pg_backup_archiver.c, _printTocEntry and _selectTablespace), so each
/// entry's SQL is given the one in force. psql meta-commands (`\restrict`) are left out.
pub fn parse_post_data(script: &str) -> Vec<PostDataEntry> {
    let mut entries: Vec<PostDataEntry> = Vec::new();
    let mut tablespace = "''".to_string();
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        if let Some(ts) = line
            .strip_prefix("SET default_tablespace = ")
            .and_then(|t| t.strip_suffix(';'))
        {
            tablespace = ts.to_string();
            continue;
        }
        if let Some((dump_id, oid)) = toc_entry(line) {
            let mut name = lines.next();
            if name.is_some_and(|l| l.starts_with("-- Dependencies: ")) {
                name = lines.next();
            }
            let kind = name
                .and_then(|l| l.split("; Type: ").nth(1))
                .and_then(|t| t.split(';').next())
                .unwrap_or_default()
                .to_string();
            let sql = format!("SET default_tablespace = {tablespace};\n");
            entries.push(PostDataEntry {
                dump_id,
                oid,
                kind,
                sql,
            });
            continue;
        }
        let statement = !line.is_empty() && !line.starts_with('\\') && !line.starts_with("--");
        if let Some(e) = entries.last_mut().filter(|_| statement) {
            e.sql.push_str(line);
            e.sql.push('\n');
        }
    }
    entries
}

/// `-- TOC entry 3217 (class 2606 OID 16400)`: the entry's number and its object's OID.
fn toc_entry(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("-- TOC entry ")?;
    let (id, rest) = rest.split_once(" (class ")?;
    let oid = rest.split_once(" OID ")?.1.strip_suffix(')')?;
    Some((id.parse().ok()?, oid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\\restrict abc\n\nSET statement_timeout = 0;\nSET default_tablespace = '';\n\n--\n\
-- TOC entry 3217 (class 2606 OID 16400)\n-- Dependencies: 216\n\
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres\n--\n\n\
ALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_pkey PRIMARY KEY (id);\n\n\n\
SET default_tablespace = fast;\n\n--\n\
-- TOC entry 3218 (class 1259 OID 16401)\n-- Dependencies: 216\n\
-- Name: events_user_id_idx; Type: INDEX; Schema: public; Owner: postgres\n--\n\n\
CREATE INDEX events_user_id_idx ON public.events USING btree (user_id);\n\n\n--\n\
-- TOC entry 3219 (class 2606 OID 16500)\n\
-- Name: logs logs_user_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres\n--\n\n\
ALTER TABLE ONLY public.logs\n    ADD CONSTRAINT logs_user_fkey FOREIGN KEY (u) REFERENCES public.users(id);\n\n\n\
-- Completed on 2026-12-05\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n";

    #[test]
    fn post_data_splits_into_entries_each_with_its_tablespace() {
        let e = parse_post_data(SCRIPT);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(
            (e[0].dump_id, e[0].oid, e[0].kind.as_str()),
            (3217, 16400, "CONSTRAINT")
        );
        assert_eq!(
            e[0].sql,
            "SET default_tablespace = '';\nALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_pkey PRIMARY KEY (id);\n"
        );
        assert_eq!((e[1].oid, e[1].kind.as_str()), (16401, "INDEX"));
        assert!(
            e[1].sql
                .starts_with("SET default_tablespace = fast;\nCREATE INDEX"),
            "{}",
            e[1].sql
        );
        assert_eq!(e[2].kind, "FK CONSTRAINT");
        assert!(!e[2].sql.contains("unrestrict"), "{}", e[2].sql);
    }

    fn table(id: u32, bytes: u64, owned: &[u32]) -> Table {
        serde_json::from_value(serde_json::json!({
            "id": id, "schema": "public", "name": format!("t{id}"), "oid": 100 + id,
            "columns": [], "relkind": "r", "data": true, "bytes_on_disk": bytes,
            "owned_oids": owned, "foreign_keys": [],
        }))
        .unwrap()
    }

    #[test]
    fn tables_go_costliest_first_to_the_least_loaded_worker_with_their_own_builds() {
        // Costs with their builds: events 45 + 2 x 15% = 58, logs 40, users 15 + 15% = 17,
        // small 5. By bytes alone small would join events (45 against 55).
        let (events, logs, users) = (
            table(0, 45, &[16400, 16401]),
            table(1, 40, &[]),
            table(2, 15, &[16391]),
        );
        let small = table(3, 5, &[16500]);
        let mut entries = parse_post_data(SCRIPT);
        let users_pkey =
            "ALTER TABLE ONLY public.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);";
        entries.push(PostDataEntry {
            dump_id: 3215,
            oid: 16391,
            kind: "CONSTRAINT".into(),
            sql: users_pkey.into(),
        });
        let mut p = Placement::plan(&[&events, &logs, &users, &small], &entries, 2);
        assert_eq!(p.worker_of(0), Some(0));
        assert_eq!(p.worker_of(1), Some(1));
        assert_eq!(p.worker_of(2), Some(1));
        assert_eq!(p.worker_of(3), Some(1));
        let events_sql = p.take_build(0).unwrap();
        assert!(events_sql.contains("events_pkey") && events_sql.contains("events_user_id_idx"));
        assert_eq!(p.take_build(0), None, "given out once");
        assert_eq!(p.take_build(2).as_deref(), Some(users_pkey));
        assert_eq!(p.take_build(3), None, "a foreign key waits for the commit");
        assert_eq!(p.built, HashSet::from([3217, 3218, 3215]));
        assert!(!p.all_built, "the foreign key is left for after the commit");
        entries.retain(|e| e.kind != "FK CONSTRAINT");
        let p = Placement::plan(&[&events, &logs, &users, &small], &entries, 2);
        assert!(p.all_built);
        let per = |_: &Table| 3;
        assert_eq!(
            p.locks(&[&events, &logs, &users, &small], per, 2),
            3 + 2 + 3 + 3 + 1 + 3
        );
    }

    #[test]
    fn a_table_bigger_than_a_share_and_a_partition_are_not_placed() {
        let big = table(0, 60, &[16400]);
        let mut part = table(1, 10, &[16401]);
        part.partition_root = Some(["public".into(), "parent".into()]);
        let rest = table(2, 30, &[]);
        let p = Placement::plan(&[&big, &part, &rest], &parse_post_data(SCRIPT), 2);
        assert_eq!((p.worker_of(0), p.worker_of(1)), (None, None));
        assert_eq!(p.worker_of(2), Some(0));
        assert!(p.built.is_empty() && !p.all_built);
        let per = |_: &Table| 1;
        assert_eq!(p.locks(&[&big, &part, &rest], per, 2), 2 + 2 + 1);
    }
}
