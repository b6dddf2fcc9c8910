//! `weir-encrypt`: the age encryption format (age-encryption.org/v1) as a stream stage, so
//! that `age -d` decrypts what it writes and it decrypts what `age` writes.
//!
//! Recipients: X25519 (`age1...`) and SSH (`ssh-ed25519`, `ssh-rsa`) public keys, from `-r`,
//! recipients files (`-R`) or `WEIR_AGE_RECIPIENTS`. Identities for `-d`: age identity files
//! and unencrypted SSH private keys, from `-i` or `WEIR_AGE_IDENTITY_FILE`.
//!
//! Passphrase mode (scrypt) works unattended, which `age` itself refuses: the passphrase comes
//! from `--passphrase-file`, `WEIR_PASSPHRASE`, or a prompt on the terminal when there is one.
//! It never comes from the command line.
//!
//! Integrity: age authenticates the header and every 64 KiB payload chunk before releasing it,
//! and marks the last chunk, so a truncated or altered file fails; the stage then exits
//! non-zero with nothing unauthenticated written.

use crate::plumbing::{ExitCode, Output, bad_input, coded, open_input};
use age::secrecy::{ExposeSecret, SecretString};
use age_core::format::FileKey;
use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::str::FromStr;

#[derive(Clone, Debug, Default)]
pub struct EncryptOptions {
    pub decrypt: bool,
    pub recipients: Vec<String>,
    pub recipients_files: Vec<String>,
    pub identities: Vec<String>,
    pub passphrase: bool,
    pub passphrase_file: Option<String>,
    pub armor: bool,
    pub input: Option<String>,
    pub output: Option<String>,
}

/// Environment variables read; listed for the man page.
pub const ENV_RECIPIENTS: &str = "WEIR_AGE_RECIPIENTS";
pub const ENV_IDENTITY_FILE: &str = "WEIR_AGE_IDENTITY_FILE";
pub const ENV_PASSPHRASE: &str = "WEIR_PASSPHRASE";

/// How a binary age file begins (its version line follows).
pub const AGE_BINARY: &[u8] = b"age-encryption.org/";

/// scrypt work factor for passphrase encryption: 2^18, age's own choice for about one second
/// on a current machine, fixed so backups are not cheaper to attack on a faster host.
pub const SCRYPT_LOG_N: u8 = 18;

pub fn run(o: &EncryptOptions) -> Result<()> {
    if o.decrypt { decrypt(o) } else { encrypt(o) }
}

fn encrypt(o: &EncryptOptions) -> Result<()> {
    if !o.identities.is_empty() {
        bail!("-i/--identity is for decryption (-d); to encrypt, name recipients with -r or -R");
    }
    let recipients = collect_recipients(o)?;
    let recipients: Vec<BoxedRecipient> = if recipients.is_empty() {
        if !o.passphrase
            && o.passphrase_file.is_none()
            && std::env::var_os(ENV_PASSPHRASE).is_none()
        {
            return Err(coded(
                ExitCode::Usage,
                "no recipients: give -r RECIPIENT, -R FILE or WEIR_AGE_RECIPIENTS, or -p for a passphrase",
            ));
        }
        let pass = passphrase(o, true)?;
        let mut r = age::scrypt::Recipient::new(pass);
        r.set_work_factor(SCRYPT_LOG_N);
        vec![Box::new(r)]
    } else {
        if o.passphrase || o.passphrase_file.is_some() {
            bail!("a passphrase cannot be combined with recipients (age allows one or the other)");
        }
        recipients
    };
    let (head, payload_key) = header(&recipients)?;
    let mut input = open_input(o.input.as_deref())?;
    // Armored output is text; only binary output is refused on a terminal.
    let out = Output::open(o.output.as_deref(), !o.armor)?;
    let format = if o.armor {
        age::armor::Format::AsciiArmor
    } else {
        age::armor::Format::Binary
    };
    let mut armored = age::armor::ArmoredWriter::wrap_output(out, format)?;
    armored.write_all(&head).context("writing the output")?;
    crate::stream::age_stream::encrypt(&payload_key, &mut input, &mut armored)
        .context("encrypting")?;
    // Each layer is finished in turn: the armor footer, then the buffer.
    let out = armored.finish().context("finishing the armor")?;
    out.finish().context("writing the output")
}

