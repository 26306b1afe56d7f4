//! Clean-up when a tool is stopped by a signal: SIGTERM, SIGINT or SIGHUP runs every
//! registered action (kill a child, stop PostgreSQL, remove a work directory), newest first,
//! then exits with 128 + the signal number. A normal exit cleans up through each owner's
//! `Drop` as before; a signal ends the process without running destructors, which is why
//! `timeout vault-bench …` used to leave the vault server, the ceiling server, OpenBao and
//! PostgreSQL running and gigabytes of work files behind.
//!
//! Registering is cheap and harmless where `install` was never called (the end-to-end tests):
//! the action is only remembered until its guard drops.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

type Action = Box<dyn FnOnce() + Send>;

static ACTIONS: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Keeps an action registered; dropping it forgets the action (its owner cleaned up).
#[derive(Debug)]
#[must_use = "the action is forgotten when the guard drops"]
pub struct OnStop(u64);

impl Drop for OnStop {
    fn drop(&mut self) {
        if let Ok(mut a) = ACTIONS.lock() {
            a.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Runs `action` if a signal stops the process while the guard lives.
pub fn on_stop(action: impl FnOnce() + Send + 'static) -> OnStop {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut a) = ACTIONS.lock() {
        a.push((id, Box::new(action)));
    }
    OnStop(id)
}

/// Kills process `pid` (SIGKILL) on a stop. Drop the guard before reaping the child, so a
/// reused pid is never signalled.
pub fn kill_on_stop(pid: u32) -> OnStop {
    on_stop(move || {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    })
}

/// Removes directory `dir` and everything in it on a stop.
pub fn remove_on_stop(dir: PathBuf) -> OnStop {
    on_stop(move || {
        let _ = std::fs::remove_dir_all(&dir);
    })
}

/// Runs every registered action, newest first (children before the directories they use).
pub fn run_actions() -> usize {
    let actions = ACTIONS
        .lock()
        .map(|mut a| std::mem::take(&mut *a))
        .unwrap_or_default();
    let n = actions.len();
    for (_, action) in actions.into_iter().rev() {
        action();
    }
    n
}

/// Starts the thread that waits for SIGTERM, SIGINT or SIGHUP, then runs the actions and
/// exits. Call once, early in `main`.
pub fn install() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered before the thread starts, so a signal right after `install` is caught.
    let mut signals = rt.block_on(async {
        Ok::<_, std::io::Error>([
            (signal(SignalKind::terminate())?, 15),
            (signal(SignalKind::interrupt())?, 2),
            (signal(SignalKind::hangup())?, 1),
        ])
    })?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let number = rt.block_on(std::future::poll_fn(|cx| {
                for (s, n) in &mut signals {
                    if s.poll_recv(cx).is_ready() {
                        return Poll::Ready(*n);
                    }
                }
                Poll::Pending
            }));
            eprintln!("stopped by signal {number}: stopping what this run started");
            run_actions();
            std::process::exit(128 + number);
        })?;
    Ok(())
}

/// `install`, or exits with status 1 naming `tool` (a run that could not clean up after a
/// signal must not start).
pub fn install_or_exit(tool: &str) {
    if let Err(e) = install() {
        eprintln!("{tool}: cannot watch for signals: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_run_newest_first_and_dropped_guards_are_forgotten() {
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let add = |n: u32| {
            let log = std::sync::Arc::clone(&log);
            on_stop(move || log.lock().unwrap().push(n))
        };
        let first = add(1);
        let second = add(2);
        let third = add(3);
        drop(second);
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("f"), b"x").unwrap();
        let removal = remove_on_stop(dir.clone());
        assert!(run_actions() >= 3);
        assert_eq!(*log.lock().unwrap(), [3, 1]);
        assert!(!dir.exists(), "the directory is removed");
        drop((first, third, removal));
    }
}
