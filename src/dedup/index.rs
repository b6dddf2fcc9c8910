//! Which chunks the repository holds, as a push needs to know: a local cache of the listing of
//! `chunks/`, rebuilt from the repository when it is missing or stale.
//!
//! Listing a bucket costs a request per thousand keys (a 100 GB repository holds about 100,000
//! chunks), so a push reads the list from the cache when it can. The cache is only ever behind
//! in one harmless way: chunks other hosts pushed since are missing from it, and are uploaded
//! again (the same bytes under the same name). The harmful way, a chunk in the cache that a
//! prune removed, cannot happen: a prune writes a new generation (`index/generation`) before it
//! removes anything, and a cache of another generation is thrown away. Pushes and prunes never
//! overlap (their locks), so a push that read the generation holds for its whole run.
//!
//! The cache lives in `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`,
//! one file per repository id; `WEIR_CACHE_DIR=` (empty) turns it off.

use super::store::Config;
use crate::storage::repo::Repo;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::PathBuf;

pub const GENERATION: &str = "index/generation";
pub const ENV_CACHE: &str = "WEIR_CACHE_DIR";

/// The chunks the repository holds, and whether the cache said so.
pub struct Known {
    pub ids: HashSet<String>,
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
    Some(dir.join("dedup").join(format!("{}.chunks", c.id)))
}

/// The chunks the repository holds: from the cache if it is of the current generation, else
/// listed (and the cache rewritten).
pub fn known(repo: &Repo, c: &Config) -> Result<Known> {
    let generation = generation(repo)?;
    let file = cache_file(c);
    if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        let mut lines = text.lines();
        if lines.next() == Some(&format!("generation {generation}")) {
            let ids = lines.map(str::to_string).collect();
            return Ok(Known {
                ids,
                generation,
                cached: true,
            });
        }
    }
    let ids: HashSet<String> = super::store::stored_chunks(repo)?
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let known = Known {
        ids,
        generation,
        cached: false,
    };
    remember(c, &known);
    Ok(known)
}

/// Writes the cache; a cache that cannot be written is only a slower next push.
pub fn remember(c: &Config, k: &Known) {
    let Some(file) = cache_file(c) else { return };
    let mut text = format!("generation {}\n", k.generation);
    for id in &k.ids {
        text.push_str(id);
        text.push('\n');
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
