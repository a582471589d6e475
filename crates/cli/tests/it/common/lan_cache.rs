//! A `ferry cache` child process (the LAN cache) on 127.0.0.1 with a free port, killed when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use super::{ferry, s};

pub struct LanCache {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as it printed it.
    pub url: String,
}

impl LanCache {
    /// A cache of `upstream` (whose CA is `ca`) keeping its objects in `dir`, within
    /// `max_bytes` if given.
    pub fn start(upstream: &str, ca: &Path, dir: &Path, max_bytes: Option<u64>) -> LanCache {
        let mut command = ferry();
        command.args(["cache", "--upstream", upstream, "--upstream-ca", s(ca)]);
        command.args(["--dir", s(dir), "--listen", "127.0.0.1:0"]);
        if let Some(max) = max_bytes {
            command.args(["--max-bytes", &max.to_string()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferry cache");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("an http:// address")
            .to_owned();
        LanCache { child, url }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for LanCache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
