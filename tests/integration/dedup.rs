//! weir-dedup: archives of a real database pushed into a deduplicated repository (a directory,
//! and s3s-fs), read back byte for byte and restored; the damage it must refuse.

use crate::harness::*;
use crate::objstore::shared;
use std::path::{Path, PathBuf};

/// A repository directory with an age key pair and a repository key beside it.
struct Repo {
    dir: tempfile::TempDir,
    identity: String,
    recipient: String,
    key: String,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("repo")).unwrap();
        let (identity, recipient) = keypair(dir.path(), "id.txt");
        let key = dir.path().join("dedup.key");
        std::fs::write(&key, "a repository key of this test\n").unwrap();
        Repo {
            identity,
            recipient,
            key: key.display().to_string(),
            dir,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn url(&self) -> String {
        self.path().display().to_string()
    }

    /// `push URL NAME` to this test's recipient with its key.
    fn push_args<'a>(&'a self, url: &'a str, name: &'a str) -> [&'a str; 7] {
        let (r, k) = (self.recipient.as_str(), self.key.as_str());
        ["push", url, name, "-r", r, "--key-file", k]
    }

    fn push(&self, url: &str, name: &str, archive: &[u8]) -> std::process::Output {
        stage("weir-dedup", &self.push_args(url, name), archive, &[])
    }

    fn cat(&self, url: &str, which: &str) -> std::process::Output {
        stage(
            "weir-dedup",
            &["cat", url, which, "-i", &self.identity],
            b"",
            &[],
        )
    }

    /// `weir-prune URL --keep-last KEEP --repack --max-unused 0 -i ID -r RECIPIENT`'s
    /// arguments, sealing for `recipient` (this repository's unless given).
    fn repack_args<'a>(
        &'a self,
        url: &'a str,
        keep: &'a str,
        recipient: Option<&'a str>,
    ) -> Vec<&'a str> {
        let r = recipient.unwrap_or(&self.recipient);
        let i = self.identity.as_str();
        vec![
            url,
            "--keep-last",
            keep,
            "--repack",
            "--max-unused",
            "0",
            "-i",
            i,
            "-r",
            r,
        ]
    }

    /// Pushes, under `app`, A (`shared` then `a`) and B (`shared` then `b`): streams that
    /// share their start, from noise of these sizes and seeds (seeds differing in more than
    /// their lowest bit: noise() sets it).
    fn push_two_sharing(
        &self,
        url: &str,
        shared: (usize, u64),
        a: (usize, u64),
        b: (usize, u64),
    ) -> (Vec<u8>, Vec<u8>) {
        let s = crate::storage::noise(shared.0, shared.1);
        let a = [s.clone(), crate::storage::noise(a.0, a.1)].concat();
        let b = [s, crate::storage::noise(b.0, b.1)].concat();
        run_ok(self.push(url, "app", &a), "push A");
        run_ok(self.push(url, "app", &b), "push B");
        (a, b)
    }

    /// What `ls --json` says of each backup, oldest first.
    fn listed(&self, url: &str) -> Vec<serde_json::Value> {
        let out = run_ok(stage("weir-dedup", &["ls", "--json", url], b"", &[]), "ls");
        serde_json::from_slice(&out).unwrap()
    }
}

/// Every data entry of an archive (its name and its rows), in name order.
fn data_entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name.starts_with("data/") {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            out.push((name, v));
        }
    }
    out.sort();
    out
}

/// The packs and lists of the repository: what its backups' data costs.
fn stored_objects(r: &Repo) -> Vec<PathBuf> {
    let mut all = files_under(&r.path().join("packs"));
    all.extend(files_under(&r.path().join("lists")));
    all
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

const SCHEMA: &str = "CREATE TABLE big (id int PRIMARY KEY, v text, n numeric);
     CREATE TABLE small (id int PRIMARY KEY, label text);
     INSERT INTO big SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 3), g * 1.5 FROM generate_series(1, 150000) g;
     INSERT INTO small SELECT g, 'label ' || g FROM generate_series(1, 300) g;";