type BoxedRecipient = Box<dyn age::Recipient + Send>;

/// A new age header (recipient stanzas, MAC, then the payload nonce) and the payload key.
/// The age crate writes the header and so learns the file key; a copy of it lets the payload
/// be encrypted outside the crate, on several threads (see age_stream).
fn header(recipients: &[BoxedRecipient]) -> Result<(Vec<u8>, [u8; 32])> {
    let captures: Vec<KeyCapture<&BoxedRecipient>> =
        recipients.iter().map(KeyCapture::new).collect();
    let encryptor =
        age::Encryptor::with_recipients(captures.iter().map(|c| c as &dyn age::Recipient))
            .map_err(|e| anyhow!("{e}"))?;
    // finish() adds the empty last chunk of an empty payload: 16 bytes of tag, cut off again.
    let mut head = encryptor.wrap_output(Vec::new())?.finish()?;
    head.truncate(head.len() - 16);
    let nonce = head[head.len() - 16..].to_vec();
    let file_key = captures
        .iter()
        .find_map(KeyCapture::key)
        .ok_or_else(|| anyhow!("internal: the file key was not seen"))?;
    Ok((
        head,
        crate::stream::age_stream::payload_key(&file_key, &nonce),
    ))
}

/// Encrypts `plain`, held in memory, to `recipients` as one binary age file: the age crate
/// writes the header, the payload goes through OpenSSL's cipher on this thread (as
/// [`open_in_memory`] reads it). For weir-dedup's chunks.
pub fn seal_in_memory(plain: &[u8], recipients: &[BoxedRecipient]) -> Result<Vec<u8>> {
    let (mut sealed, key) = header(recipients)?;
    sealed.extend_from_slice(&crate::stream::age_stream::encrypt_in_memory(&key, plain));
    Ok(sealed)
}

fn parse_recipient(s: &str, origin: &str) -> Result<BoxedRecipient> {
    let s = s.trim();
    if let Ok(r) = age::x25519::Recipient::from_str(s) {
        return Ok(Box::new(r));
    }
    if s.starts_with("ssh-") {
        return match age::ssh::Recipient::from_str(s) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => bail!("{origin}: unusable SSH recipient: {e:?}"),
        };
    }
    bail!(
        "{origin}: {:?} is not an age (age1...) or SSH (ssh-ed25519, ssh-rsa) recipient",
        shorten(s)
    )
}

fn shorten(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(40).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s.to_string()
    }
}

/// The recipients `-r`, `-R` and `WEIR_AGE_RECIPIENTS` name (for weir-wal too).
pub fn recipients(o: &EncryptOptions) -> Result<Vec<BoxedRecipient>> {
    collect_recipients(o)
}

/// The identities `-i` and `WEIR_AGE_IDENTITY_FILE` name (for weir-wal too).
pub fn identities(o: &EncryptOptions) -> Result<Vec<Box<dyn age::Identity>>> {
    read_identities(o)
}

fn collect_recipients(o: &EncryptOptions) -> Result<Vec<BoxedRecipient>> {
    let mut out = Vec::new();
    for r in &o.recipients {
        out.push(parse_recipient(r, "-r")?);
    }
    if let Ok(env) = std::env::var(ENV_RECIPIENTS) {
        for r in env.split([',', '\n', ' ']).filter(|r| !r.trim().is_empty()) {
            out.push(parse_recipient(r, ENV_RECIPIENTS)?);
        }
    }
    for f in &o.recipients_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read recipients file {f}"))?;
        let mut any = false;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(parse_recipient(line, &format!("{f}, line {}", i + 1))?);
            any = true;
        }
        if !any {
            bail!("recipients file {f} holds no recipients");
        }
    }
    Ok(out)
}

