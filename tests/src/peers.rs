//! The systems the vault is compared with, each installed and started by the benchmark on
//! loopback (OpenBao from PyPI, PostgreSQL 15 with pgcrypto from Debian), and the
//! micro-figures measured with the project's own tools.

pub mod openbao;
pub mod postgres;

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::report::Report;

/// Whether this process runs as root (it can install packages and must drop to `postgres`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A free loopback port (bound and released: a small race the benchmark accepts).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Runs a command, returning stdout, or an error naming it with its stderr.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tool_lines(bin: &str, args: &[&str]) -> Result<String, String> {
    run(Command::new(crate::binary(bin)).args(args))
}

fn peak_rss_of(mut cmd: Command) -> Result<(f64, f64), String> {
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut peak = 0.0f64;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                return Err(format!("exit {status}"));
            }
            break;
        }
        if let Some(kb) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
        {
            peak = peak.max(kb / 1024.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok((start.elapsed().as_secs_f64(), peak))
}

/// The same import into a vault on PostgreSQL: citizens per second and the database's size
/// on disk afterwards.
fn import_into_postgres(report: &mut Report, file: &Path, count: u64) {
    let cluster = crate::pg::PgCluster::start();
    let v = crate::TestVault::initialized_on(&std::env::temp_dir(), &cluster.url());
    let _ = Command::new("sync").status();
    match peak_rss_of(v.command(&["import", &file.display().to_string()])) {
        Ok((secs, rss)) => {
            report.micro.insert(
                format!("import_{count}_citizens_per_s_postgres"),
                json!((count as f64 / secs).round()),
            );
            report.micro.insert(
                "import_postgres_peak_rss_mib".into(),
                json!((rss * 10.0).round() / 10.0),
            );
            report.micro.insert(
                "import_postgres_database_mib".into(),
                json!((cluster.database_size() as f64 / 1_048_576.0 * 10.0).round() / 10.0),
            );
        }
        Err(e) => {
            report.skipped.insert("import_postgres".into(), e);
        }
    }
}

/// Micro-figures: import rate and peak memory (embedded and on PostgreSQL), the audit log's
/// group commit against the raw sync ceiling, offline verification, proofs and
/// citizen-history queries at size.
pub fn micro(report: &mut Report, work: &Path, import_count: u64, audit_entries: u64) {
    if import_count > 0 {
        let v = crate::TestVault::initialized();
        let file = work.join("import.jsonl");
        let demo = v.ctl(&[
            "demo-data",
            "--count",
            &import_count.to_string(),
            "--seed",
            "3",
        ]);
        if std::fs::write(&file, &demo.stdout).is_ok() {
            // Let the disk settle first: the file just written and the peers just stopped
            // (PostgreSQL's shutdown checkpoint, their data directories removed) would
            // otherwise be written back during the import and charged to it.
            let _ = Command::new("sync").status();
            match peak_rss_of(v.command(&["import", &file.display().to_string()])) {
                Ok((secs, rss)) => {
                    report.micro.insert(
                        format!("import_{import_count}_citizens_per_s"),
                        json!((import_count as f64 / secs).round()),
                    );
                    report.micro.insert(
                        "import_peak_rss_mib".into(),
                        json!((rss * 10.0).round() / 10.0),
                    );
                }
                Err(e) => {
                    report.skipped.insert("import".into(), e);
                }
            }
            import_into_postgres(report, &file, import_count);
        }
        let _ = std::fs::remove_file(&file);
    }
    if audit_entries > 0 {
        // The same for the import's own writeback (gigabytes at the full size).
        let _ = Command::new("sync").status();
        match tool_lines(
            "audit-bench",
            &[
                "--seconds",
                "2",
                "--entries",
                &audit_entries.to_string(),
                "--rounds",
                "1",
            ],
        ) {
            Ok(text) => {
                report
                    .micro
                    .insert("audit_bench".into(), json!(text.trim()));
            }
            Err(e) => {
                report.skipped.insert("audit-bench".into(), e);
            }
        }
    }
}