/// The dedup round: a database extracted and pushed; extracted again unchanged, whose data
/// entries are byte-identical and which adds almost nothing; changed a little (updates,
/// inserts, deletes) and pushed again, adding a fraction; each backup read back byte for byte,
/// and the last restored equal to the source.
#[test]
fn unchanged_rows_are_stored_once_and_every_backup_comes_back_whole() {
    let c = cluster();
    c.create_db("dd_src", SCHEMA);
    let r = Repo::new();
    let url = r.url();
    let first = extract("dd_src", &["-j", "2"]);
    let said = stderr(&r.push(&url, "app", &first));
    assert!(said.contains("pushed app@"), "{said}");

    let second = extract("dd_src", &["-j", "2"]);
    assert_eq!(
        data_entries(&first),
        data_entries(&second),
        "an unchanged table's rows changed bytes"
    );
    run_ok(r.push(&url, "app", &second), "second push");

    c.psql(
        "dd_src",
        "UPDATE big SET v = 'changed ' || id WHERE id BETWEEN 70001 AND 71500;
         INSERT INTO big SELECT g, md5(g::text), 1 FROM generate_series(150001, 150750) g;
         DELETE FROM big WHERE id BETWEEN 20001 AND 20300;",
    );
    let third = extract("dd_src", &["-j", "2"]);
    run_ok(r.push(&url, "app", &third), "third push");

    let listed = r.listed(&url);
    assert_eq!(listed.len(), 3);
    let size = |i: usize, f: &str| listed[i][f].as_u64().unwrap();
    let stored: u64 = stored_objects(&r)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    eprintln!(
        "archive {} B; added: {} B, {} B, {} B; packs and lists stored {stored} B",
        size(0, "bytes"),
        size(0, "added_bytes"),
        size(1, "added_bytes"),
        size(2, "added_bytes")
    );
    assert!(
        size(1, "added_bytes") * 100 <= size(1, "bytes"),
        "an unchanged database added more than 1%"
    );
    // Before weir-extract cut its chunks by content, the same change added 74% of a full
    // backup: the rows after a deletion shifted every later cut.
    assert!(
        size(2, "added_bytes") * 3 < size(0, "added_bytes") * 2,
        "a 1.5% change added two thirds of a full backup"
    );
    assert_eq!(stored, (0..3).map(|i| size(i, "added_bytes")).sum::<u64>());

    for (i, archive) in [&first, &second, &third].into_iter().enumerate() {
        let stamp = listed[i]["backup"].as_str().unwrap().to_string();
        let back = run_ok(r.cat(&url, &stamp), "cat");
        assert!(back == *archive, "backup {stamp} came back different");
    }
    let latest = run_ok(r.cat(&url, "app"), "cat latest");
    ok(weir("weir-load", &["-q", "--create", "dd_dst"], &latest));
    assert_eq!(c.content("dd_src"), c.content("dd_dst"));
    by_hand(&r, &first, listed[0]["backup"].as_str().unwrap());
    let verified = stage(
        "weir-dedup",
        &["verify", "--deep", "-i", &r.identity, &url],
        b"",
        &[],
    );
    assert!(
        stderr(&verified).contains("3 backups"),
        "{}",
        stderr(&verified)
    );
    run_ok(verified, "verify --deep");
}

/// The same through S3 (s3s-fs): pushed, listed, read back byte for byte.
#[test]
fn a_repository_on_s3_round_trips() {
    let c = cluster();
    c.create_db("dd_s3", SCHEMA);
    let s3 = shared();
    let url = format!("s3://{}/repo", s3.bucket("dedup"));
    let r = Repo::new();
    let archive = extract("dd_s3", &[]);
    let push = r.push_args(&url, "app");
    run_ok(s3.run("weir-dedup", &push, &archive), "push to s3");
    run_ok(s3.run("weir-dedup", &push, &archive), "push to s3 again");
    let ls = run_ok(s3.run("weir-dedup", &["ls", "--json", &url], b""), "ls");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&ls).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[1]["added_bytes"].as_u64().unwrap() * 100 <= archive.len() as u64);
    let back = run_ok(
        s3.run("weir-dedup", &["cat", &url, "app", "-i", &r.identity], b""),
        "cat",
    );
    assert!(back == archive, "the stream came back different");
    run_ok(s3.run("weir-dedup", &["verify", &url], b""), "verify");

    // A repack on S3: a stream sharing only its start with the archive, then only it kept.
    let other = [
        &archive[..archive.len() / 4],
        &crate::storage::noise(6 << 20, 121),
    ]
    .concat();
    run_ok(s3.run("weir-dedup", &push, &other), "push another stream");
    let pruned = s3.run("weir-prune", &r.repack_args(&url, "1", None), b"");
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stderr(&pruned).contains("packs rewritten"),
        "{}",
        stderr(&pruned)
    );
    let back = run_ok(
        s3.run("weir-dedup", &["cat", &url, "app", "-i", &r.identity], b""),
        "cat after the repack",
    );
    assert!(
        back == other,
        "the stream came back different after the repack"
    );
    let deep = ["verify", "--deep", "-i", r.identity.as_str(), url.as_str()];
    run_ok(
        s3.run("weir-dedup", &deep, b""),
        "verify --deep after the repack",
    );
}

