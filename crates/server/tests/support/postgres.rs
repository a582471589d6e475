//! A real PostgreSQL cluster for tests: `initdb` and `pg_ctl` in a temporary directory,
//! listening on a free loopback port, stopped (immediately) when dropped.
//!
//! The binaries are looked up in PATH, then in /usr/lib/postgresql/*/bin (Debian's
//! `postgresql`). Without them a test is skipped with a loud message, unless CI is set:
//! in CI their absence fails the test. `initdb` refuses to run as root, so as root the
//! cluster runs as `nobody` (through `setpriv`), in a directory given to `nobody`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_nobody: bool,
    databases: std::sync::atomic::AtomicUsize,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                // The directory the binaries really live in (PATH may hold symlinks to two
                // of them), where createdb is too.
                let real = std::fs::canonicalize(dir.join("pg_ctl")).ok()?;
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Postgres {
    /// Starts a cluster, or `None` (after saying so loudly) when PostgreSQL is not
    /// installed and CI is not set. Panics in CI without it, or when it fails to start.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = find_bin_dir() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL (initdb, pg_ctl) is not installed and CI is set: install \
                     Debian's postgresql (.ci/run does)"
                );
            }
            eprintln!(
                "\n\n*** SKIPPED: PostgreSQL (initdb, pg_ctl) is not installed, in PATH or \
                 /usr/lib/postgresql/*/bin: this test did NOT run against PostgreSQL. \
                 Install Debian's postgresql. ***\n"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .expect("a temporary directory");
        // /proc/self belongs to the process's effective user.
        let as_nobody = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or(0)
                == 0
        };
        if as_nobody {
            let status = Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let pg = Postgres {
            bin,
            dir,
            port: free_port(),
            as_nobody,
            databases: std::sync::atomic::AtomicUsize::new(0),
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-U",
                "ferry",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            pg.port
        );
        let log = pg.dir.path().join("postgres.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("UTF-8 path"),
                "-l",
                log.to_str().expect("UTF-8 path"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        Some(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{tool} could not run: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("ferry{n}");
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "ferry", &name],
        );
        format!("postgres://ferry@127.0.0.1:{}/{name}", self.port)
    }

    /// The directory the cluster lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The statements PostgreSQL refused, for the failing test's output.
            let log =
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
            for line in log.lines().filter(|l| {
                l.contains("ERROR:") || l.contains("STATEMENT:") || l.contains("DETAIL:")
            }) {
                eprintln!("postgres: {line}");
            }
        }
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .output();
    }
}
