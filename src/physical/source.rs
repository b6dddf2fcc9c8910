//! `weir-restore-physical --from URL`: a stored base backup read inside the process, the way
//! `weir-get URL | weir-encrypt -d | weir-compress -d` reads it, each stage on threads of its
//! own (ranged GETs in parallel, the age payload on up to four threads, zstd's frames on up to
//! four), joined by in-process pipes instead of three processes and three pipes. Which layers
//! there are is read from the bytes (age's header, zstd's magic), so an object stored without
//! encryption or compression reads as well.

use crate::plumbing::pipe::{self, Pipe};
use crate::plumbing::{ExitCode, coded};
use crate::storage::{Location, S3Settings, Transfer};
use crate::stream::encrypt::EncryptOptions;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// The stream stored at `url`, decrypted with `identity` (or `WEIR_AGE_IDENTITY_FILE`, or a
/// passphrase from `WEIR_PASSPHRASE`) and decompressed on `threads` threads.
pub fn open(url: &str, s3: &S3Settings, identity: Option<&Path>, threads: usize) -> Result<Pipe> {
    let loc = Location::parse(url)?;
    loc.require_key()?;
    let s3 = s3.clone();
    // weir-get's defaults, without progress lines (weir-restore-physical prints its own).
    let t = Transfer {
        memory: 64 << 20,
        jobs: 8,
        progress: false,
        quiet: true,
    };
    let fetched = pipe::spawn(move |w| crate::storage::get_into(&loc, &s3, &t, w).map(|_| ()));
    let decrypt = decrypting(identity);
    let plain = pipe::then(fetched, move |r, w| {
        let mut r = BufReader::with_capacity(1 << 20, r);
        let head = r.fill_buf().context("reading the object")?;
        let sealed = head.starts_with(crate::stream::encrypt::AGE_BINARY)
            || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----");
        if !sealed {
            return pass(&mut r, w);
        }
        if decrypt.identities.is_empty()
            && std::env::var_os(crate::stream::encrypt::ENV_IDENTITY_FILE).is_none()
            && std::env::var_os(crate::stream::encrypt::ENV_PASSPHRASE).is_none()
        {
            return Err(coded(
                ExitCode::Usage,
                "the backup is encrypted: give -i FILE (or WEIR_AGE_IDENTITY_FILE, or WEIR_PASSPHRASE)",
            ));
        }
        crate::stream::encrypt::decrypt_into(&decrypt, r, w)
    });
    Ok(pipe::then(plain, move |r, w| {
        let mut r = BufReader::with_capacity(1 << 20, r);
        let head = r.fill_buf().context("reading the object")?;
        match crate::stream::compress::sniff(head.get(..4).unwrap_or(head)) {
            Some(_) => crate::stream::compress::decompress_into(r, w, threads),
            None => pass(&mut r, w),
        }
    }))
}

/// How `--from` decrypts: with `identity`, or `WEIR_AGE_IDENTITY_FILE`, or `WEIR_PASSPHRASE`.
pub(super) fn decrypting(identity: Option<&Path>) -> EncryptOptions {
    EncryptOptions {
        decrypt: true,
        identities: identity.iter().map(|p| p.display().to_string()).collect(),
        ..Default::default()
    }
}

/// A layer that is not there: the bytes as they are.
fn pass(r: &mut dyn BufRead, w: &mut dyn Write) -> Result<()> {
    std::io::copy(r, w).context("reading the object")?;
    Ok(())
}

/// The backups `--from` restores, in order. Several are taken as given (a chain, full first);
/// so is one over a directory that already holds a restore (the next step of a chain). One
/// into an empty directory comes after its parents, found in the catalog beside it by their
/// manifest checksums (as restore.sh finds them), so an incremental restores whole.
pub fn chain(o: &super::restore::RestoreOptions) -> Result<Vec<String>> {
    let fresh = std::fs::read_dir(&o.pgdata).map_or(true, |mut d| d.next().is_none());
    let [url] = &o.from[..] else {
        return Ok(o.from.clone());
    };
    if !(fresh || o.clear) {
        return Ok(o.from.clone());
    }
    let prefix = url.rfind('/').map_or("./", |i| &url[..=i]);
    let cat = crate::catalog::load(prefix, &o.s3)?;
    let by_checksum: std::collections::HashMap<&str, &crate::catalog::Backup> = cat
        .backups
        .iter()
        .filter_map(|b| Some((b.entry.physical.as_ref()?.manifest_checksum.as_deref()?, b)))
        .collect();
    let Some(mut at) = cat.backups.iter().find(|b| b.data_url == *url) else {
        return Ok(o.from.clone());
    };
    let mut chain = vec![url.clone()];
    while let Some(parent) = at.entry.physical.as_ref().and_then(|p| p.parent.as_ref()) {
        let Some(p) = by_checksum.get(parent.manifest_checksum.as_str()) else {
            return Err(coded(
                ExitCode::BadArchive,
                format!(
                    "{url}: its chain's backup with manifest checksum {} is not in the catalog under {prefix}; give the chain with --from, full backup first",
                    parent.manifest_checksum
                ),
            ));
        };
        if chain.contains(&p.data_url) {
            return Err(coded(ExitCode::BadArchive, "the catalog's chain loops"));
        }
        chain.insert(0, p.data_url.clone());
        at = p;
    }
    Ok(chain)
}
