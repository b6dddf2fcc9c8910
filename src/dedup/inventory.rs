//! `weir-dedup ls` and `weir-dedup verify`: what the repository holds, and whether every
//! backup in it can be read back.

use super::store::{self, Entry, Recipe};
use crate::plumbing::{bad_input, human_bytes};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use crate::stream::encrypt::EncryptOptions;
use anyhow::Result;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

pub struct LsOptions {
    pub repo: String,
    pub s3: S3Settings,
    pub json: bool,
}

/// A backup as listed: its recipe's key and what the recipe says.
struct Listed {
    at: String,
    recipe: Recipe,
}

fn backups(repo: &Repo) -> Result<Vec<Listed>> {
    Ok(store::all_recipes(repo)?
        .into_iter()
        .map(|(at, recipe)| Listed { at, recipe })
        .collect())
}

pub fn ls(o: &LsOptions) -> Result<()> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    store::config(&repo, &o.repo)?;
    let all = backups(&repo)?;
    if o.json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|b| {
                serde_json::json!({
                    "backup": store::label(&b.at), "name": b.recipe.name, "time": b.recipe.time,
                    "bytes": b.recipe.bytes, "chunks": b.recipe.chunks,
                    "added_chunks": b.recipe.added_chunks, "added_bytes": b.recipe.added_bytes,
                    "blake3": b.recipe.blake3,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    for b in &all {
        println!(
            "{}  {}  {:>9}  added {:>9}  {}",
            b.recipe.time,
            store::label(&b.at),
            human_bytes(b.recipe.bytes),
            human_bytes(b.recipe.added_bytes),
            b.recipe.blake3
        );
    }
    Ok(())
}

/// `weir-ls --catalog` on a repository: its backups as a catalog lists them, with the bytes
/// each added beside its size.
pub fn catalog(url: &str, s3: &S3Settings, json: bool, human: bool) -> Result<()> {
    let repo = Repo::open(url, s3)?;
    let mut all = backups(&repo)?;
    all.sort_by(|a, b| (&a.recipe.time, &a.at).cmp(&(&b.recipe.time, &b.at)));
    let mut out = crate::plumbing::Output::open(None, false)?;
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|b| {
                let a = b.recipe.archive.clone().unwrap_or_default();
                serde_json::json!({
                    "time": b.recipe.time, "database": a.database, "name": b.recipe.name,
                    "backup": store::label(&b.at), "repository": url, "bytes": b.recipe.bytes,
                    "added_bytes": b.recipe.added_bytes, "tables": a.tables, "rows": a.rows,
                    "masked": a.masked,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        out.finish()?;
        return Ok(());
    }
    let size = |n: u64| if human { human_bytes(n) } else { n.to_string() };
    writeln!(
        out,
        "{:<27}  {:<16}  {:>12}  {:>12}  {:>6}  {:>12}  {:<6}  BACKUP",
        "TIME", "DATABASE", "SIZE", "ADDED", "TABLES", "ROWS", "MASKED"
    )?;
    for b in &all {
        let (db, tables, rows, masked) = match &b.recipe.archive {
            Some(a) => (
                a.database.as_str(),
                a.tables.to_string(),
                a.rows.to_string(),
                if a.masked { "yes" } else { "no" },
            ),
            None => ("-", "-".into(), "-".into(), "-"),
        };
        writeln!(
            out,
            "{:<27}  {db:<16}  {:>12}  {:>12}  {tables:>6}  {rows:>12}  {masked:<6}  {}",
            b.recipe.time,
            size(b.recipe.bytes),
            size(b.recipe.added_bytes),
            store::label(&b.at)
        )?;
    }
    out.finish()?;
    Ok(())
}

pub struct VerifyOptions {
    pub repo: String,
    pub s3: S3Settings,
    pub deep: bool,
    /// The identities (or passphrase) for --deep.
    pub enc: EncryptOptions,
}

/// Every chunk every recipe names is in the repository; with `deep`, each also decrypts,
/// decompresses and hashes to its name, and each recipe's signature holds. Exit 3 naming the
/// backups that cannot be read back.
pub fn verify(o: &VerifyOptions) -> Result<()> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    let c = store::config(&repo, &o.repo)?;
    let stored: HashSet<String> = store::stored_chunks(&repo)?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let all = backups(&repo)?;
    let deep = match o.deep {
        false => None,
        true => {
            let identities = super::access::Opener::new(&repo, &c, &o.enc)?.identities()?;
            let key = store::read_key(&repo, &c, &identities)?;
            Some((identities, key))
        }
    };
    // Each chunk's verdict once, however many backups name it.
    let mut verdict: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut bad = Vec::new();
    for b in &all {
        let mut problems = Vec::new();
        if let Some((_, key)) = &deep {
            let json = store::read_all(&repo, &b.at)?;
            if let Err(e) = Recipe::parse(&json, key, &c, &b.at) {
                problems.push(format!("{e:#}"));
            }
        }
        for p in &b.recipe.pieces {
            let Entry::Chunk { id, bytes } = p else {
                continue;
            };
            let v = verdict.entry(id.clone()).or_insert_with(|| {
                if !stored.contains(id) {
                    return Some(format!("chunk {id} is missing"));
                }
                let (identities, key) = deep.as_ref()?;
                let data = store::read_all(&repo, &store::chunk_key(id));
                data.and_then(|d| super::decode(&d, identities, key, id, *bytes))
                    .err()
                    .map(|e| format!("{e:#}"))
            });
            if let Some(v) = v {
                problems.push(v.clone());
            }
        }
        if !problems.is_empty() {
            problems.dedup();
            bad.push(format!("{}: {}", store::label(&b.at), problems.join("; ")));
        }
    }
    let checked = verdict.len();
    if !bad.is_empty() {
        return Err(bad_input(format!(
            "{} of {} backups cannot be read back: {}",
            bad.len(),
            all.len(),
            bad.join(" | ")
        )));
    }
    eprintln!(
        "{}: {} backups, {checked} chunks{}: all there",
        crate::plumbing::program(),
        all.len(),
        if o.deep { " read back and checked" } else { "" }
    );
    Ok(())
}