/// The passphrase: from a file (first line), the environment, or the terminal (asked twice
/// when `confirm`, for a new encryption). For weir-dedup too.
pub fn passphrase(o: &EncryptOptions, confirm: bool) -> Result<SecretString> {
    if let Some(f) = &o.passphrase_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read passphrase file {f}"))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            bail!("passphrase file {f} is empty");
        }
        return Ok(SecretString::from(line.to_string()));
    }
    if let Ok(p) = std::env::var(ENV_PASSPHRASE) {
        if p.is_empty() {
            bail!("{ENV_PASSPHRASE} is set but empty");
        }
        return Ok(SecretString::from(p));
    }
    // rpassword reads from /dev/tty, so stdin and stdout stay the data streams.
    let p = rpassword::prompt_password("Passphrase: ").map_err(|e| {
        anyhow!("no passphrase: set {ENV_PASSPHRASE} or use --passphrase-file (no terminal to prompt on: {e})")
    })?;
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm {
        let again = rpassword::prompt_password("Confirm passphrase: ")?;
        if again != p {
            bail!("passphrases do not match");
        }
    }
    Ok(SecretString::from(p))
}

fn read_identities(o: &EncryptOptions) -> Result<Vec<Box<dyn age::Identity>>> {
    let mut files = o.identities.clone();
    if let Ok(f) = std::env::var(ENV_IDENTITY_FILE) {
        if !f.is_empty() {
            files.push(f);
        }
    }
    let mut out: Vec<Box<dyn age::Identity>> = Vec::new();
    for f in &files {
        let data = std::fs::read(f).with_context(|| format!("cannot read identity file {f}"))?;
        let text = String::from_utf8_lossy(&data);
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
            || text.contains("-----BEGIN RSA PRIVATE KEY-----")
        {
            let id = age::ssh::Identity::from_buffer(&data[..], Some(f.clone()))
                .with_context(|| format!("cannot read SSH key {f}"))?;
            match id {
                age::ssh::Identity::Unencrypted(_) => out.push(Box::new(id)),
                age::ssh::Identity::Encrypted(_) => {
                    bail!(
                        "SSH key {f} is passphrase-protected; weir reads unencrypted SSH keys only (decrypt a copy with ssh-keygen -p)"
                    )
                }
                age::ssh::Identity::Unsupported(k) => {
                    bail!("SSH key {f} is of an unsupported kind: {k:?}")
                }
            }
            continue;
        }
        let ids = age::IdentityFile::from_buffer(&data[..])
            .with_context(|| format!("identity file {f} is not an age identity file"))?
            .into_identities()
            .map_err(|e| anyhow!("identity file {f}: {e}"))?;
        if ids.is_empty() {
            bail!("identity file {f} holds no identities");
        }
        out.extend(ids.into_iter().map(|i| i as Box<dyn age::Identity>));
    }
    Ok(out)
}

/// Explains an age error in terms of what the user can do about it.
fn explain(e: age::DecryptError) -> anyhow::Error {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys => anyhow!("no identity matches any recipient of this file (wrong key?)"),
        D::KeyDecryptionFailed => anyhow!("wrong passphrase, or the file key cannot be decrypted"),
        D::DecryptionFailed => {
            bad_input("the file is corrupt or was tampered with (decryption failed)")
        }
        D::InvalidMac => bad_input(
            "the header does not verify: wrong passphrase, or the header was tampered with",
        ),
        D::InvalidHeader => bad_input("not an age file, or its header is corrupt"),
        D::UnknownFormat => bad_input("not an age file of a version this tool reads"),
        D::ExcessiveWork { required, target } => anyhow!(
            "the passphrase's scrypt work factor 2^{required} is above the limit 2^{target}"
        ),
        D::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            bad_input("the age header is truncated")
        }
        other => bad_input(format!("{other}")),
    }
}

fn decrypt(o: &EncryptOptions) -> Result<()> {
    if !o.recipients.is_empty() || !o.recipients_files.is_empty() {
        bail!("-r/-R are for encryption; to decrypt, give identities with -i");
    }
    let mut out = Output::open(o.output.as_deref(), true)?;
    decrypt_into(o, open_input(o.input.as_deref())?, &mut out)?;
    out.finish().context("writing the output")
}

