//! The files under the audit log: positional reads and writes, `fdatasync`, truncation.
//! `LogFile` is the seam for fault injection: `FaultyFile` fails writes or syncs on demand
//! (used by the tests and the crash suite; production opens `FsFile`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One file of the log. All methods take `&self`: the writer thread writes, readers pread.
pub trait LogFile: Send + Sync {
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Writes `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// `fdatasync`.
    fn sync(&self) -> io::Result<()>;
    /// Truncates (or extends) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A real file.
#[derive(Debug)]
pub struct FsFile(File);

impl FsFile {
    /// Opens or creates `path` for reading and writing.
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self(f))
    }

    /// Opens an existing `path` for reading only (writes, syncs and truncation then fail).
    pub fn open_read_only(path: &Path) -> io::Result<Self> {
        File::open(path).map(Self)
    }
}

impl LogFile for FsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// Switches that make a `FaultyFile` fail. Shared, so a test can flip them while the log
/// runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Fail every write.
    pub fail_write: AtomicBool,
    /// Fail every sync.
    pub fail_sync: AtomicBool,
}

impl Faults {
    /// New switches, all off.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Sets the write switch.
    pub fn set_write(&self, on: bool) {
        self.fail_write.store(on, Ordering::SeqCst);
    }
    /// Sets the sync switch.
    pub fn set_sync(&self, on: bool) {
        self.fail_sync.store(on, Ordering::SeqCst);
    }
}

/// A file that fails on command (fault injection for tests and the crash suite).
pub struct FaultyFile {
    inner: Box<dyn LogFile>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for FaultyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyFile")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FaultyFile {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn LogFile>, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

impl LogFile for FaultyFile {
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.faults.fail_write.load(Ordering::SeqCst) {
            // Simulate a partial write before failing.
            let half = buf.get(..buf.len() / 2).unwrap_or_default();
            let _ = self.inner.write_at(offset, half);
            return Err(injected("write"));
        }
        self.inner.write_at(offset, buf)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(injected("sync"));
        }
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}
