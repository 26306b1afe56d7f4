//! Tools stopped by a signal stop what they started: `vault-bench` killed with SIGTERM (as
//! `timeout` does) leaves no server process and no work files behind.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_tests::binary;

/// Process ids (other than this test's) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if pid != me && String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_bench_stopped_by_sigterm_stops_its_servers_and_removes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("tmp");
    std::fs::create_dir_all(&work).unwrap();
    let mut bench = Command::new(binary("vault-bench"))
        .args(["--smoke", "--out"])
        .arg(tmp.path().join("out"))
        .env("TMPDIR", &work)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first measured round runs once the vault and the ceiling server are both up.
    let mut lines = BufReader::new(bench.stdout.take().unwrap()).lines();
    let seen = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("round 1"));
    assert!(seen, "the bench reached its first round");
    let needle = work.to_string_lossy().into_owned();
    let running = processes_mentioning(&needle);
    assert!(
        running.len() >= 2,
        "the vault and ceiling servers run from the work directory: {running:?}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &bench.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = bench.wait().unwrap().code();
    assert_eq!(code, Some(143), "128 + SIGTERM");
    // Killed children may take a moment to leave the process table.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_mentioning(&needle),
        Vec::<u32>::new(),
        "left running"
    );
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().collect();
    assert!(left.is_empty(), "work files left behind: {left:?}");
}