/// Decrypts the age file (binary or armored) on `input` to `out` with the identities or the
/// passphrase `o` names: weir-encrypt -d's work, for a stage that reads an object itself.
pub fn decrypt_into(
    o: &EncryptOptions,
    input: impl Read + Send,
    out: &mut dyn Write,
) -> Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    skip_whitespace_before_armor(&mut input)?;
    // Binary age files are read as they are; anything else goes through the armor reader,
    // which decodes armor (and reports what is neither).
    let binary = input
        .fill_buf()
        .context("reading the input")?
        .starts_with(AGE_BINARY);
    let mut input: Box<dyn BufRead + Send + '_> = if binary {
        Box::new(input)
    } else {
        Box::new(BufReader::with_capacity(
            1 << 20,
            age::armor::ArmoredReader::new(input),
        ))
    };
    let payload_key = open_header(o, &mut input)?;
    use crate::stream::age_stream::PayloadError;
    crate::stream::age_stream::decrypt(&payload_key, &mut input, out).map_err(|e| match e {
        PayloadError::Invalid(m) => bad_input(format!(
            "the ciphertext is truncated or was tampered with: {m}"
        )),
        PayloadError::Input(e) => bad_input(format!(
            "the ciphertext is truncated or was tampered with: {e}"
        )),
        PayloadError::Output(e) => anyhow::Error::new(e).context("writing the output"),
    })
}

/// Reads a binary age header and the payload nonce after it from `input`, opens the header
/// with the identities or passphrase `o` names, and returns the payload key; `input` is left
/// at the payload's first chunk.
pub fn open_header(o: &EncryptOptions, input: &mut dyn BufRead) -> Result<[u8; 32]> {
    let mut head = read_checked_header(input)?;
    // The age crate checks the header and its MAC and finds the file key; the payload after
    // the 16-byte nonce is ours to decrypt, in parallel (see age_stream).
    let header_len = head.len();
    input
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| bad_input(format!("reading the input: {e}")))?;
    let nonce = head[header_len..].to_vec();
    let dec = age::Decryptor::new_buffered(std::io::Cursor::new(head)).map_err(explain)?;
    let file_key = if dec.is_scrypt() {
        let pass = passphrase(o, false)?;
        let mut id = age::scrypt::Identity::new(pass);
        // age's CLI accepts work factors up to 2^22 by default (decrypting takes seconds).
        id.set_max_work_factor(22);
        let id = KeyCapture::new(id);
        dec.decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| match e {
                // For a passphrase file, the crate says this when the passphrase is wrong.
                age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
                    anyhow!("wrong passphrase (or the file's passphrase stanza is corrupt)")
                }
                other => explain(other),
            })?;
        id.key()
    } else {
        let ids = read_identities(o)?;
        if ids.is_empty() {
            return Err(coded(
                ExitCode::Usage,
                "no identities: give -i FILE or WEIR_AGE_IDENTITY_FILE to decrypt (this file is not passphrase-encrypted)",
            ));
        }
        let ids: Vec<KeyCapture<Box<dyn age::Identity>>> =
            ids.into_iter().map(KeyCapture::new).collect();
        dec.decrypt(ids.iter().map(|i| i as &dyn age::Identity))
            .map_err(explain)?;
        ids.iter().find_map(KeyCapture::key)
    };
    let file_key = file_key.ok_or_else(|| anyhow!("internal: the file key was not seen"))?;
    Ok(crate::stream::age_stream::payload_key(&file_key, &nonce))
}

/// Wraps a recipient or identity and keeps a copy of the file key that passes through it, so
/// the payload can be handled outside the age crate. The header, its MAC and the recipient
/// logic stay the crate's.
struct KeyCapture<T> {
    inner: T,
    key: std::sync::Mutex<Option<[u8; 16]>>,
}

type Unwrapped = Option<Result<FileKey, age::DecryptError>>;

impl<T> KeyCapture<T> {
    fn new(inner: T) -> Self {
        KeyCapture {
            inner,
            key: std::sync::Mutex::new(None),
        }
    }

    fn key(&self) -> Option<[u8; 16]> {
        *self.key.lock().unwrap()
    }

    fn keep(&self, r: Unwrapped) -> Unwrapped {
        if let Some(Ok(k)) = &r {
            *self.key.lock().unwrap() = Some(*k.expose_secret());
        }
        r
    }
}

impl age::Recipient for KeyCapture<&BoxedRecipient> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> std::result::Result<
        (
            Vec<age_core::format::Stanza>,
            std::collections::HashSet<String>,
        ),
        age::EncryptError,
    > {
        *self.key.lock().unwrap() = Some(*file_key.expose_secret());
        self.inner.wrap_file_key(file_key)
    }
}

