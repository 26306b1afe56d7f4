//! Helpers for the end-to-end suite: locating and running the real binaries, temporary
//! vaults, and the plaintext scanner that proves no citizen value reaches the disk.

#![expect(
    clippy::panic,
    reason = "test-support crate: a failed setup is a failed test, reported with its cause"
)]

pub mod args;
pub mod bench;
pub mod crash;
pub mod load;
pub mod peers;
pub mod pg;
pub mod portal;
pub mod report;
pub mod scan;
pub mod server;
pub mod soak;
pub mod stop;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    repo_root().join("policies")
}

/// Path of a workspace binary built in the same profile as this test.
///
/// The README's test command builds the binaries first (`cargo build --workspace --bins`);
/// this finds them next to the test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // A test runs from target/<profile>/deps/; a tool binary from target/<profile>/.
    let here = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = if here.join(name).exists() {
        here.join(name)
    } else {
        here.parent().map(|p| p.join(name)).unwrap_or_default()
    };
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A temporary vault directory and a way to run `vaultctl` against it.
#[derive(Debug)]
pub struct TestVault {
    dir: tempfile::TempDir,
    _removed_on_stop: stop::OnStop,
}

impl TestVault {
    /// An empty directory (not initialized).
    pub fn empty() -> Self {
        Self::in_dir(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")))
    }

    fn in_dir(dir: tempfile::TempDir) -> Self {
        Self {
            _removed_on_stop: stop::remove_on_stop(dir.path().to_path_buf()),
            dir,
        }
    }

    /// A directory with `vaultctl init` done.
    pub fn initialized() -> Self {
        Self::initialized_in(&std::env::temp_dir())
    }

    /// A directory under `parent` (a small file system, say) with `vaultctl init` done.
    pub fn initialized_in(parent: &Path) -> Self {
        let v =
            Self::in_dir(tempfile::tempdir_in(parent).unwrap_or_else(|e| panic!("tempdir: {e}")));
        let out = v.ctl(&["init"]);
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        v
    }

    /// A directory whose vault lives in the PostgreSQL database at `url` (`vaultctl init
    /// --store-url`), under `parent`.
    pub fn initialized_on(parent: &Path, url: &str) -> Self {
        let v =
            Self::in_dir(tempfile::tempdir_in(parent).unwrap_or_else(|e| panic!("tempdir: {e}")));
        let out = v.ctl(&["init", "--store-url", url]);
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        v
    }

    /// The temporary directory holding the vault's data directory and scratch files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The vault's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("vault-data")
    }

    /// A `vaultctl` command with `--data` and `--policies` set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary("vaultctl"));
        c.arg("--data")
            .arg(self.data())
            .arg("--policies")
            .arg(policies_dir())
            .args(args)
            .env_remove("VAULT_TEST_ROOT_KEY");
        c
    }

    /// Runs `vaultctl` and returns its output.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run vaultctl: {e}"))
    }
}

/// A `--name N` command-line option of a benchmark tool, or `default`.
pub fn arg_u64(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lossy text of a process stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
