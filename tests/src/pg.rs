//! PostgreSQL 15 clusters for the scale-out tests, from Debian's packages: `initdb` into a
//! temporary directory, the server on a loopback port (as the `postgres` user when the
//! tests run as root), stopped on drop. A cluster can be killed (`kill -9` of the
//! postmaster), restarted, and made the synchronous standby of another (`pg_basebackup -R`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::peers::{free_port, is_root};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running (or stopped) cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    /// Its loopback port.
    pub port: u16,
    /// Stopped (immediately) and removed if a signal stops the tool running it.
    _stopped_on_signal: crate::stop::OnStop,
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

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run ({e}); install postgresql-15 (`.ci/run` does)")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    fn new_dir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("vault-pg")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("-R").arg("postgres").arg(dir.path());
            run(c, "chown");
        }
        dir
    }

    /// A new cluster with database `vault`, started.
    pub fn start() -> Self {
        let dir = Self::new_dir();
        let data = dir.path().join("data");
        let mut init = as_owner("initdb");
        init.arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "vault", "--no-sync", "-E", "UTF8"]);
        run(init, "initdb");
        let conf = String::from(
            "listen_addresses = '127.0.0.1'\nmax_connections = 300\nwal_level = replica\n\
             max_wal_senders = 5\nhot_standby = on\nfsync = on\n",
        );
        append(&data.join("postgresql.conf"), &conf);
        append(
            &data.join("pg_hba.conf"),
            "host replication vault 127.0.0.1/32 trust\n",
        );
        let c = Self {
            port: free_port().unwrap_or_else(|e| panic!("{e}")),
            _stopped_on_signal: stopped_on_signal(dir.path()),
            dir,
        };
        c.run_server();
        let mut create = Command::new(Path::new(BIN).join("createdb"));
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &c.port.to_string(),
            "-U",
            "vault",
            "vault",
        ]);
        run(create, "createdb");
        c
    }

    /// From now on every commit waits for the standby named `name` (which must be streaming:
    /// `standby_of`).
    pub fn require_sync_standby(&self, name: &str) {
        self.psql(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{name}'"
        ));
        self.psql("SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(&format!(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'"
        )) != "sync"
        {
            assert!(
                Instant::now() < deadline,
                "standby {name} never became synchronous"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`) named `name`, started.
    pub fn standby_of(primary: &PgCluster, name: &str) -> Self {
        let dir = Self::new_dir();
        let data = dir.path().join("data");
        let mut base = as_owner("pg_basebackup");
        base.arg("-D")
            .arg(&data)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "vault",
                "-R",
            ])
            // A fast checkpoint: the default (spread) waits out most of a checkpoint interval.
            .args(["-X", "stream", "--no-sync", "--checkpoint=fast"]);
        run(base, "pg_basebackup");
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user=vault application_name={name}'\n",
                primary.port
            ),
        );
        let c = Self {
            port: free_port().unwrap_or_else(|e| panic!("{e}")),
            _stopped_on_signal: stopped_on_signal(dir.path()),
            dir,
        };
        c.run_server();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (after `kill` or `stop`).
    pub fn run_server(&self) {
        let mut start = as_owner("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!("-p {} -k {}", self.port, self.dir.path().display()))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `kill -9` of the postmaster and its children (a lost machine).
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("pkill")
                .args(["-9", "-P", &pid.to_string()])
                .status();
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.accepts() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fast, clean stop.
    pub fn stop(&self) {
        let mut stop = as_owner("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        let _ = stop.output();
    }

    /// `pg_ctl promote` (a standby becomes the primary).
    pub fn promote(&self) {
        let mut p = as_owner("pg_ctl");
        p.arg("-D").arg(self.data()).args(["-w", "promote"]);
        run(p, "pg_ctl promote");
    }

    /// Whether it accepts connections.
    pub fn accepts(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// The URL of database `vault` here.
    pub fn url(&self) -> String {
        format!(
            "postgres://vault@127.0.0.1:{}/vault?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL with psql; its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(Path::new(BIN).join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "vault",
                "-d",
                "vault",
            ])
            .args(["-tAc", sql])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Bytes on disk of the database `vault`.
    pub fn database_size(&self) -> u64 {
        self.psql("SELECT pg_database_size('vault')")
            .parse()
            .unwrap_or(0)
    }
}

/// On a signal: the cluster in `dir` stopped at once, then its directory removed.
fn stopped_on_signal(dir: &Path) -> crate::stop::OnStop {
    let dir = dir.to_path_buf();
    crate::stop::on_stop(move || {
        let mut stop = as_owner("pg_ctl");
        stop.arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&dir);
    })
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = as_owner("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
    }
}
