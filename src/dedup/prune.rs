//! `weir-prune` on a weir-dedup repository: the recipes the policy keeps stay, the others go,
//! then every chunk no kept recipe names.
//!
//! It holds the repository's prune lock throughout ([`super::lock`]), so no push is adding
//! or reusing chunks meanwhile. Recipes go first, chunks after: a prune cut short leaves
//! chunks that nothing names (the next prune removes them), never a recipe naming a chunk that
//! is gone. Retention decides as for a catalog ([`crate::catalog::decide`]), per backup name.
//!
//! A pack goes once no kept list names a chunk in it. With `--repack`, packs that kept lists
//! still need in part are rewritten, the emptiest first, until what the kept packs hold
//! beyond their chunks is at most `--max-unused` of them (restic's prune decides so too, 5%
//! by default): the chunks still needed are copied, frames as they are, into new packs, their
//! places written as moves ([`super::moves`]), and the old packs removed. Reading and sealing
//! packs needs the identity and the recipients, which plain pruning does not.

use super::lock::{self, Kind};
use super::moves::Moves;
use super::store::{self, Entry, Loc, Recipe};
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
    let config = store::config(&repo, url)?;
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
    let moves = Moves::read(&repo)?;
    let unnamed = Unnamed::find(&repo, url, s3, &named, &moves)?;
    let plan = o.repack.as_ref().map(|r| unnamed.plan(r.max_unused));
    // Keys are asked for before anything goes, so a wrong one changes nothing.
    let sealing = match (&o.repack, o.dry_run) {
        (Some(r), false) => Some(Sealing::open(&repo, url, config, &r.enc)?),
        _ => None,
    };
    let mut rewritten = None;
    if !o.dry_run {
        // Before anything goes: every push's cached index is stale from here on. Then recipes,
        // lists, packs: a prune cut short leaves objects nothing names, never a name of one
        // that is gone.
        super::index::bump(&repo)?;
        repo.remove(&gone)?;
        repo.remove(&unnamed.lists)?;
        repo.remove(&unnamed.objects)?;
        if let (Some(plan), Some(sealing)) = (&plan, sealing) {
            rewritten = Some(repack(&repo, plan, &unnamed, &moves, sealing)?);
        }
    }
    if !o.quiet {
        report(o, kept, removed, &unnamed, plan.as_ref(), rewritten);
    }
    Ok(())
}

/// The closing line: backups kept and removed, packs removed, and what the kept packs hold
/// that no backup needs, rewritten or not.
fn report(
    o: &PruneOptions,
    kept: usize,
    removed: usize,
    unnamed: &Unnamed,
    plan: Option<&Plan>,
    rewritten: Option<u64>,
) {
    let (done, frees) = match o.dry_run {
        true => ("to remove", "to free"),
        false => ("removed", "freed"),
    };
    let partial = match (unnamed.partial, plan) {
        (_, Some(p)) if !p.packs.is_empty() => {
            let what = format!(
                "{} packs {} for their {} of chunks still needed",
                p.packs.len(),
                if o.dry_run { "to rewrite" } else { "rewritten" },
                human_bytes(p.needed)
            );
            match rewritten {
                Some(n) => format!("; {what}, into {}", human_bytes(n)),
                None => format!("; {what}, {} {frees}", human_bytes(p.unused)),
            }
        }
        ((0, _), _) => String::new(),
        ((n, b), _) => format!(
            "; {n} packs kept for some of their chunks hold about {} that no backup kept needs{}",
            human_bytes(b),
            if plan.is_none() {
                " (--repack rewrites them)"
            } else {
                ""
            }
        ),
    };
    eprintln!(
        "{}: {kept} backups kept, {removed} {done}; {} of {} {} {done}, {} {frees}{partial}",
        crate::plumbing::program(),
        unnamed.objects.len(),
        unnamed.of,
        unnamed.what,
        human_bytes(unnamed.freed),
    );
}

/// `--repack`: how much kept packs may hold that no backup needs, and the keys to rewrite them.
#[derive(Debug, Clone)]
pub struct Repack {
    pub max_unused: f64,
    pub enc: crate::stream::encrypt::EncryptOptions,
}

