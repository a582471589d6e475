//! A real S3 server for the tests: `s3s-fs` (which checks SigV4 signatures) on a loopback
//! port, its objects as files under a directory, stopped when dropped.
//!
//! `s3s-fs` comes from `cargo install s3s-fs --version 0.14.1 --features binary --locked
//! --root target/tools` (`.ci/run` does it); without it a test says so and passes, except
//! under CI, where its absence fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::wait_for;

pub const ACCESS_KEY: &str = "ferrytest";
pub const SECRET_KEY: &str = "ferry-test-secret-key-0123456789";
pub const BUCKET: &str = "fleet";

/// Where `s3s-fs` is: `$S3S_FS`, the repository's `target/tools/bin`, or `PATH`.
fn s3s_fs() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return Some(path.into());
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/s3s-fs");
    if tools.exists() {
        return Some(tools);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|p| p.exists())
    })
}

/// A running `s3s-fs` on a loopback port, its objects as files under `root/BUCKET/`.
pub struct S3 {
    child: Child,
    pub addr: SocketAddr,
    root: PathBuf,
}

/// A PostgreSQL cluster and an S3 server in `root/s3`, or `None` (said loudly) when either
/// cannot start outside CI.
pub fn postgres_and_s3(root: &Path) -> Option<(super::postgres::Postgres, S3)> {
    let pg = super::postgres::Postgres::start()?;
    let s3 = S3::start(&root.join("s3"))?;
    Some((pg, s3))
}

impl S3 {
    /// Starts it, or `None` (said loudly) when the binary is absent outside CI.
    pub fn start(root: &Path) -> Option<S3> {
        let Some(binary) = s3s_fs() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "s3s-fs is missing under CI: .ci/run installs it into target/tools"
            );
            eprintln!(
                "SKIPPED: s3s-fs is not installed (cargo install s3s-fs --version 0.14.1 \
                 --features binary --locked --root target/tools)"
            );
            return None;
        };
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let s3 = S3 {
            child,
            addr,
            root: root.to_owned(),
        };
        assert!(
            wait_for(10, || TcpStream::connect(addr).is_ok()),
            "s3s-fs did not listen on {addr}"
        );
        Some(s3)
    }

    /// The `--store` URL, with `secret` as the secret key.
    pub fn url_with(&self, secret: &str) -> String {
        format!(
            "s3://{BUCKET}?endpoint=http://{}&region=us-east-1&access_key_id={ACCESS_KEY}&secret_access_key={secret}",
            self.addr
        )
    }

    pub fn url(&self) -> String {
        self.url_with(SECRET_KEY)
    }

    /// The stored object `key` (s3s-fs keeps each as a file).
    pub fn object(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// The keys under `prefix/` whose names end with `suffix`.
    pub fn find(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let dir = self.root.join(BUCKET).join(prefix);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .map(|n| format!("{prefix}/{n}"))
            .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
