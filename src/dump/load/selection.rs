//! Partial restores: which tables `-t` and `-n` choose, and which table-of-contents entries of
//! the schema belong to them (indexes, constraints, triggers, policies, defaults, owned
//! sequences, and foreign keys whose referenced table is chosen too), so that `pg_restore
//! --use-list` restores exactly those. Pure over the manifest; unit-tested below.

use crate::archive::Manifest;
use crate::pg::pattern::Pattern;
use anyhow::{Result, bail};
use std::collections::HashSet;

#[derive(Debug, Default)]
pub struct Selection {
    /// Table ids whose data (and, when partial, definitions) are restored.
    tables: HashSet<u32>,
    /// The `-n` patterns, parsed once.
    schemas: Vec<Pattern>,
    /// Whether `-t` was given: then objects belonging to no table stay out.
    by_table: bool,
    partial: bool,
}

impl Selection {
    /// Chooses the tables; every pattern must match something (`--strict-names` always).
    pub fn new(
        table_patterns: &[String],
        schema_patterns: &[String],
        m: &Manifest,
    ) -> Result<Selection> {
        let tables: Vec<Pattern> = table_patterns
            .iter()
            .map(|p| Pattern::table(p))
            .collect::<Result<_>>()?;
        let schemas: Vec<Pattern> = schema_patterns
            .iter()
            .map(|p| Pattern::schema(p))
            .collect::<Result<_>>()?;
        for p in &tables {
            if !m
                .tables
                .iter()
                .any(|t| p.matches_table(&t.schema, &t.name, true))
            {
                bail!("no table in the archive matches pattern \"{}\"", p.text);
            }
        }
        for p in &schemas {
            if !m.tables.iter().any(|t| p.matches_schema(&t.schema)) {
                bail!(
                    "no table in the archive is in a schema matching \"{}\"",
                    p.text
                );
            }
        }
        // An unqualified -t pattern matches a table of any schema: the archive has no search
        // path to say which tables would be "visible".
        let chosen = m.tables.iter().filter(|t| {
            (tables.is_empty()
                || tables
                    .iter()
                    .any(|p| p.matches_table(&t.schema, &t.name, true)))
                && (schemas.is_empty() || schemas.iter().any(|p| p.matches_schema(&t.schema)))
        });
        Ok(Selection {
            tables: chosen.map(|t| t.id).collect(),
            partial: !tables.is_empty() || !schemas.is_empty(),
            by_table: !tables.is_empty(),
            schemas,
        })
    }

    /// Whether only part of the archive is restored.
    pub fn partial(&self) -> bool {
        self.partial
    }

    /// Whether `-t` chose the tables (then pg_restore gets a `--use-list`).
    pub fn by_table(&self) -> bool {
        self.by_table
    }

    pub fn contains(&self, table_id: u32) -> bool {
        self.tables.contains(&table_id)
    }

    /// The schemas of the chosen tables, which must exist before their tables are created.
    pub fn schemas<'m>(&self, m: &'m Manifest) -> HashSet<&'m str> {
        let chosen = m.tables.iter().filter(|t| self.contains(t.id));
        chosen.map(|t| t.schema.as_str()).collect()
    }

    /// The source OIDs of the chosen tables.
    pub fn oids(&self, m: &Manifest) -> HashSet<u32> {
        let chosen = m.tables.iter().filter(|t| self.contains(t.id));
        chosen.map(|t| t.oid).collect()
    }

    /// With `-n` and no `-t`, objects that belong to no table (sequences, materialized
    /// views) come along when their schema was chosen.
    pub fn takes_loose_objects_of(&self, schema: &str) -> bool {
        !self.by_table && self.schemas.iter().any(|p| p.matches_schema(schema))
    }

    /// Whether a sequence's state is restored: all of them in a full restore, else those
    /// owned by a chosen table or in a chosen schema.
    pub fn takes_sequence(
        &self,
        owner_oid: Option<u32>,
        schema: &str,
        chosen: &HashSet<u32>,
    ) -> bool {
        !self.partial
            || owner_oid.is_some_and(|o| chosen.contains(&o))
            || self.takes_loose_objects_of(schema)
    }

    /// The object OIDs of everything restored with the chosen tables.
    pub fn wanted_oids(&self, m: &Manifest) -> HashSet<u32> {
        let chosen = self.oids(m);
        let mut wanted = chosen.clone();
        for t in m.tables.iter().filter(|t| chosen.contains(&t.oid)) {
            wanted.extend(t.owned_oids.iter().copied());
            let fks = t
                .foreign_keys
                .iter()
                .filter(|fk| chosen.contains(&fk.references_oid));
            wanted.extend(fks.map(|fk| fk.oid));
        }
        let owned = m
            .sequences
            .iter()
            .filter(|s| s.owner_table_oid.is_some_and(|o| chosen.contains(&o)));
        wanted.extend(owned.map(|s| s.oid));
        wanted
    }
}