/// The packs to rewrite, emptiest first: the stored bytes of the chunks still needed in them,
/// and of the rest.
struct Plan {
    packs: Vec<String>,
    needed: u64,
    unused: u64,
}

/// What reads the packs and seals the new ones.
struct Sealing {
    config: store::Config,
    identities: Vec<super::Identity>,
    recipients: Vec<super::Recipient>,
}

impl Sealing {
    fn open(
        repo: &Repo,
        url: &str,
        config: store::Config,
        enc: &crate::stream::encrypt::EncryptOptions,
    ) -> Result<Sealing> {
        if config.version < 2 {
            return Err(crate::plumbing::coded(
                crate::plumbing::ExitCode::Usage,
                format!(
                    "{url} is a version 1 repository, which keeps a chunk an object: there are no packs to rewrite"
                ),
            ));
        }
        let opener = super::access::Opener::new(repo, &config, enc)?;
        let identities = opener.identities()?;
        // An identity that is not the repository's is refused here, before anything goes.
        store::read_key(repo, &config, &identities)?;
        Ok(Sealing {
            recipients: opener.recipients(enc)?,
            identities,
            config,
        })
    }
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
    /// Per kept pack, the chunks in it that kept lists need (each once), and its size.
    used: HashMap<String, (HashMap<String, Loc>, u64)>,
    /// Chunks still needed that a repack moved: where they are now.
    moved: BTreeMap<String, Loc>,
}

impl Unnamed {
    /// `named` holds `chunks/ID`, `list ID` and `lists/BATCH` of what the kept recipes name.
    fn find(
        repo: &Repo,
        url: &str,
        s3: &S3Settings,
        named: &HashSet<String>,
        moves: &Moves,
    ) -> Result<Unnamed> {
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
                used: HashMap::new(),
                moved: BTreeMap::new(),
            });
        }
        let (mut lists, mut freed) = (Vec::new(), 0);
        let mut used: HashMap<String, (HashMap<String, Loc>, u64)> = HashMap::new();
        let mut moved = BTreeMap::new();
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
                for (c, listed) in list.listed() {
                    let loc = moves.place(&c.id, listed.clone());
                    if loc != listed {
                        moved.insert(c.id.clone(), loc.clone());
                    }
                    let in_pack = &mut used.entry(loc.pack.clone()).or_default().0;
                    in_pack.insert(c.id.clone(), loc);
                }
            }
        }
        let packs = store::stored(repo, "packs/")?;
        let (mut objects, mut partial) = (Vec::new(), (0, 0));
        for (id, key, size) in &packs {
            let Some((chunks, stored)) = used.get_mut(id) else {
                objects.push(key.clone());
                freed += size;
                continue;
            };
            *stored = *size;
            let unused = unused(chunks, *size);
            // Beyond age's header and tags (a few hundred bytes, 16 per 64 KiB): a pack counts
            // once over 4 KiB and 1% of it is chunks no kept list names.
            if unused > 4096 && unused * 100 > *size {
                partial.0 += 1;
                partial.1 += unused;
            }
        }
        Ok(Unnamed {
            lists,
            objects,
            what: "packs",
            of: packs.len(),
            freed,
            partial,
            used,
            moved,
        })
    }

    /// The packs to rewrite: the emptiest first, until what the others hold unneeded is at
    /// most `max_unused` percent of the kept packs' bytes.
    fn plan(&self, max_unused: f64) -> Plan {
        let mut packs: Vec<(&String, u64, u64)> = self
            .used
            .iter()
            .map(|(id, (chunks, size))| (id, unused(chunks, *size), *size))
            .filter(|(_, unused, size)| *unused > 4096 && unused * 100 > *size)
            .collect();
        packs.sort_by(|a, b| (b.1 * a.2).cmp(&(a.1 * b.2)).then(a.0.cmp(b.0)));
        let total: u64 = self.used.values().map(|(_, size)| size).sum();
        let mut left: u64 = packs.iter().map(|p| p.1).sum();
        let mut plan = Plan {
            packs: Vec::new(),
            needed: 0,
            unused: 0,
        };
        for (id, unused, size) in packs {
            if left as f64 <= total as f64 * max_unused / 100.0 {
                break;
            }
            plan.packs.push(id.clone());
            (plan.needed, plan.unused) = (plan.needed + size - unused, plan.unused + unused);
            left -= unused;
        }
        plan
    }
}

