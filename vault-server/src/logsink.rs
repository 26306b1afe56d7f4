//! The log sink: log lines go through a bounded queue to one thread that writes them to the
//! output in batches (one write per drained batch, not one per line), so a request does not
//! pay for a stderr write of its own. Nothing is dropped: a full queue blocks the logger
//! (backpressure), and `flush` waits until every line queued before it is written. While
//! lines keep coming the thread looks for them every 2 ms instead of sleeping until woken,
//! so a logger's send rarely has to wake it.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

/// Lines waiting to be written before a logger blocks.
const QUEUE: usize = 16_384;
/// Bytes gathered before a write, while more lines are waiting.
const BATCH_BYTES: usize = 64 * 1024;

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// A `MakeWriter` whose writers hand each formatted event to the sink thread.
#[derive(Clone, Debug)]
pub struct QueuedWriter {
    tx: SyncSender<Msg>,
}

static STDERR_SINK: OnceLock<QueuedWriter> = OnceLock::new();

impl QueuedWriter {
    /// A sink writing to `out` on its own thread (named `log-sink`).
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("log-sink".into())
            .spawn(move || drain(&rx, out))?;
        Ok(Self { tx })
    }

    /// The process-wide sink on stderr (started on first use).
    pub fn stderr() -> std::io::Result<Self> {
        if let Some(w) = STDERR_SINK.get() {
            return Ok(w.clone());
        }
        let w = Self::spawn(std::io::stderr())?;
        Ok(STDERR_SINK.get_or_init(|| w).clone())
    }

    /// Waits until every line queued before this call is written and flushed.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// Whether the log is JSON (set once logging starts): the server's own messages then go
/// through it as events instead of plain lines among the JSON ones.
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Records the log's format when logging starts.
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

/// Whether the log is JSON (false before logging starts).
pub fn is_json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Flushes the stderr sink if it was started (call before the process exits).
pub fn flush_stderr() {
    if let Some(w) = STDERR_SINK.get() {
        w.flush();
    }
}

/// How long the sink waits before looking for more lines after a busy batch.
const PAUSE: Duration = Duration::from_millis(2);

fn drain<W: Write>(rx: &Receiver<Msg>, out: W) {
    let mut out = std::io::BufWriter::with_capacity(BATCH_BYTES, out);
    let mut waiting = Vec::new();
    let mut busy = false;
    loop {
        // Busy (the last look found lines): pause, then look without blocking, so that the
        // loggers' sends find no sleeping receiver to wake (a futex wake and a context switch
        // per line cost ~4% of the server's CPU at 10,000 requests a second). Idle: block.
        let first = if busy {
            std::thread::sleep(PAUSE);
            match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    busy = false;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        busy = true;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                // A failed write to the log output has nowhere to be reported; keep going.
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Msg::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = out.flush();
}

/// One event's writer: collects what the formatter writes and queues it when dropped.
#[derive(Debug)]
pub struct EventWriter {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            // Err only if the sink thread is gone (process exiting): nothing left to write to.
            let _ = self.tx.send(Msg::Line(std::mem::take(&mut self.buf)));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueuedWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            tx: self.tx.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_flush_waits_for_them() {
        use tracing_subscriber::fmt::MakeWriter as _;
        let out = Shared::default();
        let sink = QueuedWriter::spawn(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let mut w = sink.make_writer();
                        // A formatter may write one event in pieces.
                        write!(w, "thread {t} ").unwrap();
                        writeln!(w, "line {i}").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.flush();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            assert_eq!(mine.len(), 5_000, "thread {t}");
            for (i, l) in mine.iter().enumerate() {
                assert_eq!(*l, format!("thread {t} line {i}"), "in order, whole");
            }
        }
    }

    #[test]
    fn an_empty_event_writes_nothing_and_flush_returns_at_once() {
        use tracing_subscriber::fmt::MakeWriter as _;
        let out = Shared::default();
        let sink = QueuedWriter::spawn(out.clone()).unwrap();
        drop(sink.make_writer());
        sink.flush();
        sink.flush();
        assert!(out.0.lock().unwrap().is_empty());
    }
}