impl age::Identity for KeyCapture<Box<dyn age::Identity>> {
    fn unwrap_stanza(&self, s: &age_core::format::Stanza) -> Unwrapped {
        self.keep(self.inner.unwrap_stanza(s))
    }
    fn unwrap_stanzas(&self, s: &[age_core::format::Stanza]) -> Unwrapped {
        self.keep(self.inner.unwrap_stanzas(s))
    }
}

impl age::Identity for KeyCapture<age::scrypt::Identity> {
    fn unwrap_stanza(&self, s: &age_core::format::Stanza) -> Unwrapped {
        self.keep(self.inner.unwrap_stanza(s))
    }
    fn unwrap_stanzas(&self, s: &[age_core::format::Stanza]) -> Unwrapped {
        self.keep(self.inner.unwrap_stanzas(s))
    }
}

impl age::Identity for KeyCapture<&dyn age::Identity> {
    fn unwrap_stanza(&self, s: &age_core::format::Stanza) -> Unwrapped {
        self.keep(self.inner.unwrap_stanza(s))
    }
    fn unwrap_stanzas(&self, s: &[age_core::format::Stanza]) -> Unwrapped {
        self.keep(self.inner.unwrap_stanzas(s))
    }
}

/// Decrypts a whole binary age file held in memory with `identities`: the age crate checks
/// the header and finds the file key, the payload goes through OpenSSL's cipher on this thread
/// (about twice the crate's speed). For weir-dedup's chunks. A damaged file is bad input; an
/// identity that opens none of its stanzas is a failure.
pub fn open_in_memory(sealed: &[u8], identities: &[Box<dyn age::Identity>]) -> Result<Vec<u8>> {
    let (key, payload) = open_head(sealed, identities)?;
    crate::stream::age_stream::decrypt_in_memory(&key, &sealed[payload..]).map_err(|m| {
        bad_input(format!(
            "the ciphertext is truncated or was tampered with: {m}"
        ))
    })
}

/// Opens the header at the start of `head` (a binary age file, or its first bytes through
/// the payload nonce) with `identities`: the payload key, and where the payload's first chunk
/// starts. For reading part of a file by range (weir-dedup's packs).
pub fn open_head(head: &[u8], identities: &[Box<dyn age::Identity>]) -> Result<([u8; 32], usize)> {
    let mut r = head;
    let header = read_checked_header(&mut r)?;
    if r.len() < 16 {
        return Err(bad_input("the age file ends before its payload"));
    }
    let nonce = &r[..16];
    let both = [&header[..], nonce].concat();
    let dec = age::Decryptor::new_buffered(std::io::Cursor::new(both)).map_err(explain)?;
    let ids: Vec<KeyCapture<&dyn age::Identity>> = identities
        .iter()
        .map(|i| KeyCapture::new(i.as_ref()))
        .collect();
    dec.decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => anyhow!("no identity given opens it"),
            e => explain(e),
        })?;
    let file_key = ids
        .iter()
        .find_map(KeyCapture::key)
        .ok_or_else(|| anyhow!("internal: the file key was not seen"))?;
    let key = crate::stream::age_stream::payload_key(&file_key, nonce);
    Ok((key, header.len() + 16))
}

/// Whitespace before an armored file is allowed (age's armor rules, and the CCTV vector
/// `armor_whitespace_outside`), but the age crate does not skip it; binary files never start
/// with whitespace, so skipping it before `-----BEGIN` is safe.
fn skip_whitespace_before_armor(r: &mut impl BufRead) -> Result<()> {
    let buf = r.fill_buf().context("reading the input")?;
    let ws = buf
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    if ws > 0 && buf[ws..].starts_with(b"-----BEGIN") {
        r.consume(ws);
    }
    Ok(())
}

