//! The repository's objects: its config, its key, its chunks and its recipes.
//!
//! ```text
//! REPO/config.json                      format, id, chunk sizes, a check value of the key
//! REPO/keys/id.age                      the key, age-encrypted to the first push's recipients
//! REPO/keys/identity.age                a passphrase repository's identity (see access.rs)
//! REPO/packs/3f/3f9a...                 a pack: age(zstd(chunk) zstd(chunk) ...), random name
//! REPO/lists/c1d0...                    lists of where runs of chunks are, a push's new ones together
//! REPO/backups/NAME/STAMP.json          a recipe: the pieces of one backup, in order
//! REPO/chunks/3f/3f9a...                version 1 only: a chunk, age(zstd(bytes)), by its hash
//! ```
//!
//! Version 2 cuts chunks of about 64 KiB and keeps them many to a pack, where version 1 kept
//! chunks of about 512 KiB one to an object: smaller chunks store less of what did not change
//! around what did (docs/BENCHMARKS.md measures both), and packs keep the objects few (a PUT per
//! 64 KiB would make a full push slow and, on S3, costly). A recipe names lists rather than
//! chunks, so that what two days share of their chunk lists is stored once too: a day's recipe
//! is a few kilobytes, where naming 10,000 chunks would cost most of what the day adds.
//!
//! The key names chunks by a keyed BLAKE3 of their bytes, as restic and borg key their ids, so
//! that names say nothing about the data to whoever can list the repository (an unkeyed hash
//! would tell that a known file is in it). It also signs each recipe, so a recipe cannot be
//! altered or brought from another repository unnoticed. Pushing needs the key (a secret of the
//! backup host, like weir-mask's), never the identity that decrypts: chunks are encrypted to
//! recipients. Reading takes the key from `keys/id.age` with that identity.

use super::chunker;
use crate::plumbing::{ExitCode, bad_input, coded};
use crate::storage::repo::{Created, Repo};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::io::Read;

pub const CONFIG: &str = "config.json";
pub const KEY: &str = "keys/id.age";
pub const FORMAT: &str = "weir-dedup";
/// The version new repositories get. Version 3 is version 2 that may hold moves (a repack's,
/// [`super::moves`]): a weir that knows only version 2 would take a moved chunk's pack for
/// unneeded and prune it, so it must not read one. Version 2 repositories are pushed to and
/// become version 3 at their first repack; version 1 repositories are read (cat, ls, verify,
/// prune) but not pushed to, since their chunks were cut at other sizes.
pub const VERSION: u32 = 3;

/// The version of the recipes a push writes (the same since repository version 2).
pub const RECIPE_VERSION: u32 = 2;

/// Environment variable holding the key itself (else `--key-file`).
pub const ENV_KEY: &str = "WEIR_DEDUP_KEY";

#[derive(Serialize, Deserialize, Debug)]
pub struct Config {
    pub format: String,
    pub version: u32,
    /// Random, fixed at creation: a recipe names the repository it belongs to.
    pub id: String,
    pub created: String,
    pub chunker: ChunkerParams,
    /// A keyed hash of a fixed text: tells whether a key is this repository's.
    pub key_check: String,
    /// Sealed by a passphrase: chunks are encrypted to the identity in `keys/identity.age`
    /// (see [`super::access`]). Absent in repositories made before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passphrase: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ChunkerParams {
    pub kind: String,
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl ChunkerParams {
    fn current() -> ChunkerParams {
        ChunkerParams {
            kind: "fastcdc-2020, tar members apart".into(),
            min: chunker::MIN,
            avg: chunker::AVG,
            max: chunker::MAX,
        }
    }
}

/// The repository key, and the keys derived from it for each use (BLAKE3's derive_key, so
/// that one use's values tell nothing about another's).
pub struct Key {
    master: [u8; 32],
    ids: [u8; 32],
    mac: [u8; 32],
}

impl Key {
    /// From the secret text a user keeps (its first line).
    pub fn from_secret(text: &str) -> Result<Key> {
        let line = text.lines().next().unwrap_or("").trim();
        if line.len() < 16 {
            bail!(
                "the weir-dedup key is shorter than 16 characters (make one with: head -c 32 /dev/urandom | base64)"
            );
        }
        Ok(Key::from_master(blake3::derive_key(
            "weir-dedup 2026-12 repository key from a secret",
            line.as_bytes(),
        )))
    }

