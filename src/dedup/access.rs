//! Who can read a repository: the recipients each push names (age1... or SSH keys), or a
//! passphrase.
//!
//! A passphrase cannot seal every chunk itself: age's scrypt stanza costs about a second per
//! file by design. So a passphrase repository, made by a push with `-p`, `--passphrase-file`
//! or `WEIR_PASSPHRASE`, gets an age identity of its own, generated once and stored
//! passphrase-encrypted as `keys/identity.age`; chunks and `keys/id.age` are encrypted to
//! that identity, and one scrypt opening of it reads the whole repository. restic seals its
//! master key with the password the same way. By hand, `age -d keys/identity.age` (asking for
//! the passphrase) gives the identity file that `age -d -i` then uses on every chunk.

use super::store::Config;
use crate::plumbing::{ExitCode, coded};
use crate::storage::repo::{Created, Repo};
use crate::stream::encrypt::{self, ENV_PASSPHRASE, ENV_RECIPIENTS, EncryptOptions};
use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{Context, Result, anyhow};
use std::str::FromStr;

pub const IDENTITY: &str = "keys/identity.age";

/// Whether the options ask for a passphrase: `-p`, `--passphrase-file`, or `WEIR_PASSPHRASE`
/// with no recipients named (as weir-encrypt decides).
fn wants_passphrase(o: &EncryptOptions) -> bool {
    let named = !o.recipients.is_empty()
        || !o.recipients_files.is_empty()
        || std::env::var_os(ENV_RECIPIENTS).is_some();
    o.passphrase
        || o.passphrase_file.is_some()
        || (!named && std::env::var_os(ENV_PASSPHRASE).is_some())
}

/// The recipients a push seals chunks to, as options weir-encrypt's parser reads: those named,
/// or the repository identity's, opened (or made, for a new repository) with the passphrase.
/// A repository keeps the mode it was made with.
pub fn push_recipients(repo: &Repo, c: Option<&Config>, o: &EncryptOptions) -> Result<Sealing> {
    let pass = wants_passphrase(o);
    if pass && (!o.recipients.is_empty() || !o.recipients_files.is_empty()) {
        return Err(coded(
            ExitCode::Usage,
            "a passphrase cannot be combined with recipients (age allows one or the other)",
        ));
    }
    match c {
        Some(c) if c.passphrase && !pass => {
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "repository {} is sealed by a passphrase: push with -p, --passphrase-file or {ENV_PASSPHRASE}",
                    c.id
                ),
            ));
        }
        Some(c) if !c.passphrase && pass => {
            return Err(coded(
                ExitCode::Usage,
                format!(
                    "repository {} encrypts to recipients, not a passphrase: push with -r or -R",
                    c.id
                ),
            ));
        }
        _ => {}
    }
    if !pass {
        if encrypt::recipients(o)?.is_empty() {
            return Err(coded(
                ExitCode::Usage,
                "a push needs recipients to encrypt to: -r, -R or WEIR_AGE_RECIPIENTS, or -p for a passphrase",
            ));
        }
        let named = EncryptOptions {
            recipients: o.recipients.clone(),
            recipients_files: o.recipients_files.clone(),
            ..Default::default()
        };
        return Ok(Sealing {
            enc: named,
            passphrase: false,
        });
    }
    let secret = encrypt::passphrase(o, c.is_none())?;
    let identity = open_or_make_identity(repo, &secret)?;
    Ok(Sealing {
        enc: EncryptOptions {
            recipients: vec![identity.to_public().to_string()],
            ..Default::default()
        },
        passphrase: true,
    })
}

/// What a push seals to; `enc` holds recipients only, so each worker parses its own.
pub struct Sealing {
    pub enc: EncryptOptions,
    pub passphrase: bool,
}

