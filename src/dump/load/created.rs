//! `--create`: the database made for this load, and the guard that drops it again when the
//! load fails, is abandoned, or is interrupted (SIGINT/SIGTERM), so that a failed restore
//! leaves no half-built database behind.

use crate::archive::Manifest;
use crate::pg::conn::ConnParams;
use crate::pg::sql::{pg_error, quote_ident};
use crate::plumbing::signals;
use anyhow::{Context, Result};

/// A database we created, dropped again unless the load [`CreatedDb::keep`]s it.
pub struct CreatedDb {
    admin: ConnParams,
    name: String,
    cleanup: Option<u64>,
}

impl CreatedDb {
    /// Creates the database `params` names, with the archive's encoding, from template0 (as
    /// pg_restore --create does), connecting to `postgres` or else `template1` to do it.
    pub fn create(params: &ConnParams, m: &Manifest) -> Result<CreatedDb> {
        let name = params.dbname().to_string();
        let mut last = None;
        for maint in ["postgres", "template1"] {
            let admin = params.with_dbname(maint);
            match admin.connect() {
                Ok(mut c) => {
                    let sql = create_sql(&name, m);
                    c.batch_execute(&sql)
                        .map_err(|e| pg_error(e, &sql))
                        .with_context(|| format!("creating database \"{name}\""))?;
                    let (drop_admin, drop_name) = (admin.clone(), name.clone());
                    let cleanup = signals::on_cleanup(move || {
                        let _ = drop_database(&drop_admin, &drop_name);
                    });
                    return Ok(CreatedDb {
                        admin,
                        name,
                        cleanup: Some(cleanup),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once")).context("connecting to create the database")
    }

    /// The rows are committed: a signal no longer drops the database. The guard is still
    /// there for [`CreatedDb::drop_now`] if what follows (post-data) fails.
    pub fn disarm_signal(&mut self) {
        if let Some(id) = self.cleanup.take() {
            signals::forget(id);
        }
    }

    /// The load is complete: the database stays.
    pub fn keep(mut self) {
        self.disarm_signal();
    }

    /// The load failed: the database goes, now.
    pub fn drop_now(mut self) {
        self.disarm_signal();
        let _ = drop_database(&self.admin, &self.name);
    }
}

fn create_sql(name: &str, m: &Manifest) -> String {
    let enc = if m.data_encoding == "SQL_ASCII" {
        "SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C".to_string()
    } else {
        m.encoding.replace('\'', "")
    };
    format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING '{enc}'",
        quote_ident(name)
    )
}

fn drop_database(admin: &ConnParams, name: &str) -> Result<()> {
    let mut c = admin.connect()?;
    let v: i32 = c
        .query_one(
            "SELECT pg_catalog.current_setting('server_version_num')::int4",
            &[],
        )?
        .get(0);
    // Other sessions (a monitoring tool, a half-started worker) must not keep it alive.
    let force = if v >= 130000 { " WITH (FORCE)" } else { "" };
    c.batch_execute(&format!(
        "DROP DATABASE IF EXISTS {}{force}",
        quote_ident(name)
    ))?;
    Ok(())
}
