//! `weir-dedup ls` and `weir-dedup verify`: what the repository holds, and whether every
//! backup in it can be read back.

use super::store::{self, Batch, Entry, List, Recipe};
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
/// decompresses and hashes to its name, and each recipe's signature and each list's name hold.
/// Exit 3 naming the backups that cannot be read back.
pub fn verify(o: &VerifyOptions) -> Result<()> {
    let repo = Repo::open(&o.repo, &o.s3)?;
    let c = store::config(&repo, &o.repo)?;
    let all = backups(&repo)?;
    let deep = match o.deep {
        false => None,
        true => {
            let identities = super::access::Opener::new(&repo, &c, &o.enc)?.identities()?;
            let key = store::read_key(&repo, &c, &identities)?;
            Some((identities, key))
        }
    };
    let mut check = Check {
        repo: &repo,
        deep: deep.as_ref(),
        objects: ids(&repo, "chunks/")?,
        packs: ids(&repo, "packs/")?,
        verdict: BTreeMap::new(),
        batches: BTreeMap::new(),
        lists: BTreeMap::new(),
        in_packs: BTreeMap::new(),
        moves: super::moves::Moves::read(&repo)?,
        z: zstd::bulk::Decompressor::new()?,
    };
    // Per backup: its problems, and the packs whose chunks it needs (checked whole below).
    let mut found: Vec<(Vec<String>, HashSet<String>)> = Vec::new();
    for b in &all {
        let mut problems = Vec::new();
        if let Some((_, key)) = &deep {
            let json = store::read_all(&repo, &b.at)?;
            if let Err(e) = Recipe::parse(&json, key, &c, &b.at) {
                problems.push(format!("{e:#}"));
            }
        }
        let mut packs = HashSet::new();
        for p in &b.recipe.pieces {
            match p {
                Entry::Inline { .. } => {}
                Entry::Chunk { id, bytes } => problems.extend(check.object(id, *bytes)),
                Entry::List { list, batch, .. } => match b.recipe.batches.get(*batch) {
                    Some(in_batch) => problems.extend(check.list(in_batch, list, &mut packs)),
                    None => problems.push(format!("its recipe names batch {batch}, unlisted")),
                },
            }
        }
        found.push((problems, packs));
    }
    let bad_packs = check.packs_deeply()?;
    let mut bad = Vec::new();
    for (b, (mut problems, packs)) in all.iter().zip(found) {
        problems.extend(packs.iter().filter_map(|p| bad_packs.get(p).cloned()));
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            bad.push(format!("{}: {}", store::label(&b.at), problems.join("; ")));
        }
    }
    let checked = check.verdict.len() + check.in_packs.values().map(|c| c.len()).sum::<usize>();
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

fn ids(repo: &Repo, dir: &str) -> Result<HashSet<String>> {
    Ok(store::stored(repo, dir)?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect())
}

/// What `verify` has found so far, each object judged once however many backups name it.
struct Check<'a> {
    repo: &'a Repo,
    deep: Option<&'a (Vec<super::Identity>, store::Key)>,
    /// Version 1 chunk objects stored, and packs stored.
    objects: HashSet<String>,
    packs: HashSet<String>,
    /// Version 1 chunks: a problem or none.
    verdict: BTreeMap<String, Option<String>>,
    /// Batches of lists: read, or a problem.
    batches: BTreeMap<String, std::result::Result<Batch, String>>,
    /// Lists: their chunks, or a problem.
    lists: BTreeMap<String, std::result::Result<List, String>>,
    /// Per pack, the chunks in it that some list names (id, bytes, at, len): counted, and
    /// with `deep` read back.
    in_packs: BTreeMap<String, BTreeMap<String, (u64, u64, u64)>>,
    /// Where a repack moved chunks.
    moves: super::moves::Moves,
    /// One zstd context for every chunk read back.
    z: zstd::bulk::Decompressor<'static>,
}

impl Check<'_> {
    fn object(&mut self, id: &str, bytes: u64) -> Option<String> {
        let (repo, deep, objects, z) = (self.repo, self.deep, &self.objects, &mut self.z);
        self.verdict
            .entry(id.to_string())
            .or_insert_with(|| {
                if !objects.contains(id) {
                    return Some(format!("chunk {id} is missing"));
                }
                let (identities, key) = deep?;
                let data = store::read_all(repo, &store::chunk_key(id));
                data.and_then(|d| super::decode(z, &d, identities, (key, id, bytes)))
                    .err()
                    .map(|e| format!("{e:#}"))
            })
            .clone()
    }

    /// A list's problems: its batch is missing or damaged, it is not in it or damaged, or it
    /// names a pack that is gone. The packs it names go into `packs`.
    fn list(&mut self, batch_id: &str, id: &str, packs: &mut HashSet<String>) -> Vec<String> {
        let (repo, deep) = (self.repo, self.deep);
        let batch = self
            .batches
            .entry(batch_id.to_string())
            .or_insert_with(|| store::read_batch(repo, batch_id).map_err(|e| format!("{e:#}")));
        let list = self.lists.entry(id.to_string()).or_insert_with(|| {
            let batch = batch.as_ref().map_err(|e| e.clone())?;
            match deep {
                Some((_, key)) => store::list_in(batch, key, batch_id, id),
                None => batch.get(id).cloned().ok_or_else(|| {
                    bad_input(format!(
                        "list {id} is missing from {}",
                        store::batch_key(batch_id)
                    ))
                }),
            }
            .map_err(|e| format!("{e:#}"))
        });
        let list = match list {
            Ok(l) => l.clone(),
            Err(e) => return vec![e.clone()],
        };
        let mut problems = Vec::new();
        for (c, loc) in list.located(&self.moves) {
            if !self.packs.contains(&loc.pack) {
                problems.push(format!("pack {} is missing", loc.pack));
                continue;
            }
            packs.insert(loc.pack.clone());
            let named = self.in_packs.entry(loc.pack).or_default();
            named.insert(c.id.clone(), (c.bytes, loc.at, loc.len));
        }
        problems
    }

    /// With `deep`: each pack read whole once, and each chunk named in it decompressed and
    /// checked. The packs that failed, with why.
    fn packs_deeply(&mut self) -> Result<BTreeMap<String, String>> {
        let mut bad = BTreeMap::new();
        let Some((identities, key)) = self.deep else {
            return Ok(bad);
        };
        for (pack, chunks) in &self.in_packs {
            let at = store::pack_key(pack);
            let checked = store::read_all(self.repo, &at).and_then(|sealed| {
                let plain = crate::stream::encrypt::open_in_memory(&sealed, identities)
                    .map_err(|e| e.context(format!("pack {pack}")))?;
                for (id, (bytes, at, len)) in chunks {
                    let frame = plain
                        .get(*at as usize..(at + len) as usize)
                        .ok_or_else(|| {
                            bad_input(format!("pack {pack} is shorter than a list says"))
                        })?;
                    super::pack::decompress(&mut self.z, frame, key, id, *bytes)?;
                }
                Ok(())
            });
            if let Err(e) = checked {
                bad.insert(pack.clone(), format!("{e:#}"));
            }
        }
        Ok(bad)
    }
}