/// The repository's identity: the one stored, or a new one stored first. Made with a
/// conditional create, so two first pushes at once end with one identity both seal to.
fn open_or_make_identity(repo: &Repo, pass: &SecretString) -> Result<age::x25519::Identity> {
    if let Some(id) = read_identity(repo, pass)? {
        return Ok(id);
    }
    let new = age::x25519::Identity::generate();
    let mut r = age::scrypt::Recipient::new(pass.clone());
    r.set_work_factor(encrypt::SCRYPT_LOG_N);
    let mut sealed = Vec::new();
    let r: super::Recipient = Box::new(r);
    super::seal(
        new.to_string().expose_secret().as_bytes(),
        &[r],
        &mut sealed,
    )?;
    let digest = crate::physical::object::sha256_hex(&sealed);
    match repo
        .create(IDENTITY, &sealed, &digest)
        .with_context(|| format!("writing the repository's identity ({IDENTITY})"))?
    {
        Created::New => Ok(new),
        Created::Exists(_) => read_identity(repo, pass)?
            .ok_or_else(|| anyhow!("{IDENTITY} vanished while it was being made")),
    }
}

/// `keys/identity.age` opened with the passphrase, or `None` when there is none.
fn read_identity(repo: &Repo, pass: &SecretString) -> Result<Option<age::x25519::Identity>> {
    let Some(stored) = repo.read(IDENTITY)? else {
        return Ok(None);
    };
    let mut scrypt = age::scrypt::Identity::new(pass.clone());
    // age's CLI accepts work factors up to 2^22 by default.
    scrypt.set_max_work_factor(22);
    let scrypt: super::Identity = Box::new(scrypt);
    let text = encrypt::open_in_memory(&stored.bytes()?, &[scrypt]).map_err(|e| {
        anyhow!("cannot open the repository's identity ({IDENTITY}): wrong passphrase? ({e:#})")
    })?;
    let text = String::from_utf8(text).unwrap_or_default();
    let id = age::x25519::Identity::from_str(text.trim())
        .map_err(|_| anyhow!("{IDENTITY} does not hold an age identity"))?;
    Ok(Some(id))
}

/// How readers (cat, verify --deep) open chunks: the identity files given, else, for a
/// passphrase repository, its own identity. Each worker makes its identities from this.
pub struct Opener {
    files: EncryptOptions,
    repository: Option<SecretString>,
}

impl Opener {
    pub fn new(repo: &Repo, c: &Config, o: &EncryptOptions) -> Result<Opener> {
        let files = EncryptOptions {
            identities: o.identities.clone(),
            ..Default::default()
        };
        if !encrypt::identities(&files)?.is_empty() {
            return Ok(Opener {
                files,
                repository: None,
            });
        }
        if !c.passphrase {
            return Err(coded(
                ExitCode::Usage,
                "reading chunks needs the identity they are encrypted to: -i FILE or WEIR_AGE_IDENTITY_FILE",
            ));
        }
        let pass = encrypt::passphrase(o, false)?;
        let id = read_identity(repo, &pass)?
            .ok_or_else(|| anyhow!("the passphrase repository {} has no {IDENTITY}", c.id))?;
        Ok(Opener {
            files,
            repository: Some(id.to_string()),
        })
    }

    /// The recipients a repack seals rewritten packs to: those named in `o`, as a push's;
    /// in a passphrase repository, its own identity's (opened once, by [`Opener::new`]).
    pub fn recipients(&self, o: &EncryptOptions) -> Result<Vec<super::Recipient>> {
        if let Some(secret) = &self.repository {
            let id = age::x25519::Identity::from_str(secret.expose_secret())
                .map_err(|e| anyhow!("the repository's identity: {e}"))?;
            return Ok(vec![Box::new(id.to_public())]);
        }
        let named = encrypt::recipients(o)?;
        if named.is_empty() {
            return Err(coded(
                ExitCode::Usage,
                "--repack needs the recipients the repository is pushed to: -r, -R or WEIR_AGE_RECIPIENTS (and -i to read its packs)",
            ));
        }
        Ok(named)
    }

    pub fn identities(&self) -> Result<Vec<super::Identity>> {
        match &self.repository {
            Some(secret) => {
                let id = age::x25519::Identity::from_str(secret.expose_secret())
                    .map_err(|e| anyhow!("the repository's identity: {e}"))?;
                Ok(vec![Box::new(id)])
            }
            None => encrypt::identities(&self.files),
        }
    }
}
