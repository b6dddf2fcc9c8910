//! Which chunks the repository holds and where, as a push needs to know: a local cache of what
//! the repository's lists say, rebuilt from the repository when it is missing or stale.
//!
//! Listing a bucket costs a request per thousand keys and reading every list a request each, so
//! a push reads the index from the cache when it can. The cache is only ever behind in one
//! harmless way: chunks other hosts pushed since are missing from it, and are stored again (in
//! a pack of this push's). The harmful way, a chunk in the cache whose pack a prune removed,
//! cannot happen: a prune writes a new generation (`index/generation`) before it removes
//! anything, and a cache of another generation is thrown away. Pushes and prunes never overlap
//! (their locks), so a push that read the generation holds for its whole run. A list is stored
//! only once every pack it names is, so a list in the repository never points at a pack that a
//! crashed push did not finish; but a prune leaves the lists of the backups it removed in any
//! batch a kept backup still names, and may remove their packs. So the index is built from
//! the packs stored too: a chunk counts only where its pack is, a list only if all of its do.
//!
//! The cache lives in `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`,
//! one file per repository id; `WEIR_CACHE_DIR=` (empty) turns it off.

use super::store::{self, Batch, Config, Loc};
use crate::storage::repo::Repo;
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

pub const GENERATION: &str = "index/generation";
pub const ENV_CACHE: &str = "WEIR_CACHE_DIR";

/// The chunks the repository holds and where, its lists and their batches, and whether the
/// cache said so.
#[derive(Default)]
pub struct Known {
    pub chunks: HashMap<String, Loc>,
    pub lists: HashMap<String, String>,
    pub generation: String,
    pub cached: bool,
}

/// The repository's generation: changed by every prune (`none` before the first).
fn generation(repo: &Repo) -> Result<String> {
    Ok(match repo.read(GENERATION)? {
        Some(s) => String::from_utf8_lossy(&s.bytes()?).trim().to_string(),
        None => "none".into(),
    })
}

/// Starts a new generation: every cache made before is stale from now on.
pub fn bump(repo: &Repo) -> Result<()> {
    repo.put(GENERATION, super::store::random_hex(16).as_bytes())
        .context("writing the repository's index generation")
}

fn cache_file(c: &Config) -> Option<PathBuf> {
    let dir = match std::env::var_os(ENV_CACHE) {
        Some(d) if d.is_empty() => return None,
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x).join("weir"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/weir"),
        },
    };
    Some(dir.join("dedup").join(format!("{}.index", c.id)))
}

/// The chunks the repository holds: from the cache if it is of the current generation, else
/// read from the repository's lists (and the cache rewritten).
pub fn known(repo: &Repo, url: &str, s3: &crate::storage::S3Settings, c: &Config) -> Result<Known> {
    let generation = generation(repo)?;
    let file = cache_file(c);
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if let Some(mut k) = parse(&text, &generation) {
            k.cached = true;
            return Ok(k);
        }
    }
    let mut known = Known {
        generation,
        ..Known::default()
    };
    // A batch stays while a kept backup names one of its lists, and with it the lists of
    // backups a prune removed, whose packs may be gone: only what stored packs hold is known.
    let packs: HashSet<String> = store::stored(repo, "packs/")?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let moves = super::moves::Moves::read(repo)?;
    for (batch_id, batch) in read_batches(repo, url, s3)? {
        // A batch a push cut short by a crash left empty names nothing: written again.
        let Some(batch) = batch else { continue };
        for (id, list) in batch {
            let mut whole = true;
            for (c, loc) in list.located(&moves) {
                match packs.contains(&loc.pack) {
                    true => drop(known.chunks.insert(c.id.clone(), loc)),
                    false => whole = false,
                }
            }
            if whole {
                known.lists.insert(id, batch_id.clone());
            }
        }
    }
    remember(c, &known);
    Ok(known)
}

/// Every batch of lists in the repository, read by a few threads at once (on S3 each is a
/// request); `None` for one that does not parse (batches are written before a push syncs
/// them, so a crash can leave one empty: see push.rs).
pub fn read_batches(
    repo: &Repo,
    url: &str,
    s3: &crate::storage::S3Settings,
) -> Result<Vec<(String, Option<Batch>)>> {
    let keys = store::stored(repo, "lists/")?;
    store::on_threads(url, s3, 8, &keys, |repo, (id, key, _)| {
        let json = store::read_all(repo, key)?;
        Ok((id.clone(), store::parse_batch(&json, key).ok()))
    })
}

/// A cache's text, if it is of `generation`: `c ID PACK AT LEN` a chunk, `l ID BATCH` a list.
fn parse(text: &str, generation: &str) -> Option<Known> {
    let mut lines = text.lines();
    if lines.next()? != format!("generation {generation}") {
        return None;
    }
    let mut k = Known {
        generation: generation.to_string(),
        ..Known::default()
    };
    for line in lines {
        let mut f = line.split(' ');
        match (f.next()?, f.next()?) {
            ("c", id) => {
                let (pack, at, len) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
                let loc = Loc {
                    pack: pack.to_string(),
                    at,
                    len,
                };
                k.chunks.insert(id.to_string(), loc);
            }
            ("l", id) => {
                k.lists.insert(id.to_string(), f.next()?.to_string());
            }
            _ => return None,
        }
    }
    Some(k)
}

/// Writes the cache; a cache that cannot be written is only a slower next push.
pub fn remember(c: &Config, k: &Known) {
    let Some(file) = cache_file(c) else { return };
    let mut text = format!("generation {}\n", k.generation);
    for (id, l) in &k.chunks {
        text.push_str(&format!("c {id} {} {} {}\n", l.pack, l.at, l.len));
    }
    for (id, batch) in &k.lists {
        text.push_str(&format!("l {id} {batch}\n"));
    }
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(anyhow::Error::from)
        .and_then(|()| crate::plumbing::write_atomically(&file, text.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "{}: cannot write the chunk cache {}: {e:#}",
            crate::plumbing::program(),
            file.display()
        );
    }
}
