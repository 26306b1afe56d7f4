//! Storage faults under a serving vault: its data directory on a small tmpfs that fills up,
//! and the same file system remounted read-only. Releases are refused with
//! `503 audit_unavailable` and release nothing, `/readyz` says not ready, and once space
//! (or write access) is back the vault serves again without a restart and its log verifies.
//! Mounting needs root (CI has it); elsewhere the tests say they were skipped, unless
//! `CDV_TESTS_REQUIRE_ROOT=1` (set by `.ci/run`) makes that a failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vault_tests::bench::{FIELDS, bench_policies};
use vault_tests::server::{Identity, Limits, TestServer};
use vault_tests::text;

/// A tmpfs of `mib` MiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Self { dir });
        }
        assert!(
            std::env::var_os("CDV_TESTS_REQUIRE_ROOT").is_none(),
            "cannot mount a tmpfs (CDV_TESTS_REQUIRE_ROOT is set): run as root"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(s.success(), "remount {mode}");
    }
}

/// An ext4 file system in an image on a loop device, mounted with `errors=remount-ro`, so a
/// file-system error turns it read-only under open files (as a failing disk would).
struct Ext4 {
    image: tempfile::NamedTempFile,
    dir: tempfile::TempDir,
}

impl Ext4 {
    fn mount(mib: u64) -> Option<Self> {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(mib * 1024 * 1024).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image.path())
            .status()
            .is_ok_and(|s| s.success());
        let fs = Self { image, dir };
        if made && fs.attach() {
            return Some(fs);
        }
        assert!(
            std::env::var_os("CDV_TESTS_REQUIRE_ROOT").is_none(),
            "cannot make and mount an ext4 image (CDV_TESTS_REQUIRE_ROOT is set): run as root \
             with e2fsprogs"
        );
        eprintln!("SKIPPED: mounting an ext4 image needs root and e2fsprogs");
        None
    }

    fn attach(&self) -> bool {
        Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(self.image.path())
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Raises an ext4 error: the kernel remounts the file system read-only at once.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.path())
            .output()
            .unwrap();
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let name = Path::new(&dev)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1").unwrap();
    }

    /// What an operator does after the fault: unmount, check, mount again.
    fn repair(&self) {
        let s = Command::new("umount").arg(self.path()).status().unwrap();
        assert!(s.success(), "umount");
        let _ = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(self.image.path())
            .output();
        assert!(self.attach(), "mount again");
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A served vault under `parent` with a grant of many uses for one citizen.
fn served(parent: &Path) -> (TestServer, Identity, String, String, tempfile::TempDir) {
    let work = tempfile::tempdir().unwrap();
    let (server, people) = TestServer::start(
        100,
        &Limits {
            policies: Some(bench_policies(work.path(), &FIELDS).unwrap()),
            parent: Some(parent.to_path_buf()),
            ..Limits::default()
        },
    );
    let agency = server.agency_identity("bench-agency");
    let id = people[0].0.clone();
    let r = server
        .client(Some(&agency))
        .post(server.url("/v1/grants"))
        .json(
            &json!({"citizen_id": id, "purpose": "bench_release", "dossier_id": "F-1",
                      "fields": FIELDS, "official": {"id": "faults"}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let token = r.json::<Value>().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (server, agency, id, token, work)
}

/// One release: (status, body).
fn release(server: &TestServer, agency: &Identity, id: &str, token: &str) -> (u16, Value) {
    let r = server
        .client(Some(agency))
        .get(server.url(&format!("/v1/citizens/{id}/fields?fields=full_name,phone")))
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn ready(server: &TestServer) -> u16 {
    server
        .client(None)
        .get(server.url("/readyz"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Until `f` holds or 20 s pass.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&chunk[..512]).is_ok() {}
    let _ = f.sync_all();
    path
}

/// A refused release: 503 with `audit_unavailable` and not a single field.
fn assert_refused(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["code"], "audit_unavailable", "{what}: {body}");
    assert!(body.get("fields").is_none(), "{what}: {body}");
}

fn verify_offline(server: &mut TestServer) {
    server.stop();
    let out = server.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_full_disk_refuses_releases_and_recovers_without_a_restart() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let (mut server, agency, id, token, _work) = served(fs.path());
    assert_eq!(release(&server, &agency, &id, &token).0, 200);
    assert_eq!(ready(&server), 200);
    let pid = server.pid();

    let filler = fill(fs.path());
    for i in 0..5 {
        let (status, body) = release(&server, &agency, &id, &token);
        assert_refused(status, &body, &format!("release {i} on a full disk"));
    }
    assert_eq!(ready(&server), 503, "a full disk is not ready");

    std::fs::remove_file(&filler).unwrap();
    assert!(
        eventually(|| ready(&server) == 200),
        "ready again after space is freed"
    );
    let (status, body) = release(&server, &agency, &id, &token);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fields"].as_object().map(|o| o.len()), Some(2));
    assert_eq!(server.pid(), pid, "the same process served throughout");
    verify_offline(&mut server);
}

#[test]
fn a_read_only_data_directory_is_refused_plainly_and_never_served() {
    // Linux refuses to remount a file system read-only while files on it are open for
    // writing (the serving vault holds its log and store open), so the directory goes
    // read-only between runs: `vaultctl` and the server refuse it with a message naming
    // the cause (never a panic), and the server does not start rather than serve without a
    // writable log. (Sync failures while serving: the fault-injecting log, ops.rs tests.)
    let Some(fs) = Tmpfs::mount(48) else { return };
    let (mut server, agency, id, token, _work) = served(fs.path());
    assert_eq!(release(&server, &agency, &id, &token).0, 200);
    server.stop();
    let log_before = server.log_text().len();

    fs.remount("ro");
    // The operator's tools say so plainly (the offline verifier needs only an export).
    let out = server.vault.ctl(&["audit", "verify"]);
    let said = text(&out.stderr);
    assert!(
        !out.status.success() && said.contains("Read-only"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    let refused = server
        .try_launch()
        .expect_err("served a read-only data directory");
    let said = &server.log_text()[log_before..];
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("Read-only") || said.contains("read-only") || said.contains("unavailable"),
        "the refusal names the cause: {refused}"
    );

    fs.remount("rw");
    server.launch();
    assert_eq!(release(&server, &agency, &id, &token).0, 200);
    verify_offline(&mut server);
}

#[test]
fn a_data_directory_turning_read_only_while_serving_refuses_releases() {
    // ext4 with errors=remount-ro: a file-system error makes it read-only under the
    // serving vault's open files, as a failing disk would.
    let Some(fs) = Ext4::mount(64) else { return };
    let (mut server, agency, id, token, _work) = served(fs.path());
    let (status, before) = release(&server, &agency, &id, &token);
    assert_eq!(status, 200, "{before}");

    fs.fail();
    for i in 0..3 {
        let (status, body) = release(&server, &agency, &id, &token);
        assert_refused(
            status,
            &body,
            &format!("release {i} on a read-only file system"),
        );
    }
    assert_eq!(
        ready(&server),
        503,
        "a read-only data directory is not ready"
    );

    // The operator repairs the file system and starts the vault again: the release that was
    // acknowledged before the fault is in the log, which verifies, and the vault serves.
    server.kill();
    fs.repair();
    let out = server.vault.ctl(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let index = before["audit"]["index"].as_u64().unwrap();
    let export = text(&server.vault.ctl(&["audit", "export"]).stdout);
    let line = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["index"].as_u64() == Some(index))
        .expect("the acknowledged release is in the log");
    assert_eq!(line["leaf_hash"], before["audit"]["leaf_hash"]);
    server.launch();
    assert_eq!(release(&server, &agency, &id, &token).0, 200);
    verify_offline(&mut server);
}