    fn from_master(master: [u8; 32]) -> Key {
        Key {
            master,
            ids: blake3::derive_key("weir-dedup 2026-12 chunk ids", &master),
            mac: blake3::derive_key("weir-dedup 2026-12 recipe signatures", &master),
        }
    }

    /// A chunk's id: the keyed hash of its bytes, in hex.
    pub fn chunk_id(&self, data: &[u8]) -> String {
        blake3::keyed_hash(&self.ids, data).to_hex().to_string()
    }

    fn sign(&self, data: &[u8]) -> String {
        blake3::keyed_hash(&self.mac, data).to_hex().to_string()
    }

    fn check(&self) -> String {
        self.sign(b"weir-dedup key check")
    }
}

/// The key a push uses: `--key-file` (its first line), else `WEIR_DEDUP_KEY`.
pub fn push_key(key_file: Option<&std::path::Path>) -> Result<Key> {
    if let Some(f) = key_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read key file {}", f.display()))?;
        return Key::from_secret(&text);
    }
    match std::env::var(ENV_KEY) {
        Ok(k) => Key::from_secret(&k),
        Err(_) => Err(coded(
            ExitCode::Usage,
            format!("a push needs the repository's key: --key-file FILE or {ENV_KEY}"),
        )),
    }
}

/// The key of an existing repository checked against its config, or a new repository made
/// with it: its config, and the key encrypted to `recipients` for those who restore.
pub fn open_or_create(
    repo: &Repo,
    key: &Key,
    recipients: &[super::Recipient],
    passphrase: bool,
) -> Result<Config> {
    if let Some(c) = read_config(repo)? {
        if c.key_check != key.check() {
            return Err(coded(
                ExitCode::Failure,
                format!(
                    "the key is not repository {}'s (another key, or another repository)",
                    c.id
                ),
            ));
        }
        return Ok(c);
    }
    let mut sealed = Vec::new();
    super::seal(hex::encode(key.master).as_bytes(), recipients, &mut sealed)?;
    repo.put(KEY, &sealed)
        .context("writing the repository's key")?;
    let c = Config {
        format: FORMAT.into(),
        version: VERSION,
        id: random_hex(16),
        created: crate::plumbing::rfc3339(std::time::SystemTime::now()),
        chunker: ChunkerParams::current(),
        key_check: key.check(),
        passphrase,
    };
    let json = serde_json::to_vec_pretty(&c)?;
    match repo.create(CONFIG, &json, &crate::physical::object::sha256_hex(&json))? {
        Created::New => Ok(c),
        // Another push created it first: its key may differ.
        Created::Exists(_) => open_or_create(repo, key, recipients, passphrase),
    }
}

/// Makes a version 2 repository version 3 before its first move: its config is rewritten
/// (in a directory, without the digest beside it first, so a crash between the two leaves a
/// config that reads).
pub fn upgrade(repo: &Repo, c: &mut Config) -> Result<()> {
    if c.version >= VERSION {
        return Ok(());
    }
    c.version = VERSION;
    let json = serde_json::to_vec_pretty(c)?;
    repo.remove(&repo.stored_keys(CONFIG)[1..])?;
    repo.put(CONFIG, &json)
        .with_context(|| format!("rewriting {CONFIG} as version {VERSION}"))
}

/// The config, or `None` when the location holds no repository.
pub fn read_config(repo: &Repo) -> Result<Option<Config>> {
    let Some(stored) = repo.read(CONFIG)? else {
        return Ok(None);
    };
    let c: Config = serde_json::from_slice(&stored.bytes()?)
        .map_err(|e| bad_input(format!("{CONFIG} is not a weir-dedup config: {e}")))?;
    if c.format != FORMAT || !(1..=VERSION).contains(&c.version) {
        return Err(bad_input(format!(
            "{CONFIG} is {} version {}, which this weir does not read",
            c.format, c.version
        )));
    }
    if c.version >= 2 && c.chunker != ChunkerParams::current() {
        // Other sizes would still restore; pushing with these would deduplicate badly.
        eprintln!(
            "{}: the repository's chunks were cut with other sizes ({:?})",
            crate::plumbing::program(),
            c.chunker
        );
    }
    Ok(Some(c))
}

