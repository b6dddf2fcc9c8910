//! Where a repack moved chunks. A list names the pack and place of each of its chunks, and
//! its id is the hash of those names, so a chunk moved to another pack cannot be renamed in
//! the lists that name it (nor they in the recipes). A repack writes instead where each moved
//! chunk is now, in `moves/ID`, and every reader takes that over the list's place.
//!
//! A moves file is JSON `{"time": RFC 3339, "chunks": {ID: {"pack", "at", "len"}, ...}}`; files
//! are read oldest first by `time`, so a newer place wins. A repack writes one file with every
//! move still needed (those of earlier repacks included), then removes the older files, then
//! the packs it emptied: at every step, each file names only packs that exist, or is
//! overruled by a newer one that does. restic keeps the same split with its index files.

use super::store::{self, Loc};
use crate::plumbing::bad_input;
use crate::storage::repo::Repo;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub const DIR: &str = "moves/";

#[derive(Serialize, Deserialize)]
struct File {
    time: String,
    chunks: BTreeMap<String, Loc>,
}

/// The moves of a repository: where each moved chunk is now, and the files that said so.
#[derive(Default, Debug)]
pub struct Moves {
    to: HashMap<String, Loc>,
    pub files: Vec<String>,
}

impl Moves {
    pub fn read(repo: &Repo) -> Result<Moves> {
        let mut files = Vec::new();
        for (_, key, _) in store::stored(repo, DIR)? {
            let json = store::read_all(repo, &key)?;
            let f: File = serde_json::from_slice(&json)
                .map_err(|e| bad_input(format!("{key} is not a weir-dedup moves file: {e}")))?;
            files.push((f.time, key, f.chunks));
        }
        files.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut m = Moves::default();
        for (_, key, chunks) in files {
            m.to.extend(chunks);
            m.files.push(key);
        }
        Ok(m)
    }

    /// Where chunk `id`, which a list places at `listed`, is.
    pub fn place(&self, id: &str, listed: Loc) -> Loc {
        self.to.get(id).cloned().unwrap_or(listed)
    }

    /// Writes a moves file holding `chunks` (durable when it returns); its key.
    pub fn write(repo: &Repo, chunks: BTreeMap<String, Loc>) -> Result<String> {
        let f = File {
            time: crate::plumbing::rfc3339_micros(std::time::SystemTime::now()),
            chunks,
        };
        let key = format!("{DIR}{}", store::random_hex(32));
        repo.put(&key, &serde_json::to_vec(&f)?)
            .with_context(|| format!("writing {key}"))?;
        Ok(key)
    }
}
