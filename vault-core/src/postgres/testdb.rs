//! A throwaway PostgreSQL 15 cluster for tests: `initdb` into a temporary directory, the
//! server on a Unix socket there, stopped when dropped; fresh databases in it. As root (CI), the cluster
//! runs as the `postgres` user, which the packages create.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Connect, Pool};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster, stopped (immediately) on drop.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
}

fn as_owner(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run ({e}); install postgresql-15 (`.ci/run` does)")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Starts a cluster.
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres").arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let data = dir.path().join("data");
        let mut init = as_owner("initdb");
        init.arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "vault", "--no-sync", "-E", "UTF8"]);
        run(init, "initdb");
        let mut start = as_owner("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-k {} -c listen_addresses='' -c max_connections=200",
                dir.path().display()
            ));
        start.args(["-w", "start"]);
        run(start, "pg_ctl start");
        Self { dir }
    }

    /// The socket directory.
    pub(crate) fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A connector to database `db`.
    pub(crate) fn connect(&self, db: &str) -> Connect {
        let mut cfg = postgres::Config::new();
        cfg.host_path(self.socket_dir()).user("vault").dbname(db);
        Arc::new(move || cfg.connect(postgres::NoTls))
    }

    /// A fresh, empty database.
    pub(crate) fn database(&self) -> Connect {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
        let mut admin = (self.connect("postgres"))().unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.connect(&name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = as_owner("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}

/// A migrated pool on a fresh cluster (kept alive by the returned `Cluster`).
pub(crate) fn fresh_pool(max: usize) -> (Pool, Cluster) {
    let cluster = Cluster::start();
    let pool = Pool::new(cluster.database(), max);
    super::migrate(&pool).unwrap();
    (pool, cluster)
}