/// Reads the age header (through its `---` line) and checks the stanza structure that the
/// age crate accepts too loosely: every stanza body must end with a line shorter than 64
/// columns (possibly empty), and body lines are unpadded base64 (age-encryption.org/v1,
/// "Header"; CCTV vectors `stanza_missing_body`, `stanza_missing_final_line`). Anything else
/// wrong is left to the crate, which reports it. Returns the bytes read.
fn read_checked_header(r: &mut (impl BufRead + ?Sized)) -> Result<Vec<u8>> {
    const MAX_HEADER: usize = 1 << 20;
    let mut header = Vec::new();
    let mut lines: Vec<(usize, usize)> = Vec::new();
    loop {
        let start = header.len();
        let n = r
            .take((MAX_HEADER - start) as u64)
            .read_until(b'\n', &mut header)
            .map_err(|e| bad_input(format!("reading the age header: {e}")))?;
        if n == 0 || header.len() >= MAX_HEADER {
            return Ok(header);
        }
        lines.push((start, header.len()));
        if header[start..].starts_with(b"--- ") {
            break;
        }
        if lines.len() == 1 && &header[start..] != b"age-encryption.org/v1\n" {
            return Ok(header);
        }
    }
    let line = |i: usize| -> &[u8] {
        let (a, b) = lines[i];
        header[a..b].strip_suffix(b"\n").unwrap_or(&header[a..b])
    };
    let mut i = 1;
    while i < lines.len() - 1 {
        if !line(i).starts_with(b"-> ") {
            return Err(bad_input(
                "not an age file, or its header is corrupt (unexpected header line)",
            ));
        }
        i += 1;
        loop {
            if i >= lines.len() - 1 || line(i).starts_with(b"-> ") {
                return Err(bad_input(
                    "the age header is corrupt: a stanza ends without its final short line",
                ));
            }
            let body = line(i);
            if body.len() > 64
                || !body
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
            {
                return Err(bad_input(
                    "the age header is corrupt: malformed stanza body line",
                ));
            }
            i += 1;
            if body.len() < 64 {
                break;
            }
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        assert!(
            parse_recipient(
                "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                "-r"
            )
            .is_ok()
        );
        assert!(
            parse_recipient(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN",
                "-r"
            )
            .is_ok()
        );
        let e = parse_recipient("age1nope", "-r").err().unwrap().to_string();
        assert!(e.contains("not an age"), "{e}");
    }

    /// [`seal_in_memory`] at the payload's edges (empty, one byte, one chunk exactly, one
    /// more byte, several chunks), read back by the age crate's own decryptor.
    #[test]
    fn seal_in_memory_is_read_by_the_age_crate() {
        let id = age::x25519::Identity::generate();
        let to: Vec<BoxedRecipient> = vec![Box::new(id.to_public())];
        for len in [0, 1, 65536, 65537, 200_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal_in_memory(&plain, &to).unwrap();
            let dec = age::Decryptor::new(&sealed[..]).unwrap();
            let mut r = dec
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .unwrap();
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert!(back == plain, "length {len} came back different");
        }
    }

    /// The official age vectors (C2SP CCTV) through [`open_in_memory`], weir-dedup's path:
    /// the binary ones with X25519 or SSH identities (armor and scrypt are not used there).
    #[test]
    fn official_vectors_open_in_memory() {
        use sha2::{Digest, Sha256};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/age-cctv");
        let (mut ran, mut failures) = (0, Vec::new());
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let raw = std::fs::read(&path).unwrap();
            let Some(split) = raw.windows(2).position(|w| w == b"\n\n") else {
                continue;
            };
            let header = String::from_utf8_lossy(&raw[..split]).to_string();
            let field = |k: &str| -> Vec<String> {
                header
                    .lines()
                    .filter_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                    .collect()
            };
            if name.contains("hybrid")
                || header.contains("armored: yes")
                || !field("passphrase:").is_empty()
            {
                continue;
            }
            let mut body = raw[split + 2..].to_vec();
            if header.contains("compressed: zlib") {
                let mut plain = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::ZlibDecoder::new(&body[..]),
                    &mut plain,
                )
                .unwrap();
                body = plain;
            }
            let text = field("identity:").join("\n") + "\n";
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), text).unwrap();
            let o = EncryptOptions {
                identities: vec![file.path().display().to_string()],
                ..Default::default()
            };
            let Ok(ids) = read_identities(&o) else {
                continue;
            };
            ran += 1;
            let got = open_in_memory(&body, &ids);
            let ok = match field("expect:")[0].as_str() {
                "success" => {
                    got.is_ok_and(|p| hex::encode(Sha256::digest(&p)) == field("payload:")[0])
                }
                _ => got.is_err(),
            };
            if !ok {
                failures.push(name);
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
        assert!(ran > 50, "only {ran} vectors");
    }
}