/// What must be refused: a missing or damaged chunk (exit 3, and weir-load commits nothing),
/// an altered recipe, a wrong identity, another repository's key, a backup that is not there.
#[test]
fn damage_and_wrong_keys_are_refused_with_their_exit_codes() {
    let c = cluster();
    c.create_db("dd_bad", SCHEMA);
    let r = Repo::new();
    let url = r.url();
    let archive = extract("dd_bad", &[]);
    run_ok(r.push(&url, "app", &archive), "push");
    let code = |o: &std::process::Output| o.status.code();

    let missing = r.cat(&url, "nothere");
    assert_eq!(code(&missing), Some(4), "{}", stderr(&missing));

    let other = Repo::new();
    let other_id = other.identity.clone();
    let wrong = stage(
        "weir-dedup",
        &["cat", &url, "app", "-i", &other_id],
        b"",
        &[],
    );
    assert_eq!(code(&wrong), Some(1), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("cannot decrypt the repository's key"),
        "{}",
        stderr(&wrong)
    );

    let other_key = r.dir.path().join("other.key");
    std::fs::write(&other_key, "some other repository's key\n").unwrap();
    let args = [
        "push",
        &url,
        "app",
        "-r",
        &r.recipient,
        "--key-file",
        other_key.to_str().unwrap(),
    ];
    let foreign = stage("weir-dedup", &args, &archive, &[]);
    assert_eq!(code(&foreign), Some(1), "{}", stderr(&foreign));
    assert!(
        stderr(&foreign).contains("the key is not repository"),
        "{}",
        stderr(&foreign)
    );

    // A list: one byte of it changed, then put back.
    let lists = files_under(&r.path().join("lists"));
    let list = std::fs::read(&lists[0]).unwrap();
    let changed = String::from_utf8(list.clone())
        .unwrap()
        .replacen("\"at\":", "\"at\":1", 1);
    std::fs::write(&lists[0], changed).unwrap();
    let damaged = r.cat(&url, "app");
    assert_eq!(code(&damaged), Some(3), "{}", stderr(&damaged));
    assert!(
        stderr(&damaged).contains("is damaged"),
        "{}",
        stderr(&damaged)
    );
    std::fs::write(&lists[0], list).unwrap();

    // The biggest pack: flipped, then gone.
    let mut packs = files_under(&r.path().join("packs"));
    packs.sort_by_key(|p| std::cmp::Reverse(p.metadata().unwrap().len()));
    let victim = &packs[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(victim, &bytes).unwrap();
    let damaged = r.cat(&url, "app");
    assert_eq!(code(&damaged), Some(3), "{}", stderr(&damaged));
    assert!(damaged.stdout.len() < archive.len());
    let load = weir(
        "weir-load",
        &["-q", "--create", "dd_bad_dst"],
        &damaged.stdout,
    );
    assert!(!load.status.success());
    assert!(
        !c.db_exists("dd_bad_dst"),
        "a damaged stream created the database"
    );

    std::fs::remove_file(victim).unwrap();
    let gone = r.cat(&url, "app");
    assert_eq!(code(&gone), Some(3), "{}", stderr(&gone));
    assert!(
        stderr(&gone).contains("is missing from the repository"),
        "{}",
        stderr(&gone)
    );
    let verify = stage("weir-dedup", &["verify", &url], b"", &[]);
    assert_eq!(code(&verify), Some(3), "{}", stderr(&verify));
    assert!(
        stderr(&verify).contains("1 of 1 backups cannot be read back"),
        "{}",
        stderr(&verify)
    );

    // A recipe whose listed size was changed: its signature no longer holds.
    let recipe = files_under(&r.path().join("backups/app"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let text = std::fs::read_to_string(&recipe).unwrap();
    let bytes = format!("\"bytes\":{},", archive.len());
    assert!(text.contains(&bytes));
    std::fs::write(
        &recipe,
        text.replace(&bytes, &format!("\"bytes\":{},", archive.len() + 1)),
    )
    .unwrap();
    let altered = r.cat(&url, "app");
    assert_eq!(code(&altered), Some(3), "{}", stderr(&altered));
    assert!(stderr(&altered).contains("altered"), "{}", stderr(&altered));
    assert!(altered.stdout.is_empty());
}

/// A repository sealed by a passphrase: pushes and reads need the passphrase alone (from a
/// file or WEIR_PASSPHRASE), a wrong one reads nothing, and a repository keeps the mode it was
/// made with. By hand, the passphrase opens the repository's identity, with which the
/// restore-by-hand recipe rebuilds the stream.
#[test]
fn a_passphrase_repository_reads_back_with_the_passphrase_alone() {
    let c = cluster();
    c.create_db("dd_pass", SCHEMA);
    let mut r = Repo::new();
    let url = r.url();
    let file = r.dir.path().join("pass");
    std::fs::write(&file, "correct horse battery staple\n").unwrap();
    let pass = file.to_str().unwrap();
    let env = [("WEIR_PASSPHRASE", "correct horse battery staple")];
    let code = |o: &std::process::Output| o.status.code();
    let archive = extract("dd_pass", &[]);
    let push = [
        "push",
        &url,
        "app",
        "--passphrase-file",
        pass,
        "--key-file",
        &r.key,
    ];
    run_ok(stage("weir-dedup", &push, &archive, &[]), "push");
    let again = ["push", &url, "app", "--key-file", &r.key];
    run_ok(stage("weir-dedup", &again, &archive, &env), "push again");
    let listed = r.listed(&url);
    assert!(listed[1]["added_bytes"].as_u64().unwrap() * 100 <= archive.len() as u64);

    let cat = ["cat", &url, "app", "--passphrase-file", pass];
    let back = run_ok(stage("weir-dedup", &cat, b"", &[]), "cat");
    assert!(back == archive, "the stream came back different");
    run_ok(
        stage("weir-dedup", &["verify", "--deep", &url], b"", &env),
        "verify --deep",
    );

    let wrong = [("WEIR_PASSPHRASE", "correct horse")];
    let refused = stage("weir-dedup", &["cat", &url, "app"], b"", &wrong);
    assert_eq!(code(&refused), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("wrong passphrase"),
        "{}",
        stderr(&refused)
    );
    assert!(refused.stdout.is_empty());
    let to_recipients = r.push(&url, "app", &archive);
    assert_eq!(code(&to_recipients), Some(2), "{}", stderr(&to_recipients));
    assert!(stderr(&to_recipients).contains("sealed by a passphrase"));
    let other = Repo::new();
    run_ok(
        other.push(&other.url(), "app", &archive),
        "push to recipients",
    );
    let other_url = other.url();
    let mixed = [
        "push",
        &other_url,
        "app",
        "--passphrase-file",
        pass,
        "--key-file",
        &other.key,
    ];
    let mixed = stage("weir-dedup", &mixed, &archive, &[]);
    assert_eq!(code(&mixed), Some(2), "{}", stderr(&mixed));
    assert!(stderr(&mixed).contains("encrypts to recipients"));
    assert_eq!(r.listed(&url).len(), 2, "a refused push left a backup");

    // keys/identity.age is a passphrase-encrypted age file (weir-encrypt opens it here; age
    // asks for the passphrase on a terminal); the identity in it reads every chunk.
    let sealed = std::fs::read(r.path().join("keys/identity.age")).unwrap();
    let opened = ["-d", "--passphrase-file", pass];
    let identity = run_ok(
        stage("weir-encrypt", &opened, &sealed, &[]),
        "open identity",
    );
    let at = r.dir.path().join("repo-identity.txt");
    std::fs::write(&at, identity).unwrap();
    r.identity = at.display().to_string();
    by_hand(&r, &archive, listed[0]["backup"].as_str().unwrap());

    // --repack opens and seals with the passphrase alone; a wrong one changes nothing.
    let repack = [
        url.as_str(),
        "--keep-last",
        "1",
        "--repack",
        "--max-unused",
        "0",
    ];
    let refused = stage("weir-prune", &[&repack[..], &["-p"]].concat(), b"", &wrong);
    assert_eq!(code(&refused), Some(1), "{}", stderr(&refused));
    assert_eq!(r.listed(&url).len(), 2, "a refused repack removed a backup");
    let pruned = stage("weir-prune", &[&repack[..], &["-p"]].concat(), b"", &env);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let back = run_ok(stage("weir-dedup", &cat, b"", &[]), "cat after the repack");
    assert!(
        back == archive,
        "the stream came back different after the repack"
    );
}

/// A directory repository on a full disk (a small tmpfs; where mounting is not allowed, a
/// file-size limit gives EFBIG through the same writes): the push fails with one line naming
/// the cause, leaves no backup, no lock and no partial file, the earlier backup still reads
/// back whole, and once there is room again the same push lands. (`.lock` is the directory
/// repository's writers' lock file, FORMAT.md section 11, which stays.)
#[test]
fn a_full_disk_fails_the_push_and_loses_nothing() {
    let r = Repo::new();
    let mnt = r.path();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    let url = r.url();
    let small = crate::storage::noise(2 << 20, 3);
    let big = crate::storage::noise(12 << 20, 4);
    run_ok(r.push(&url, "small", &small), "push");
    let o = if mounted {
        r.push(&url, "big", &big)
    } else {
        let mut args = vec![bin("weir-dedup").display().to_string()];
        args.extend(r.push_args(&url, "big").iter().map(|a| a.to_string()));
        let cmd = format!("trap '' XFSZ; ulimit -f 256; exec {}", args.join(" "));
        run_with_input(std::process::Command::new("sh").args(["-c", &cmd]), &big)
    };
    let files: Vec<String> = files_under(&mnt)
        .iter()
        .map(|p| p.strip_prefix(&mnt).unwrap().display().to_string())
        .collect();
    let verified = stage(
        "weir-dedup",
        &["verify", "--deep", "-i", &r.identity, &url],
        b"",
        &[],
    );
    let back = r.cat(&url, "small");
    let remount = |size: &str| {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&mnt)
            .status()
            .unwrap()
    };
    if mounted {
        remount("64m");
    }
    let retried = r.push(&url, "big", &big);
    let again = r.cat(&url, "big");
    if mounted {
        let _ = std::process::Command::new("umount").arg(&mnt).status();
    }
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("No space left on device") || err.contains("File too large"),
        "{err}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("backups/big") || f.starts_with("locks/")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(".tmp")
            || (f != ".lock" && f.rsplit('/').next().unwrap().starts_with('.'))),
        "a partial file was left: {files:?}"
    );
    run_ok(verified, "verify --deep after the failed push");
    assert!(
        run_ok(back, "cat") == small,
        "the earlier backup came back different"
    );
    run_ok(retried, "push once there is room");
    assert!(
        run_ok(again, "cat") == big,
        "the retried backup came back different"
    );
}