/// Whether `url` holds a weir-dedup repository (a config of its format).
pub fn is_repository(url: &str, s3: &crate::storage::S3Settings) -> Result<bool> {
    let repo = Repo::open(url, s3)?;
    let Ok(Some(stored)) = repo.read(CONFIG) else {
        return Ok(false);
    };
    let text = stored.bytes()?;
    Ok(serde_json::from_slice::<serde_json::Value>(&text).is_ok_and(|v| v["format"] == FORMAT))
}

/// The config of the repository at `url`, which must exist.
pub fn config(repo: &Repo, url: &str) -> Result<Config> {
    read_config(repo)?.ok_or_else(|| {
        coded(
            ExitCode::NotFound,
            format!("no weir-dedup repository at {url} (no {CONFIG})"),
        )
    })
}

/// The key, read from the repository with `identities`.
pub fn read_key(repo: &Repo, c: &Config, identities: &[super::Identity]) -> Result<Key> {
    let sealed = repo
        .read(KEY)?
        .ok_or_else(|| bad_input(format!("the repository has no {KEY}")))?
        .bytes()?;
    let hexed = crate::stream::encrypt::open_in_memory(&sealed, identities).map_err(|e| {
        anyhow!("cannot decrypt the repository's key ({KEY}) with the identities given: {e:#}")
    })?;
    let master: [u8; 32] = hex::decode(String::from_utf8_lossy(&hexed).trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad_input(format!("{KEY} does not hold a key")))?;
    let key = Key::from_master(master);
    if key.check() != c.key_check {
        return Err(bad_input(format!(
            "{KEY} holds another key than repository {}'s config names",
            c.id
        )));
    }
    Ok(key)
}

/// Where a version 1 chunk is stored.
pub fn chunk_key(id: &str) -> String {
    format!("chunks/{}/{id}", &id[..2])
}

/// Where a pack is stored.
pub fn pack_key(id: &str) -> String {
    format!("packs/{}/{id}", &id[..2])
}

/// Where a batch of lists is stored.
pub fn batch_key(id: &str) -> String {
    format!("lists/{id}")
}

/// Whether `s` is an object id: 64 hex digits (a keyed hash, or a pack's random name).
pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A run of a backup's chunks and where each is: its pack (an index into `packs`), the offset
/// of its zstd frame in the pack's plaintext and the frame's length. Named by the keyed hash
/// of its JSON, and not encrypted: it holds names and sizes, as a recipe does. Lists are stored
/// many to an object, a [`Batch`]: a file each cost a full push of the bench's 700 MB archive
/// 0.6 s of file creation in a directory.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct List {
    pub packs: Vec<String>,
    pub chunks: Vec<Listed>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: String,
    pub bytes: u64,
    pub pack: usize,
    pub at: u64,
    pub len: u64,
}

/// Where a chunk of a version 2 repository is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    pub pack: String,
    pub at: u64,
    pub len: u64,
}

impl List {
    /// The list of `chunks` (id, length, location), in order, and its JSON.
    pub fn of(chunks: &[(String, u64, Loc)]) -> (List, Vec<u8>) {
        let mut l = List::default();
        for (id, bytes, loc) in chunks {
            let pack = match l.packs.iter().position(|p| *p == loc.pack) {
                Some(i) => i,
                None => {
                    l.packs.push(loc.pack.clone());
                    l.packs.len() - 1
                }
            };
            l.chunks.push(Listed {
                id: id.clone(),
                bytes: *bytes,
                pack,
                at: loc.at,
                len: loc.len,
            });
        }
        let json = serde_json::to_vec(&l).expect("a list serializes");
        (l, json)
    }

    /// Whether it is well formed: it names packs that it has, by ids.
    fn check(&self, what: &str) -> Result<()> {
        let bad_chunk = |c: &Listed| c.pack >= self.packs.len() || !is_id(&c.id);
        if self.chunks.iter().any(bad_chunk) || !self.packs.iter().all(|p| is_id(p)) {
            return Err(bad_input(format!("{what} names a pack it does not list")));
        }
        Ok(())
    }

