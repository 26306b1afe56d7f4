//! PostgreSQL 15 + pgcrypto as a database-only baseline: the same citizens with eight fields
//! sealed by `encrypt_iv` (AES-256-CBC), and one SQL function that checks the purpose,
//! inserts an audit row and decrypts the eight fields in the same transaction
//! (`synchronous_commit = on`: durable like the vault's release), driven by `pgbench`.
//! No HTTP and no TLS in front of it: report it as a database-only figure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{free_port, is_root, run};
use crate::bench::FIELDS;
use crate::report::Round;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL with the bench database.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    rows: usize,
    runs: std::sync::atomic::AtomicUsize,
    stopped_on_signal: Option<crate::stop::OnStop>,
}

/// Stops the cluster in `dir` (`mode`: `fast` or `immediate`) and removes the directory.
fn stop_cluster(dir: &Path, mode: &str) {
    let _ = as_pg("pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-m", mode, "-w", "stop"])
        .output();
    let _ = std::fs::remove_dir_all(dir);
}

fn as_pg(bin: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(Path::new(BIN).join(bin));
        c
    } else {
        Command::new(Path::new(BIN).join(bin))
    }
}

fn ensure_installed() -> Result<(), String> {
    if Path::new(BIN).join("pgbench").exists() {
        return Ok(());
    }
    if !is_root() {
        return Err("PostgreSQL 15 is not installed (apt-get install postgresql-15)".into());
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get").args(["install", "-y", "-qq", "postgresql-15"]))?;
    Ok(())
}

fn copy_text(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

impl Postgres {
    fn sock(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn psql(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(Path::new(BIN).join("psql"))
            .arg("-h")
            .arg(self.sock())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"])
            .args(args))
    }

    /// One pgbench run of `secs` seconds with `clients` connections.
    pub fn pgbench(&self, clients: usize, secs: f64) -> Round {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let logs = self.dir.join(format!("log-{n}"));
        let _ = std::fs::create_dir_all(&logs);
        let _ = set_owner(&logs);
        let out = as_pg("pgbench")
            .arg("-n")
            .arg("-h")
            .arg(self.sock())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-c", &clients.to_string()])
            .args(["-j", &clients.min(4).to_string()])
            .args(["-T", &format!("{}", secs.ceil().max(1.0) as u64)])
            .arg("-f")
            .arg(self.dir.join("release.sql"))
            .arg("--log")
            .arg(format!("--log-prefix={}", logs.join("tx").display()))
            .arg("bench")
            .output();
        let Ok(out) = out else {
            return Round {
                rps: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
                errors: 1,
                cpu_us: None,
            };
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let num = |prefix: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(prefix))
                .and_then(|l| l.split(['=', ':']).nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        let tps = num("tps").unwrap_or(0.0);
        let failed = num("number of failed transactions").unwrap_or(0.0) as u64;
        let mut lat: Vec<u64> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for e in entries.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    lat.extend(
                        t.lines()
                            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&logs);
        lat.sort_unstable();
        let pct = |q: f64| {
            lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        Round {
            rps: tps,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            errors: failed + u64::from(!out.status.success()),
            // Many backends, no one server process: a database-only figure.
            cpu_us: None,
        }
    }
}

fn set_owner(p: &Path) -> Result<(), String> {
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p))?;
    }
    Ok(())
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stopped_on_signal = None;
        stop_cluster(&self.dir, "fast");
    }
}