/// docs/restore-by-hand.md's recipe for a weir-dedup backup, run as written there (its paths
/// replaced; the b3sum line left out where b3sum is not installed): the stream it rebuilds is
/// the archive pushed, and the BLAKE3 it prints is the stream's.
fn by_hand(r: &Repo, archive: &[u8], backup: &str) {
    let recipe = guide_block("docs/restore-by-hand.md", 3);
    let recipe = recipe.as_str();
    let (name, stamp) = backup.split_once('@').unwrap();
    let out = r.dir.path().join("rebuilt.weir");
    let scratch = r.dir.path().join("opened-packs");
    let has_b3sum = tool("sh", &["-c", "command -v b3sum"], b"")
        .status
        .success();
    let script: String = recipe
        .lines()
        .filter(|l| has_b3sum || !l.starts_with("b3sum"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "backups/prod/20261201T030000.000000Z.json",
            &format!("backups/{name}/{stamp}.json"),
        )
        .replace("repo/", &format!("{}/", r.path().display()))
        .replace("mkdir -p packs", &format!("mkdir -p {}", scratch.display()))
        .replace(
            "\"packs/$pack\"",
            &format!("\"{}/$pack\"", scratch.display()),
        )
        .replace("key.txt", &r.identity)
        .replace(
            "moves.json",
            &scratch.join("moves.json").display().to_string(),
        )
        .replace("prod.weir", &out.display().to_string());
    let printed = tool("bash", &["-c", &format!("set -eo pipefail\n{script}")], b"");
    assert!(printed.status.success(), "{script}\n{}", stderr(&printed));
    assert!(
        std::fs::read(&out).unwrap() == archive,
        "the recipe rebuilt another stream"
    );
    let digest = blake3::hash(archive).to_hex().to_string();
    assert!(
        String::from_utf8_lossy(&printed.stdout).contains(&digest),
        "{}",
        String::from_utf8_lossy(&printed.stdout)
    );
}

/// `weir-prune` on a repository: a dry run removes nothing; a push's lock stops it (a stale
/// one does not); then it keeps the newest backup, removes the others and every pack only
/// they named, and what is kept still reads back whole. A prune's lock stops a push.
#[test]
fn prune_keeps_what_the_policy_keeps_and_never_runs_beside_a_push() {
    let c = cluster();
    c.create_db("dd_prune", SCHEMA);
    let r = Repo::new();
    let url = r.url();
    let mut last = Vec::new();
    // The middle backup is a stream of its own (noise, not an archive), so its pack and its
    // batch of lists are wholly unneeded once only the last is kept. Two archives of one
    // database share small chunks (the end-of-archive blocks of a size that recurs), which
    // keep a pack they are in, whole: prune does not rewrite packs.
    let noise = crate::storage::noise(3 << 20, 5);
    for day in 0..3 {
        c.psql(
            "dd_prune",
            &format!("UPDATE big SET v = 'day {day}' WHERE id % 50 = {day}"),
        );
        last = if day == 1 {
            noise.clone()
        } else {
            extract("dd_prune", &[])
        };
        run_ok(r.push(&url, "app", &last), "push");
    }
    let chunk_files = || stored_objects(&r).len();
    let before = chunk_files();
    let prune = |args: &[&str]| {
        let mut a = vec![url.as_str(), "--keep-last", "1"];
        a.extend_from_slice(args);
        stage("weir-prune", &a, b"", &[])
    };
    let dry = run_ok(prune(&["--dry-run"]), "prune --dry-run");
    let dry = String::from_utf8_lossy(&dry).to_string();
    assert_eq!(dry.matches("would remove").count(), 2, "{dry}");
    assert_eq!(chunk_files(), before);

    let locks = r.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = |name: &str, age: u64| {
        let time = crate::harness::now_unix() - age;
        let body =
            format!("{{\"kind\":\"push\",\"host\":\"elsewhere\",\"pid\":7,\"time\":{time}}}");
        std::fs::write(locks.join(name), body).unwrap();
    };
    lock("push-1-aaaaaaaa.json", 10);
    let blocked = prune(&[]);
    assert_eq!(blocked.status.code(), Some(1), "{}", stderr(&blocked));
    assert!(
        stderr(&blocked).contains("locked by a push on elsewhere"),
        "{}",
        stderr(&blocked)
    );
    assert_eq!(chunk_files(), before);
    std::fs::remove_file(locks.join("push-1-aaaaaaaa.json")).unwrap();
    lock("push-2-bbbbbbbb.json", 7200);

    let done = prune(&[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stderr(&done).contains("1 backups kept, 2 removed"),
        "{}",
        stderr(&done)
    );
    assert!(
        !locks.join("push-2-bbbbbbbb.json").exists(),
        "a stale lock stayed"
    );
    assert!(
        chunk_files() < before,
        "no pack was removed: {}",
        stderr(&done)
    );
    assert_eq!(r.listed(&url).len(), 1);
    assert!(run_ok(r.cat(&url, "app"), "cat") == last);
    run_ok(
        stage(
            "weir-dedup",
            &["verify", "--deep", "-i", &r.identity, &url],
            b"",
            &[],
        ),
        "verify --deep after prune",
    );

    // A prune cut short after removing a recipe and before its chunks (recipes go first):
    // the repository still verifies, and the next prune removes what no recipe names.
    c.psql("dd_prune", "UPDATE big SET v = 'cut' WHERE id % 7 = 0");
    let older = extract("dd_prune", &[]);
    run_ok(r.push(&url, "app", &older), "push");
    run_ok(r.push(&url, "app", &last), "push");
    // The recipes, oldest first: the kept one, `older`, the new one (the same stream as the
    // kept). Only `older` names chunks of its own; its recipe goes by hand.
    let recipes: Vec<PathBuf> = files_under(&r.path().join("backups/app"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(recipes.len(), 3);
    let with_orphans = chunk_files();
    std::fs::remove_file(&recipes[1]).unwrap();
    run_ok(
        stage("weir-dedup", &["verify", &url], b"", &[]),
        "verify after a cut prune",
    );
    let again = prune(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        chunk_files() < with_orphans,
        "the next prune left the orphaned chunks"
    );
    assert!(run_ok(r.cat(&url, "app"), "cat") == last);

    std::fs::write(
        locks.join("prune-3-cccccccc.json"),
        format!(
            "{{\"kind\":\"prune\",\"host\":\"elsewhere\",\"pid\":8,\"time\":{}}}",
            crate::harness::now_unix()
        ),
    )
    .unwrap();
    let refused = r.push(&url, "app", &last);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("locked by a prune"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(r.listed(&url).len(), 1);
}

/// The local chunk list: a second push reads it from the cache; a prune makes every cache
/// stale, so a push after it uploads again the chunks the prune removed, and its backup reads
/// back whole (trusting the old cache, it would name chunks that are gone).
#[test]
fn a_prune_makes_every_cached_chunk_list_stale() {
    let c = cluster();
    c.create_db("dd_cache", SCHEMA);
    let r = Repo::new();
    let url = r.url();
    let cache = r.dir.path().join("cache").display().to_string();
    let env = [("WEIR_CACHE_DIR", cache.as_str())];
    let push = |archive: &[u8]| {
        let out = stage("weir-dedup", &r.push_args(&url, "app"), archive, &env);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let a = extract("dd_cache", &[]);
    assert!(!push(&a).contains("from the cache"));
    c.psql("dd_cache", "UPDATE big SET v = 'rewritten ' || id");
    let b = extract("dd_cache", &[]);
    assert!(push(&b).contains("(the chunk list from the cache)"));
    let pruned = stage("weir-prune", &[url.as_str(), "--keep-last", "1"], b"", &[]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    let said = push(&a);
    assert!(!said.contains("from the cache"), "{said}");
    assert!(
        run_ok(r.cat(&url, "app"), "cat") == a,
        "the backup after the prune came back different"
    );
}

/// Two pushes at once into one repository (they share chunks, and may store the same one
/// together): both succeed, and each backup reads back whole.
#[test]
fn two_pushes_at_once_both_land_whole() {
    let c = cluster();
    c.create_db("dd_two", SCHEMA);
    let r = Repo::new();
    let url = r.url();
    let a = extract("dd_two", &[]);
    c.psql("dd_two", "UPDATE small SET label = 'changed'");
    let b = extract("dd_two", &[]);
    std::thread::scope(|s| {
        let one = s.spawn(|| r.push(&url, "one", &a));
        let two = s.spawn(|| r.push(&url, "two", &b));
        for p in [one, two] {
            let out = p.join().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    });
    assert!(run_ok(r.cat(&url, "one"), "cat one") == a);
    assert!(run_ok(r.cat(&url, "two"), "cat two") == b);
    let verified = stage("weir-dedup", &["verify", &url], b"", &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
}

/// The lines a version 1 fixture stream holds: `seq 1 N | awk '{print $1, ($1*$1) % 9973}'`.
fn v1_stream(n: u64) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{i} {}\n", i * i % 9973).into_bytes())
        .collect()
}

/// A repository made by weir before version 2 (tests/fixtures/dedup-v1: two pushes by the
/// version 1 weir-dedup, of `v1_stream(60000)` and `v1_stream(70000)`, sharing a chunk): both
/// backups read back byte for byte, verify deeply, and prune; a push into it is refused with
/// a line that says why (exit 2) and changes nothing.
#[test]
fn a_version_1_repository_still_reads_verifies_and_prunes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dedup-v1");
    let dir = tempfile::tempdir().unwrap();
    let copy = tool(
        "cp",
        &[
            "-a",
            &format!("{}/.", fixture.display()),
            &dir.path().display().to_string(),
        ],
        b"",
    );
    assert!(copy.status.success(), "{}", stderr(&copy));
    let key_txt = std::fs::read_to_string(dir.path().join("key.txt")).unwrap();
    let recipient = key_txt
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let r = Repo {
        identity: dir.path().join("key.txt").display().to_string(),
        recipient,
        key: dir.path().join("dedup.key").display().to_string(),
        dir,
    };
    let url = r.url();
    let listed = r.listed(&url);
    assert_eq!(listed.len(), 2);
    for (i, n) in [60000, 70000].into_iter().enumerate() {
        let which = listed[i]["backup"].as_str().unwrap();
        let back = run_ok(r.cat(&url, which), "cat a version 1 backup");
        assert!(back == v1_stream(n), "{which} came back different");
    }
    let deep = ["verify", "--deep", "-i", &r.identity, &url];
    run_ok(stage("weir-dedup", &deep, b"", &[]), "verify --deep");

    let chunks = files_under(&r.path().join("chunks")).len();
    let refused = r.push(&url, "app", &v1_stream(10));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("version 1 repository"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(r.listed(&url).len(), 2);
    assert!(
        !r.path().join("packs").exists(),
        "the refused push stored a pack"
    );

    let pruned = stage("weir-prune", &[url.as_str(), "--keep-last", "1"], b"", &[]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(files_under(&r.path().join("chunks")).len() < chunks);
    let back = run_ok(r.cat(&url, "app"), "cat after prune");
    assert!(back == v1_stream(70000));
    run_ok(
        stage("weir-dedup", &deep, b"", &[]),
        "verify --deep after prune",
    );
}

/// A push after a prune names no pack the prune removed. Backups A (S then X) and B (S then
/// Y) share the lists of S, so A's batch of lists stays for B while the packs holding only X
/// go with A; A's stream pushed again must store X anew rather than reuse X's lists, which
/// name those packs.
#[test]
fn a_push_after_a_prune_names_no_pack_the_prune_removed() {
    let r = Repo::new();
    let url = r.url();
    let (a, _) = r.push_two_sharing(&url, (4 << 20, 21), (24 << 20, 41), (24 << 20, 61));
    let packs = || files_under(&r.path().join("packs")).len();
    let before = packs();
    let pruned = stage("weir-prune", &[url.as_str(), "--keep-last", "1"], b"", &[]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        packs() < before,
        "the prune removed no pack: {}",
        stderr(&pruned)
    );
    run_ok(r.push(&url, "app", &a), "push A again");
    assert!(
        run_ok(r.cat(&url, "app"), "cat") == a,
        "A pushed again came back different"
    );
    run_ok(
        stage(
            "weir-dedup",
            &["verify", "--deep", "-i", &r.identity, &url],
            b"",
            &[],
        ),
        "verify --deep",
    );
}

/// The sum of the sizes of the repository's packs.
fn pack_bytes(r: &Repo) -> u64 {
    files_under(&r.path().join("packs"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// `weir-prune --repack`: backups A (S then X) and B (S then Y) share S, whose pack also holds
/// the start of X. Keeping B, a plain prune keeps that pack whole and says so; --repack
/// without keys is refused before anything changes, and with recipients the identity cannot
/// open it stops before anything moves; with the right keys, the pack is rewritten with
/// S alone and the bytes of X are freed. B reads back whole (by weir-dedup and by hand), the
/// repository verifies deeply, is version 3, and A pushed again deduplicates against the
/// moved chunks. Old packs left behind (a repack cut short after its moves) still read, and
/// the next prune removes them. A second repack keeps the first one's moves that kept lists
/// still need, and leaves one moves file.
#[test]
fn prune_repack_frees_what_partly_used_packs_hold() {
    let r = Repo::new();
    let url = r.url();
    let (a, b) = r.push_two_sharing(&url, (3 << 20, 21), (12 << 20, 41), (12 << 20, 61));
    let prune = |args: &[&str]| {
        let mut all = vec![url.as_str(), "--keep-last", "1"];
        all.extend_from_slice(args);
        stage("weir-prune", &all, b"", &[])
    };
    let plain = prune(&[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(
        stderr(&plain).contains("(--repack rewrites them)"),
        "{}",
        stderr(&plain)
    );
    let (before, objects) = (pack_bytes(&r), stored_objects(&r));
    let keyless = prune(&["--repack"]);
    assert_eq!(keyless.status.code(), Some(2), "{}", stderr(&keyless));
    assert_eq!(
        stored_objects(&r),
        objects,
        "a refused repack changed the repository"
    );

    // Recipients other than the repository's: the new packs are opened with the identity
    // before anything moves, and the repack stops there.
    let (_, stranger) = keypair(r.dir.path(), "stranger.txt");
    let wrong = stage(
        "weir-prune",
        &r.repack_args(&url, "1", Some(&stranger)),
        b"",
        &[],
    );
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("nothing was moved"),
        "{}",
        stderr(&wrong)
    );
    assert!(run_ok(r.cat(&url, "app"), "cat B after a refused repack") == b);
    let kept_packs = r.dir.path().join("packs-before");
    copy_tree(&r.path().join("packs"), &kept_packs);
    let done = stage("weir-prune", &r.repack_args(&url, "1", None), b"", &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stderr(&done).contains("1 packs rewritten"),
        "{}",
        stderr(&done)
    );
    let after = pack_bytes(&r);
    assert!(
        before - after > 4 << 20,
        "the repack freed {} of {before} bytes",
        before - after
    );
    let config = std::fs::read_to_string(r.path().join("config.json")).unwrap();
    assert!(config.contains("\"version\": 3"), "{config}");
    assert!(run_ok(r.cat(&url, "app"), "cat B") == b);
    let deep = ["verify", "--deep", "-i", r.identity.as_str(), url.as_str()];
    run_ok(stage("weir-dedup", &deep, b"", &[]), "verify --deep");
    let stamp = r.listed(&url)[0]["backup"].as_str().unwrap().to_string();
    by_hand(&r, &b, &stamp);

    // The old pack put back, as a repack cut short after its moves would leave it.
    copy_tree(&kept_packs, &r.path().join("packs"));
    assert!(run_ok(r.cat(&url, "app"), "cat B with the old pack back") == b);
    let again = prune(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    // It removes the old pack, and the packs the refused repack had sealed for a stranger.
    assert!(
        !stderr(&again).contains("; 0 of "),
        "the old pack stayed: {}",
        stderr(&again)
    );
    assert_eq!(pack_bytes(&r), after);

    let pushed = r.push(&url, "app", &a);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(run_ok(r.cat(&url, "app"), "cat A") == a);
    run_ok(
        stage("weir-dedup", &deep, b"", &[]),
        "verify --deep after A",
    );

    // A second repack keeps the first one's moves that kept lists still need: B's lists name
    // S where it was before the first repack. Under another name, F1 (G then H) is dropped
    // for two backups of G alone, which leaves the pack that holds G's end and H's start
    // partly needed.
    let g = crate::storage::noise(6 << 20, 81);
    let f1 = [g.clone(), crate::storage::noise(6 << 20, 101)].concat();
    for f in [&f1, &g, &g] {
        run_ok(r.push(&url, "other", f), "push under another name");
    }
    let second = stage("weir-prune", &r.repack_args(&url, "2", None), b"", &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("packs rewritten"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        files_under(&r.path().join("moves")).len(),
        1,
        "older moves stayed"
    );
    assert!(run_ok(r.cat(&url, &format!("app@{}", &stamp[4..])), "cat B") == b);
    assert!(run_ok(r.cat(&url, "other"), "cat G") == g);
    run_ok(
        stage("weir-dedup", &deep, b"", &[]),
        "verify --deep after the second repack",
    );
}

/// Copies the files under `from` into `to`, keeping their paths (what is there stays).
fn copy_tree(from: &Path, to: &Path) {
    for f in files_under(from) {
        let dst = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if !dst.exists() {
            std::fs::copy(&f, &dst).unwrap();
        }
    }
}
