//! The server's clock: the wall clock, or — in debug builds only, for the end-to-end tests —
//! the wall clock shifted by a number of milliseconds the tests write into a file, so a test
//! moves the running server's time instead of waiting for it.

use std::path::PathBuf;
use std::sync::Arc;

use vault_core::{Clock, SystemClock, Timestamp};

/// The environment variable naming the test clock's file (ignored by release builds).
pub const TEST_CLOCK_VAR: &str = "VAULT_TEST_CLOCK_FILE";

/// The clock the server runs on: `SystemClock`, or in a debug build given a test clock file,
/// a `ShiftedClock` over it.
pub fn server_clock(test_file: Option<PathBuf>) -> Arc<dyn Clock> {
    match test_file {
        Some(file) if cfg!(debug_assertions) => {
            tracing::warn!(
                target: "vault::clock",
                file = %file.display(),
                "test clock: the server's time is the wall clock shifted by the milliseconds in this file"
            );
            Arc::new(ShiftedClock { file })
        }
        _ => Arc::new(SystemClock),
    }
}

/// The wall clock plus the whole number of milliseconds in `file`, read at every call
/// (missing or unreadable: no shift). Tests write the file whole (a rename) to move time.
#[derive(Debug)]
pub struct ShiftedClock {
    file: PathBuf,
}

impl ShiftedClock {
    fn shift_ms(&self) -> i64 {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let wall = SystemClock.now().as_millis();
        Timestamp::from_millis(wall.saturating_add(self.shift_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shift_is_read_at_every_call_and_a_bad_file_shifts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        let c = ShiftedClock { file: file.clone() };
        let before = SystemClock.now().as_millis();
        let unshifted = c.now().as_millis();
        assert!(unshifted >= before && unshifted - before < 60_000);
        std::fs::write(&file, "86400000\n").unwrap();
        let shifted = c.now().as_millis();
        assert!(shifted - unshifted >= 86_400_000, "{shifted} {unshifted}");
        std::fs::write(&file, "tomorrow").unwrap();
        assert!(c.now().as_millis() - unshifted < 86_400_000);
    }
}
