//! `weir-prune` on a weir-dedup repository: the recipes the policy keeps stay, the others go,
//! then every chunk no kept recipe names.
//!
//! It holds the repository's prune lock throughout ([`super::lock`]), so no push is adding
//! or reusing chunks meanwhile. Recipes go first, chunks after: a prune cut short leaves
//! chunks that nothing names (the next prune removes them), never a recipe naming a chunk that
//! is gone. Retention decides as for a catalog ([`crate::catalog::decide`]), per backup name.

use super::lock::{self, Kind};
use super::store::{self, Entry, Recipe};
use crate::catalog::{PruneOptions, decide};
use crate::plumbing::{Output, bad_input, human_bytes};
use crate::storage::S3Settings;
use crate::storage::repo::Repo;
use anyhow::Result;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;

struct Listed {
    at: String,
    recipe: Recipe,
    unix: i64,
}

pub fn prune(url: &str, s3: &S3Settings, o: &PruneOptions) -> Result<()> {
    if o.wal_repo.is_some() {
        return Err(crate::plumbing::coded(
            crate::plumbing::ExitCode::Usage,
            "--wal-repo is for a catalog of base backups, not a weir-dedup repository",
        ));
    }
    let repo = Repo::open(url, s3)?;
    store::config(&repo, url)?;
    let _lock = match o.dry_run {
        true => None,
        false => Some(lock::take(url, s3, Kind::Prune)?),
    };
    let now = o.now.unwrap_or_else(chrono::Utc::now);
    let mut groups: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    for b in recipes(&repo)? {
        groups.entry(b.recipe.name.clone()).or_default().push(b);
    }
    let mut out = Output::open(None, false)?;
    let verb = if o.dry_run { "would remove" } else { "remove" };
    let (mut gone, mut named) = (Vec::new(), HashSet::new());
    let (mut kept, mut removed) = (0, 0);
    for mut list in groups.into_values() {
        // Newest first; backups of one second are told apart by their stamps (microseconds),
        // which sort as the times do.
        list.sort_by(|a, b| (b.unix, &b.at).cmp(&(a.unix, &a.at)));
        let times: Vec<i64> = list.iter().map(|b| b.unix).collect();
        for (b, why) in list.iter().zip(decide(&times, &o.policy, now)) {
            let label = store::label(&b.at);
            if why.is_empty() {
                writeln!(
                    out,
                    "{verb:<12}  {}  {label}  (no keep rule matched)",
                    b.recipe.time
                )?;
                gone.extend(repo.stored_keys(&b.at));
                removed += 1;
                continue;
            }
            kept += 1;
            writeln!(
                out,
                "{:<12}  {}  {label}  ({})",
                "keep",
                b.recipe.time,
                why.join(", ")
            )?;
            named.extend(b.recipe.pieces.iter().filter_map(|p| match p {
                Entry::Chunk { id, .. } => Some(id.clone()),
                Entry::Inline { .. } => None,
            }));
        }
    }
    let chunks = store::stored_chunks(&repo)?;
    let (mut unnamed, mut freed) = (Vec::new(), 0u64);
    for (id, key, size) in &chunks {
        if !named.contains(id) {
            unnamed.push(key.clone());
            freed += size;
        }
    }
    out.finish()?;
    if !o.dry_run {
        // Before anything goes: every push's cached chunk list is stale from here on.
        super::index::bump(&repo)?;
        repo.remove(&gone)?;
        repo.remove(&unnamed)?;
    }
    if !o.quiet {
        let (done, frees) = match o.dry_run {
            true => ("to remove", "to free"),
            false => ("removed", "freed"),
        };
        eprintln!(
            "{}: {kept} backups kept, {removed} {done}; {} of {} chunks {done}, {} {frees}",
            crate::plumbing::program(),
            unnamed.len(),
            chunks.len(),
            human_bytes(freed),
        );
    }
    Ok(())
}

/// Every recipe with its time: a recipe that does not parse stops the prune, since the chunks
/// it names cannot be known.
fn recipes(repo: &Repo) -> Result<Vec<Listed>> {
    store::all_recipes(repo)?
        .into_iter()
        .map(|(at, recipe)| {
            let unix = crate::catalog::parse_time(&recipe.time)
                .map_err(|e| bad_input(format!("{at}: {e}")))?
                .timestamp();
            Ok(Listed { at, recipe, unix })
        })
        .collect()
}