    /// Each chunk with the location the list names.
    pub fn listed(&self) -> impl Iterator<Item = (&Listed, Loc)> {
        self.chunks.iter().map(|c| {
            let loc = Loc {
                pack: self.packs[c.pack].clone(),
                at: c.at,
                len: c.len,
            };
            (c, loc)
        })
    }

    /// Each chunk with its location: the one the list names, unless a repack moved it.
    pub fn located<'a>(
        &'a self,
        moves: &'a super::moves::Moves,
    ) -> impl Iterator<Item = (&'a Listed, Loc)> {
        self.listed().map(|(c, loc)| (c, moves.place(&c.id, loc)))
    }
}

/// Lists stored together, by their ids: JSON `{"ID": {"packs": [...], "chunks": [...]}, ...}`.
pub type Batch = std::collections::BTreeMap<String, List>;

/// A batch read back, without the key (prune and the index need no secret): it must parse and
/// each list name packs that it has.
pub fn parse_batch(json: &[u8], what: &str) -> Result<Batch> {
    let b: Batch = serde_json::from_slice(json)
        .map_err(|e| bad_input(format!("{what} is not a weir-dedup batch of lists: {e}")))?;
    for (id, l) in &b {
        l.check(&format!("list {id} in {what}"))?;
    }
    Ok(b)
}

/// A batch read from the repository.
pub fn read_batch(repo: &Repo, id: &str) -> Result<Batch> {
    let at = batch_key(id);
    parse_batch(&read_all(repo, &at)?, &at)
}

/// List `id` of `batch`, checked against its name: the keyed hash of its JSON.
pub fn list_in(batch: &Batch, key: &Key, batch_id: &str, id: &str) -> Result<List> {
    let l = batch
        .get(id)
        .ok_or_else(|| bad_input(format!("list {id} is missing from {}", batch_key(batch_id))))?;
    if key.chunk_id(&serde_json::to_vec(l)?) != id {
        return Err(bad_input(format!(
            "list {id} in {} is damaged: its bytes do not hash to its name",
            batch_key(batch_id)
        )));
    }
    Ok(l.clone())
}

/// One backup: the pieces of its stream in order, and what the catalog shows.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Recipe {
    pub format: String,
    pub version: u32,
    pub repository: String,
    pub name: String,
    pub time: String,
    /// The stream's length and its BLAKE3 (`b3sum` prints the same).
    pub bytes: u64,
    pub blake3: String,
    pub chunks: u64,
    /// What this backup added to the repository: new chunks, their stored bytes.
    pub added_chunks: u64,
    pub added_bytes: u64,
    /// What the stream is, when it is a weir archive (for the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSummary>,
    /// The batches of lists the pieces name (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<String>,
    pub pieces: Vec<Entry>,
    /// The keyed hash of this recipe with an empty signature.
    pub signature: String,
}

/// A weir archive's database, tables, rows and whether it is masked, from its manifest and
/// trailer as they passed through the push.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct ArchiveSummary {
    pub database: String,
    pub tables: u64,
    pub rows: u64,
    pub masked: bool,
}

/// A list of chunks by its id, the batch it is in (an index into the recipe's `batches`) and
/// the bytes its chunks hold (version 2); a chunk by its id and length (version 1); or bytes
/// kept inline (base64).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Entry {
    List {
        list: String,
        #[serde(rename = "in")]
        batch: usize,
        bytes: u64,
    },
    Chunk {
        id: String,
        bytes: u64,
    },
    Inline {
        inline: String,
    },
}

impl Recipe {
    /// Its JSON, signed.
    pub fn signed(mut self, key: &Key) -> Result<Vec<u8>> {
        self.signature = String::new();
        let unsigned = serde_json::to_vec(&self)?;
        self.signature = key.sign(&unsigned);
        Ok(serde_json::to_vec(&self)?)
    }

    /// A recipe read back, its signature and repository checked.
    pub fn parse(json: &[u8], key: &Key, c: &Config, what: &str) -> Result<Recipe> {
        let mut r: Recipe = serde_json::from_slice(json)
            .map_err(|e| bad_input(format!("{what} is not a weir-dedup recipe: {e}")))?;
        if r.repository != c.id {
            return Err(bad_input(format!(
                "{what} belongs to repository {}, not this one ({})",
                r.repository, c.id
            )));
        }
        let signature = std::mem::take(&mut r.signature);
        if key.sign(&serde_json::to_vec(&r)?) != signature {
            return Err(bad_input(format!(
                "{what} is altered: its signature does not match"
            )));
        }
        r.signature = signature;
        Ok(r)
    }
}