/// The lines of `pg_restore --list` output whose object OID is wanted, as a `--use-list`.
pub fn use_list(toc: &str, wanted: &HashSet<u32>) -> String {
    let mut list = String::new();
    for line in toc.lines().filter(|l| !l.starts_with(';')) {
        // "ID; CATALOG-OID OBJECT-OID TYPE SCHEMA NAME OWNER"
        let oid = line
            .split_once(';')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|o| o.parse::<u32>().ok());
        if oid.is_some_and(|o| wanted.contains(&o)) {
            list.push_str(line);
            list.push('\n');
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ForeignKey, Sequence, Table};

    fn table(id: u32, schema: &str, name: &str, oid: u32) -> Table {
        serde_json::from_value(serde_json::json!({
            "id": id, "schema": schema, "name": name, "oid": oid, "columns": [], "relkind": "r",
            "data": true, "bytes_on_disk": 0, "owned_oids": [oid + 1], "foreign_keys": [],
        }))
        .unwrap()
    }

    fn manifest() -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": "weir", "format_version": 1, "archive_id": "x", "weir_version": "0",
            "created_unix": 0, "created": "", "server_version": "15", "server_version_num": 150000,
            "pg_dump_version": "15", "database": "db", "encoding": "UTF8", "data_encoding": "UTF8",
            "tables": [], "sequences": [], "matviews": [], "globals": false, "blobs": false,
            "snapshot": "", "masked": false,
        }))
        .unwrap();
        let mut orders = table(1, "public", "orders", 100);
        orders.foreign_keys = vec![
            ForeignKey {
                oid: 150,
                references_oid: 200,
                name: String::new(),
                columns: Vec::new(),
                references_columns: Vec::new(),
            },
            ForeignKey {
                oid: 151,
                references_oid: 300,
                name: String::new(),
                columns: Vec::new(),
                references_columns: Vec::new(),
            },
        ];
        m.tables = vec![
            orders,
            table(2, "public", "customers", 200),
            table(3, "audit", "log", 300),
        ];
        m.sequences = vec![Sequence {
            schema: "public".into(),
            name: "orders_id_seq".into(),
            oid: 110,
            last_value: 5,
            is_called: true,
            owner_table_oid: Some(100),
            owner_column: Some("id".into()),
        }];
        m
    }

    #[test]
    fn tables_bring_what_belongs_to_them_and_only_that() {
        let m = manifest();
        let s = Selection::new(&["orders".into(), "customers".into()], &[], &m).unwrap();
        assert!(s.partial() && s.by_table() && s.contains(1) && s.contains(2) && !s.contains(3));
        // Both tables, their owned objects, the sequence, the FK to customers but not the
        // one to audit.log, which is not restored.
        let want: HashSet<u32> = [100, 101, 200, 201, 110, 150].into();
        assert_eq!(s.wanted_oids(&m), want);
        let toc = ";\n; Archive\n1; 1259 100 TABLE public orders app\n2; 1259 300 TABLE audit log app\n3; 2606 150 FK CONSTRAINT public orders fk app\n";
        assert_eq!(
            use_list(toc, &want),
            "1; 1259 100 TABLE public orders app\n3; 2606 150 FK CONSTRAINT public orders fk app\n"
        );
    }

    #[test]
    fn schemas_bring_their_loose_objects_and_patterns_must_match() {
        let m = manifest();
        let s = Selection::new(&[], &["audit".into()], &m).unwrap();
        assert!(s.contains(3) && !s.contains(1) && !s.by_table());
        assert!(s.takes_loose_objects_of("audit") && !s.takes_loose_objects_of("public"));
        let chosen = s.oids(&m);
        assert!(!s.takes_sequence(Some(100), "public", &chosen));
        let all = Selection::new(&[], &[], &m).unwrap();
        assert!(!all.partial() && all.takes_sequence(None, "x", &HashSet::new()));
        let err = Selection::new(&["nosuch".into()], &[], &m).unwrap_err();
        assert!(
            err.to_string().contains("matches pattern \"nosuch\""),
            "{err}"
        );
    }
}
