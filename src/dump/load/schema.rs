//! The archive's schema (pg_dump custom format), spooled to a private temporary file because
//! `pg_restore` reads it more than once (pre-data, post-data, the `--clean` DROPs, the table
//! of contents) and seeks in it for `-j`; and the `pg_restore` runs over it.

use super::LoadOptions;
use super::placement::{PostDataEntry, parse_post_data};
use crate::pg::conn::ConnParams;
use crate::pg::tools;
use anyhow::{Context, Result, anyhow};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Stdio;

#[derive(Default)]
pub struct SchemaFile {
    file: Option<tempfile::NamedTempFile>,
    /// `--use-list` for a partial restore by table.
    use_list: Option<tempfile::NamedTempFile>,
    /// Remove the temporary files on SIGINT or SIGTERM, which end the process without drops.
    cleanup: Vec<u64>,
}

impl Drop for SchemaFile {
    fn drop(&mut self) {
        for id in self.cleanup.drain(..) {
            crate::plumbing::signals::forget(id);
        }
    }
}

/// A private temporary file that SIGINT and SIGTERM remove too; the id of that cleanup.
fn temp_file(prefix: &str) -> Result<(tempfile::NamedTempFile, u64)> {
    let f = tempfile::Builder::new().prefix(prefix).tempfile()?;
    let path = f.path().to_path_buf();
    let id = crate::plumbing::signals::on_cleanup(move || {
        let _ = std::fs::remove_file(path);
    });
    Ok((f, id))
}

impl SchemaFile {
    /// Appends one schema part of the archive.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        if self.file.is_none() {
            let (f, id) = temp_file("weir-schema-")?;
            self.cleanup.push(id);
            self.file = Some(f);
        }
        self.file.as_mut().expect("just made").write_all(data)?;
        Ok(())
    }

    /// The schema is complete: flushed for pg_restore to read.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }

    fn path(&self) -> Result<String> {
        let f = self
            .file
            .as_ref()
            .ok_or_else(|| anyhow!("the archive has no schema"))?;
        Ok(f.path().display().to_string())
    }

    /// The views in the schema's table of contents (0 when it cannot be read: the count only
    /// sharpens the lock estimate).
    pub fn views(&self) -> u64 {
        let Some(bytes) = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read(f.path()).ok())
        else {
            return 0;
        };
        crate::pg::dump_toc::read(&bytes).map_or(0, |toc| {
            toc.entries.iter().filter(|e| e.desc == "VIEW").count() as u64
        })
    }

    /// Restricts every later section to the table-of-contents entries of these objects.
    pub fn restrict_to(&mut self, wanted: &HashSet<u32>, params: &ConnParams) -> Result<()> {
        let toc =
            self.pg_restore_output(vec!["--list".to_string()], params, "listing the schema")?;
        self.set_use_list(&super::selection::use_list(&toc, wanted))
    }

    /// Every later section restores the entries of `list` (`--use-list`) only.
    fn set_use_list(&mut self, list: &str) -> Result<()> {
        let (mut file, id) = temp_file("weir-list-")?;
        self.cleanup.push(id);
        file.write_all(list.as_bytes())?;
        file.flush()?;
        self.use_list = Some(file);
        Ok(())
    }

    /// The post-data section's entries as pg_restore writes them, with this load's filters:
    /// what a worker may build in its own transaction (see `placement`). Read on a thread of
    /// its own, so that the pre-data restore need not wait for it.
    pub fn post_data_entries(
        &self,
        opts: &LoadOptions,
        params: &ConnParams,
    ) -> Result<std::thread::JoinHandle<Result<Vec<PostDataEntry>>>> {
        let mut args = vec!["--file=-".to_string(), "--verbose".into()];
        args.extend(self.section_args(opts, "post-data"));
        args.push(self.path()?);
        let params = params.clone();
        Ok(std::thread::spawn(move || {
            let what = "reading the post-data section";
            Ok(parse_post_data(&pg_restore_output(&args, &params, what)?))
        }))
    }

    /// Leaves the entries `done` out of every later section (they were run already).
    pub fn leave_out(&mut self, done: &HashSet<u32>, params: &ConnParams) -> Result<()> {
        let toc = match &self.use_list {
            Some(l) => std::fs::read_to_string(l.path())?,
            None => self.pg_restore_output(vec!["--list".into()], params, "listing the schema")?,
        };
        let mut list = String::new();
        for line in toc.lines() {
            let id = line
                .split_once(';')
                .and_then(|(id, _)| id.parse::<u32>().ok());
            if id.is_some_and(|id| done.contains(&id)) {
                list.push(';');
            }
            list.push_str(line);
            list.push('\n');
        }
        self.set_use_list(&list)
    }

    /// pg_restore options shared by every section.
    fn section_args(&self, opts: &LoadOptions, section: &str) -> Vec<String> {
        let mut a = vec![format!("--section={section}"), "--exit-on-error".into()];
        if opts.no_owner {
            a.push("--no-owner".into());
        }
        if opts.no_acl {
            a.push("--no-acl".into());
        }
        for s in &opts.schemas {
            a.push(format!("--schema={s}"));
        }
        if let Some(l) = &self.use_list {
            a.push(format!("--use-list={}", l.path().display()));
        }
        a
    }

    /// Restores one section into the target; `extra` adds `--single-transaction` or `--jobs`.
    pub fn restore(
        &self,
        opts: &LoadOptions,
        params: &ConnParams,
        section: &str,
        extra: &[String],
        what: &str,
    ) -> Result<()> {
        let mut args = self.section_args(opts, section);
        args.extend_from_slice(extra);
        args.push(format!("--dbname={}", params.dbname_conninfo()));
        args.push(self.path()?);
        tools::spawn("pg_restore", &args, params, Stdio::null(), false)?
            .wait()
            .context(what.to_string())
    }

    /// `--clean`: the DROP statements pg_restore writes for what the archive will create (all
    /// sections, so foreign keys go before their tables), with the restore's own filters.
    pub fn drop_statements(&self, opts: &LoadOptions, params: &ConnParams) -> Result<String> {
        let mut args = vec![
            "--clean".to_string(),
            "--if-exists".into(),
            "--file=-".into(),
        ];
        args.extend(self.section_args(opts, "pre-data").into_iter().skip(2));
        let script = self.pg_restore_output(args, params, "preparing --clean")?;
        // The DROPs come first, before the first object's "-- Name:" header.
        let head = script.split("\n--\n-- Name: ").next().unwrap_or("");
        Ok(head
            .lines()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| format!("{l}\n"))
            .collect())
    }

    fn pg_restore_output(
        &self,
        mut args: Vec<String>,
        params: &ConnParams,
        what: &str,
    ) -> Result<String> {
        args.push(self.path()?);
        pg_restore_output(&args, params, what)
    }
}

/// What `pg_restore args` writes to standard output.
fn pg_restore_output(args: &[String], params: &ConnParams, what: &str) -> Result<String> {
    let mut p = tools::spawn("pg_restore", args, params, Stdio::null(), true)?;
    let mut out = String::new();
    p.stdout().expect("piped").read_to_string(&mut out)?;
    p.wait().context(what.to_string())?;
    Ok(out)
}
