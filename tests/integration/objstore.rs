//! A real S3-compatible server for the storage tests: `s3s-fs` (which checks SigV4 signatures)
//! on a free loopback port over a temporary directory. One shared instance serves the tests
//! that only need a bucket; fault tests start their own, so they can stop and restart it.

use crate::harness::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "weirtest";
pub const SECRET_KEY: &str = "weirtest-secret-key";

pub struct S3Server {
    pub root: PathBuf,
    pub port: u16,
    child: Mutex<Option<Child>>,
    _dir: tempfile::TempDir,
}

/// The s3s-fs binary: $WEIR_S3S_FS, then PATH, then cargo's bin directory.
fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_S3S_FS") {
        return PathBuf::from(p);
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v s3s-fs"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.unwrap_or_else(|| {
        let home = std::env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
        Path::new(&home).join("bin/s3s-fs")
    })
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let s = S3Server {
            root: dir.path().to_path_buf(),
            port: free_port(),
            child: Mutex::new(None),
            _dir: dir,
        };
        s.resume();
        s
    }

    /// Starts (or restarts) the server process on the same port and directory.
    pub fn resume(&self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (cargo install s3s-fs --version 0.14.1 --features binary --locked)", s3s_fs().display()));
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (as a crash would), leaving its data in place.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new, empty bucket (a directory under the server's root).
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
        name.to_string()
    }

    /// The environment a client needs: endpoint and credentials, nothing from the host.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            // No instance-metadata lookups, no shared config files from the host.
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
        ]
    }

    /// Runs a weir storage binary against this server.
    pub fn run(&self, name: &str, args: &[&str], input: &[u8]) -> Output {
        self.run_env(name, args, input, &[])
    }

    pub fn run_env(
        &self,
        name: &str,
        args: &[&str],
        input: &[u8],
        extra: &[(&str, &str)],
    ) -> Output {
        let mut env = self.env();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut cmd = Command::new(crate::harness::bin(name));
        cmd.args(args);
        crate::harness::run_with_input(crate::harness::scrub(&mut cmd, &env), input)
    }

    /// A command for a storage binary, environment set, for tests that drive it by hand.
    pub fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::harness::bin(name));
        cmd.args(args);
        crate::harness::scrub(&mut cmd, &self.env());
        cmd
    }

    /// The bytes the server stored for an object (s3s-fs keeps them as plain files).
    pub fn stored(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }

    /// Multipart uploads still open (s3s-fs keeps one marker file each in its root).
    pub fn open_uploads(&self) -> usize {
        std::fs::read_dir(&self.root)
            .unwrap()
            .filter(|e| {
                let n = e
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .to_string();
                n.contains("upload")
            })
            .count()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<S3Server> = OnceLock::new();

/// The server shared by every test that does not stop it. Statics are never dropped, so a
/// watcher kills it when the test process ends.
pub fn shared() -> &'static S3Server {
    SHARED.get_or_init(|| {
        let s = S3Server::start();
        let pid = s.child.lock().unwrap().as_ref().unwrap().id();
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill {pid} 2>/dev/null; rm -rf {}",
                std::process::id(),
                s.root.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        s
    })
}