/// Every recipe in the repository with its key, in key order (name, then stamp), read
/// without the key: listing, pruning and verifying need no secret (`cat` and `verify --deep`
/// check signatures). One that does not parse is bad input.
pub fn all_recipes(repo: &Repo) -> Result<Vec<(String, Recipe)>> {
    let mut out = Vec::new();
    for (at, _) in repo.list("backups/")? {
        if !at.ends_with(".json") {
            continue;
        }
        let recipe: Recipe = serde_json::from_slice(&read_all(repo, &at)?)
            .map_err(|e| bad_input(format!("{at} is not a weir-dedup recipe: {e}")))?;
        out.push((at, recipe));
    }
    Ok(out)
}

/// `NAME@STAMP` for a recipe's key `backups/NAME/STAMP.json`.
pub fn label(at: &str) -> String {
    let rest = at.trim_start_matches("backups/").trim_end_matches(".json");
    rest.replacen('/', "@", 1)
}

/// The objects under `dir` (`chunks/`, `packs/`, `lists/`): (id, key, stored size), in key
/// order. Only names that are ids count (a temporary file left by a crash is not one).
pub fn stored(repo: &Repo, dir: &str) -> Result<Vec<(String, String, u64)>> {
    Ok(repo
        .list(dir)
        .with_context(|| format!("listing the repository's {dir}"))?
        .into_iter()
        .filter_map(|(key, size)| {
            let id = key.rsplit('/').next()?;
            is_id(id).then(|| (id.to_string(), key.clone(), size))
        })
        .collect())
}

/// The recipes of backup `name`, oldest first (their keys).
pub fn recipes(repo: &Repo, name: &str) -> Result<Vec<String>> {
    let prefix = format!("backups/{name}/");
    Ok(repo
        .list(&prefix)?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".json") && !k[prefix.len()..].contains('/'))
        .collect())
}

/// `NAME`, `NAME@latest` or `NAME@STAMP` (a prefix of a recipe's stamp): its recipe's key.
pub fn select(repo: &Repo, which: &str) -> Result<String> {
    let (name, at) = which.split_once('@').unwrap_or((which, "latest"));
    check_name(name)?;
    let all = recipes(repo, name)?;
    let stamp = |k: &String| k.rsplit('/').next().unwrap_or("").to_string();
    let found = match at {
        "latest" => all.last().cloned(),
        at => all.iter().rev().find(|k| stamp(k).starts_with(at)).cloned(),
    };
    found.ok_or_else(|| {
        coded(
            ExitCode::NotFound,
            format!("no backup {which} in the repository"),
        )
    })
}

/// A backup's name becomes a folder: no slashes, nothing hidden.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-%".contains(c));
    if !ok {
        return Err(coded(
            ExitCode::Usage,
            format!("backup name {name:?}: use letters, digits, '.', '_', '-' and '%'"),
        ));
    }
    Ok(())
}

/// Reads a whole stored object, or says which one is missing.
pub fn read_all(repo: &Repo, key: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    repo.read(key)?
        .ok_or_else(|| bad_input(format!("{key} is missing from the repository")))?
        .body
        .read_to_end(&mut v)?;
    Ok(v)
}

/// `n` random bytes in hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    crate::plumbing::random_bytes(&mut b);
    hex::encode(b)
}

/// `f` applied to each of `items` on up to `threads` threads, each with its own handle on the
/// repository (on S3 each object is a request, and a handle serves one at a time); the
/// results in `items`' order.
pub fn on_threads<T: Sync, R: Send>(
    url: &str,
    s3: &crate::storage::S3Settings,
    threads: usize,
    items: &[T],
    f: impl Fn(&Repo, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| {
                let f = &f;
                s.spawn(move || -> Result<Vec<R>> {
                    let repo = Repo::open(url, s3)?;
                    part.iter().map(|item| f(&repo, item)).collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for p in parts {
            all.extend(
                p.join()
                    .map_err(|_| anyhow!("a repository reader panicked"))??,
            );
        }
        Ok(all)
    })
}