/// Installs if needed, creates a cluster in a fresh directory, loads `people`.
pub fn start(_work: &Path, people: &[(String, Value)]) -> Result<Postgres, String> {
    ensure_installed()?;
    // Under /tmp, not in the (root-only) work directory: the server runs as `postgres`.
    let dir = std::env::temp_dir().join(format!("vault-bench-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sock")).map_err(|e| e.to_string())?;
    set_owner(&dir)?;
    let pg = Postgres {
        dir: dir.clone(),
        port: free_port()?,
        rows: people.len(),
        runs: std::sync::atomic::AtomicUsize::new(0),
        stopped_on_signal: Some(crate::stop::on_stop({
            let dir = dir.clone();
            move || stop_cluster(&dir, "immediate")
        })),
    };
    run(as_pg("initdb").arg("-D").arg(dir.join("data")).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
    ]))?;
    run(as_pg("pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {} -k {} -c listen_addresses='' -c max_connections=300 -c shared_buffers=256MB \
             -c synchronous_commit=on -c fsync=on",
            pg.port,
            dir.join("sock").display()
        ))
        .args(["-w", "start"]))?;
    pg.psql(&["-d", "postgres", "-c", "CREATE DATABASE bench"])?;
    // Plaintext staging rows (dropped after sealing), then sealed rows.
    let staging = dir.join("staging.tsv");
    let mut tsv = String::new();
    for (i, (id, f)) in people.iter().enumerate() {
        tsv.push_str(&format!("{}\t{id}", i + 1));
        for name in FIELDS {
            tsv.push('\t');
            tsv.push_str(&copy_text(&f[name]));
        }
        tsv.push('\n');
    }
    std::fs::write(&staging, tsv).map_err(|e| e.to_string())?;
    let cols: Vec<String> = FIELDS.iter().map(|f| format!("{f} text")).collect();
    let sealed: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("encrypt_iv(convert_to({f}, 'UTF8'), k.key, k.iv, 'aes-cbc/pad:pkcs')"))
        .collect();
    let opened: Vec<String> = FIELDS
        .iter()
        .map(|f| {
            format!("convert_from(decrypt_iv(c.{f}, k.key, k.iv, 'aes-cbc/pad:pkcs'), 'UTF8')")
        })
        .collect();
    let schema = format!(
        "CREATE EXTENSION pgcrypto;
         CREATE TABLE bench_key (key bytea NOT NULL, iv bytea NOT NULL);
         INSERT INTO bench_key VALUES (gen_random_bytes(32), gen_random_bytes(16));
         CREATE TABLE purposes (id text PRIMARY KEY, fields text[] NOT NULL);
         INSERT INTO purposes VALUES ('bench_release', ARRAY[{fields}]);
         CREATE UNLOGGED TABLE staging (n int, id text, {cols});
         \\copy staging FROM '{staging}'
         CREATE TABLE citizens (n int PRIMARY KEY, blind text UNIQUE NOT NULL, {bytea_cols});
         INSERT INTO citizens SELECT n, encode(hmac(convert_to(id, 'UTF8'), k.key, 'sha256'), 'hex'), {sealed}
           FROM staging, bench_key k;
         DROP TABLE staging;
         CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
           subject text NOT NULL, purpose text NOT NULL, fields text[] NOT NULL);
         CREATE FUNCTION release_n(p_n int, p_purpose text)
           RETURNS TABLE ({ret}) LANGUAGE plpgsql AS $$
         DECLARE allowed text[];
         BEGIN
           SELECT p.fields INTO allowed FROM purposes p WHERE p.id = p_purpose;
           IF allowed IS NULL THEN RAISE EXCEPTION 'purpose_not_allowed'; END IF;
           INSERT INTO audit (subject, purpose, fields)
             SELECT c.blind, p_purpose, allowed FROM citizens c WHERE c.n = p_n;
           RETURN QUERY SELECT {opened} FROM citizens c, bench_key k WHERE c.n = p_n;
         END $$;
         VACUUM ANALYZE;",
        fields = FIELDS
            .iter()
            .map(|f| format!("'{f}'"))
            .collect::<Vec<_>>()
            .join(","),
        cols = cols.join(", "),
        staging = staging.display(),
        bytea_cols = FIELDS
            .iter()
            .map(|f| format!("{f} bytea"))
            .collect::<Vec<_>>()
            .join(", "),
        sealed = sealed.join(", "),
        ret = FIELDS
            .iter()
            .map(|f| format!("{f} text"))
            .collect::<Vec<_>>()
            .join(", "),
        opened = opened.join(", "),
    );
    let schema_file = dir.join("schema.sql");
    std::fs::write(&schema_file, schema).map_err(|e| e.to_string())?;
    pg.psql(&["-d", "bench", "-f", &schema_file.display().to_string()])?;
    let _ = std::fs::remove_file(&staging);
    std::fs::write(
        dir.join("release.sql"),
        format!(
            "\\set n random(1, {})\nSELECT * FROM release_n(:n, 'bench_release');\n",
            pg.rows
        ),
    )
    .map_err(|e| e.to_string())?;
    set_owner(&dir)?;
    Ok(pg)
}