/// The stored bytes of a pack of `size` that are not the frames of `chunks`.
fn unused(chunks: &HashMap<String, Loc>, size: u64) -> u64 {
    size.saturating_sub(chunks.values().map(|l| l.len).sum())
}

/// Rewrites the planned packs: their needed chunks' frames copied into new packs (durable),
/// then one moves file with every move still needed, then the older moves files and the old
/// packs removed. A crash before the moves file leaves new packs nothing names (the next prune
/// removes them); after it, old packs nothing needs. Returns the bytes written.
fn repack(
    repo: &Repo,
    plan: &Plan,
    unnamed: &Unnamed,
    moves: &Moves,
    mut s: Sealing,
) -> Result<u64> {
    if plan.packs.is_empty() {
        return Ok(0);
    }
    let (placed, written) = rewrite(repo, plan, unnamed, &s)?;
    check_opens(repo, &s.identities, &placed)?;
    let mut now = unnamed.moved.clone();
    now.extend(placed);
    store::upgrade(repo, &mut s.config)?;
    Moves::write(repo, now)?;
    repo.remove(&moves.files)?;
    let old: Vec<String> = plan.packs.iter().map(|p| store::pack_key(p)).collect();
    repo.remove(&old)?;
    Ok(written)
}

/// The needed chunks of the planned packs copied into new packs, each once, frames as they
/// are: where each is now, and the bytes stored.
fn rewrite(
    repo: &Repo,
    plan: &Plan,
    unnamed: &Unnamed,
    s: &Sealing,
) -> Result<(BTreeMap<String, Loc>, u64)> {
    let mut placed: BTreeMap<String, Loc> = BTreeMap::new();
    let mut taken: HashSet<&String> = HashSet::new();
    let (mut packer, mut written) = (super::pack::Packer::new(), 0);
    for pack in &plan.packs {
        let at = store::pack_key(pack);
        let plain =
            crate::stream::encrypt::open_in_memory(&store::read_all(repo, &at)?, &s.identities)
                .map_err(|e| e.context(format!("pack {pack}")))?;
        let mut chunks: Vec<(&String, &Loc)> = unnamed.used[pack].0.iter().collect();
        chunks.sort_by_key(|(_, l)| l.at);
        for (id, loc) in chunks.into_iter().filter(|(id, _)| taken.insert(id)) {
            let frame = plain
                .get(loc.at as usize..(loc.at + loc.len) as usize)
                .ok_or_else(|| bad_input(format!("pack {pack} is shorter than a list says")))?;
            packer.add(id.clone(), frame);
            if packer.is_full() {
                let full = std::mem::take(&mut packer);
                written += store_pack(repo, full, &s.recipients, &mut placed)?;
            }
        }
    }
    if !packer.is_empty() {
        written += store_pack(repo, packer, &s.recipients, &mut placed)?;
    }
    Ok((placed, written))
}

/// Packs sealed to recipients the identity cannot open would lose what they hold once the
/// old packs go: each new one is opened before anything moves.
fn check_opens(
    repo: &Repo,
    identities: &[super::Identity],
    placed: &BTreeMap<String, Loc>,
) -> Result<()> {
    let mut reader = super::pack::Reader::new(repo, identities);
    let new: HashSet<&String> = placed.values().map(|l| &l.pack).collect();
    for pack in new {
        reader.read(pack, 0, 1).map_err(|_| {
            crate::plumbing::coded(
                crate::plumbing::ExitCode::Usage,
                "the identity given (-i) cannot open packs sealed to the recipients given (-r, -R): nothing was moved",
            )
        })?;
    }
    Ok(())
}

/// Stores a pack of the repack; its chunks' new places go into `placed`.
fn store_pack(
    repo: &Repo,
    p: super::pack::Packer,
    recipients: &[super::Recipient],
    placed: &mut BTreeMap<String, Loc>,
) -> Result<u64> {
    let (chunks, bytes) = p.store(repo, recipients)?;
    placed.extend(chunks);
    Ok(bytes)
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
