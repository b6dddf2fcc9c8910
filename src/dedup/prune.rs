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
use std::collections::{BTreeMap, HashMap, HashSet};
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
            for p in &b.recipe.pieces {
                match p {
                    Entry::Chunk { id, .. } => named.insert(format!("chunks/{id}")),
                    Entry::List { list, .. } => named.insert(format!("list {list}")),
                    Entry::Inline { .. } => false,
                };
            }
            named.extend(b.recipe.batches.iter().map(|b| format!("lists/{b}")));
        }
    }
    out.finish()?;
    let unnamed = Unnamed::find(&repo, url, s3, &named)?;
    if !o.dry_run {
        // Before anything goes: every push's cached index is stale from here on. Then recipes,
        // lists, packs: a prune cut short leaves objects nothing names, never a name of one
        // that is gone.
        super::index::bump(&repo)?;
        repo.remove(&gone)?;
        repo.remove(&unnamed.lists)?;
        repo.remove(&unnamed.objects)?;
    }
    if !o.quiet {
        let (done, frees) = match o.dry_run {
            true => ("to remove", "to free"),
            false => ("removed", "freed"),
        };
        eprintln!(
            "{}: {kept} backups kept, {removed} {done}; {} of {} {} {done}, {} {frees}{}",
            crate::plumbing::program(),
            unnamed.objects.len(),
            unnamed.of,
            unnamed.what,
            human_bytes(unnamed.freed),
            match unnamed.partial {
                (0, _) => String::new(),
                (n, b) => format!(
                    "; {n} packs kept for some of their chunks hold about {} that no backup kept needs",
                    human_bytes(b)
                ),
            }
        );
    }
    Ok(())
}

/// What no kept recipe names: version 1 chunk objects, or packs and lists.
struct Unnamed {
    lists: Vec<String>,
    /// Chunk objects or packs.
    objects: Vec<String>,
    what: &'static str,
    of: usize,
    freed: u64,
    /// Packs kept with chunks no kept list names: how many, and those chunks' stored bytes.
    partial: (usize, u64),
}

impl Unnamed {
    /// `named` holds `chunks/ID`, `list ID` and `lists/BATCH` of what the kept recipes name.
    fn find(repo: &Repo, url: &str, s3: &S3Settings, named: &HashSet<String>) -> Result<Unnamed> {
        let chunks = store::stored(repo, "chunks/")?;
        if !chunks.is_empty() {
            let gone: Vec<_> = chunks
                .iter()
                .filter(|(id, _, _)| !named.contains(&format!("chunks/{id}")))
                .collect();
            return Ok(Unnamed {
                lists: Vec::new(),
                objects: gone.iter().map(|(_, k, _)| k.clone()).collect(),
                what: "chunks",
                of: chunks.len(),
                freed: gone.iter().map(|(_, _, n)| n).sum(),
                partial: (0, 0),
            });
        }
        let (mut lists, mut freed) = (Vec::new(), 0);
        // Per kept pack, the stored bytes of the chunks that kept lists name (each once).
        let mut used: HashMap<String, HashMap<String, u64>> = HashMap::new();
        for (id, batch) in super::index::read_batches(repo, url, s3)? {
            let at = store::batch_key(&id);
            if !named.contains(&at) {
                lists.push(at);
                continue;
            }
            // Which packs it needs cannot be known: removing any could lose a kept backup.
            let batch = batch.ok_or_else(|| {
                bad_input(format!(
                    "{at}, which a kept backup names, does not parse: run weir-dedup verify"
                ))
            })?;
            for (list_id, list) in &batch {
                if !named.contains(&format!("list {list_id}")) {
                    continue;
                }
                for (c, loc) in list.located() {
                    let in_pack = used.entry(loc.pack).or_default();
                    in_pack.insert(c.id.clone(), loc.len);
                }
            }
        }
        let packs = store::stored(repo, "packs/")?;
        let (mut objects, mut partial) = (Vec::new(), (0, 0));
        for (id, key, size) in &packs {
            match used.get(id) {
                None => {
                    objects.push(key.clone());
                    freed += size;
                }
                Some(chunks) => {
                    let unused = size.saturating_sub(chunks.values().sum());
                    // Beyond age's header and tags (a few hundred bytes, 16 per 64 KiB): a
                    // pack counts once over 4 KiB and 1% of it is chunks no kept list names.
                    if unused > 4096 && unused * 100 > *size {
                        partial.0 += 1;
                        partial.1 += unused;
                    }
                }
            }
        }
        Ok(Unnamed {
            lists,
            objects,
            what: "packs",
            of: packs.len(),
            freed,
            partial,
        })
    }
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
