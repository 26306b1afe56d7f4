//! `PostgresLog`: the audit log kept in PostgreSQL for several vault nodes (Trillian's log
//! signer, Tessera's MySQL driver). A node queues entries (`audit_queue`, one commit per
//! group of callers); the node holding the lease (`audit_lease`: holder, fencing token,
//! expiry by the database's clock) integrates them: indexes, leaf hashes and a signed
//! checkpoint in one transaction that first locks the lease row and checks it is still its
//! own, so a node that lost the lease cannot write. Every node follows the log into its own
//! in-memory tree (`ChunkedTree`), checks the latest checkpoint's signature and root against
//! it, and answers the tickets of its queued entries with their indexes. A ticket not
//! answered within the bound resolves to `AuditUnavailable`: nothing is released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator as _;

use super::pool::{Pool, describe};
use super::store::{PgBound, RowWrite, SwapState};
use crate::audit::entry::{EntryView, Pseudonym, parse_time};
use crate::audit::merkle::{self, Hash, ProofError};
use crate::audit::ticket::{Answer, Appended, Ticket, pair};
use crate::audit::tree::{ChunkedTree, LeafReader};
use crate::audit::{
    AuditEntry, AuditLog, AuditQuery, BoundRefusal, BoundWrite, Checkpoint, LogSigner, LogVerifier,
    Page, VerifyReport, WriterStats,
};
use crate::error::VaultError;

/// Tuning of the log's threads; the defaults suit a city's nodes.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// This node's name in the lease row (unique per process).
    pub node: String,
    /// How long a lease lasts without renewal; another node takes over after it.
    pub lease: Duration,
    /// How often the holder renews and the others try to take it.
    pub renew: Duration,
    /// How long a caller waits for its entry's index before `AuditUnavailable`.
    pub wait: Duration,
    /// Queue rows integrated per transaction at most.
    pub batch: usize,
    /// Whether this node may sequence (read-only openers do not).
    pub sequence: bool,
}

impl LogOptions {
    /// Defaults for a node named `node`: 3 s lease renewed every second, 5 s wait bound.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            lease: Duration::from_secs(3),
            renew: Duration::from_secs(1),
            wait: Duration::from_secs(5),
            batch: 4096,
            sequence: true,
        }
    }
}

/// A ticket waiting for its entries' places.
struct Waiting {
    answer: Answer,
    places: Vec<Option<Appended>>,
    left: usize,
    deadline: Instant,
}

#[derive(Default)]
struct Waiters {
    next: u64,
    tickets: HashMap<u64, Waiting>,
    /// Queue row id → (ticket, position in it).
    rows: HashMap<i64, (u64, usize)>,
    /// Rows integrated before anyone waited for them: the sequencer (on this node, or
    /// another's batch followed here) can be faster than the queue writer registering the
    /// rows its insert returned. Looked up at registration; the oldest forgotten past
    /// `EARLY_KEPT` (other nodes' rows land here too and are never claimed).
    early: HashMap<i64, Appended>,
    early_order: std::collections::VecDeque<i64>,
}

/// Integrated rows remembered for a registration still to come.
const EARLY_KEPT: usize = 1 << 16;

/// The followed tree: leaves pushed up to `tree.size()`, of which `size` are published.
struct Followed {
    tree: ChunkedTree,
    size: u64,
}

struct Inner {
    pool: Arc<Pool>,
    signer: Option<LogSigner>,
    verifier: LogVerifier,
    opts: LogOptions,
    followed: RwLock<Followed>,
    waiters: Mutex<Waiters>,
    /// Whether the last queue write succeeded.
    queue_ok: AtomicBool,
    /// Whether the lease was held by someone, unexpired, at the last look.
    sequenced: AtomicBool,
    stop: AtomicBool,
    stats: WriterStats,
    /// Milliseconds since `epoch` of the last progress (for `probe`).
    epoch: Instant,
    /// When (`epoch` ms) the follower last read the lease row.
    last_look: AtomicU64,
    /// The lease as this node's sequencer last took or renewed it.
    lease: Mutex<Option<Held>>,
}

struct Job {
    entries: Vec<AuditEntry>,
    answer: Answer,
    /// A grant's state to swap in the transaction that queues `entries`, and where to say
    /// whether that transaction committed (`AuditLog::submit_with`).
    bound: Option<Box<(PgBound, Said)>>,
}

/// Where the queue writer says whether a job's transaction committed.
type Said = mpsc::SyncSender<Result<(), BoundRefusal>>;

/// Queue rows inserted by one statement, their ids taken from `audit_queue_head` (whose row
/// lock, held to the commit, puts ids in commit order), the sequencer notified at commit.
const QUEUE_INSERT: &str = "WITH h AS (UPDATE audit_queue_head \
       SET next = next + cardinality($1::bytea[]) WHERE id = 1 \
       RETURNING next - cardinality($1::bytea[]) AS first), \
     q AS (INSERT INTO audit_queue (id, entry) \
       SELECT h.first + t.n - 1, t.e FROM h, unnest($1::bytea[]) WITH ORDINALITY AS t(e, n) \
       RETURNING id), \
     n AS (SELECT pg_notify('cdv_audit_queued', '')) \
     SELECT id FROM q, n";

/// Inserts the entries of the `keep` jobs into the queue (`QUEUE_INSERT`); their rows' ids in
/// entry order (ids are taken in row order), or `None` when the rows do not match them.
fn queue_rows(
    c: &mut impl postgres::GenericClient,
    insert: &postgres::Statement,
    jobs: &[Job],
    keep: &[bool],
) -> Result<Option<Vec<i64>>, postgres::Error> {
    let bytes: Vec<&[u8]> = jobs
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .flat_map(|(j, _)| j.entries.iter().map(AuditEntry::bytes))
        .collect();
    let mut ids: Vec<i64> = c
        .query(insert, &[&bytes])?
        .iter()
        .filter_map(|r| r.try_get(0).ok())
        .collect();
    ids.sort_unstable();
    Ok((ids.len() == bytes.len()).then_some(ids))
}

/// Locks the grants a batch swaps, in one order on every node (no deadlock between two
/// nodes' batches).
const SWAP_LOCK: &str = "SELECT id FROM grants WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Swaps the states still as the callers read them; returns the ids swapped.
const SWAP: &str = "UPDATE grants g SET state = i.new \
     FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS i(id, old, new) \
     WHERE g.id = i.id AND g.state = i.old RETURNING g.id";

/// The PostgreSQL audit log of one node.
pub struct PostgresLog {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLog")
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

fn db(what: &str, e: &postgres::Error) -> VaultError {
    VaultError::StoreUnavailable(format!("audit {}", describe(what, e)))
}

fn store_err(e: crate::store::StoreError) -> VaultError {
    e.into()
}

fn proof_err(e: ProofError) -> VaultError {
    match e {
        ProofError::OutOfRange => VaultError::AuditNotFound,
        other => VaultError::StoreUnavailable(format!("audit tree: {other}")),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn hash_of(bytes: &[u8]) -> Result<Hash, VaultError> {
    bytes
        .try_into()
        .map_err(|_| VaultError::StoreCorrupt("audit leaf hash unreadable".into()))
}

/// Reads leaf hashes from the database (for the tree's lower levels).
struct DbLeaves<'a>(&'a Pool);

impl LeafReader for DbLeaves<'_> {
    fn leaves(&self, start: u64, count: u64) -> Result<Vec<Hash>, ProofError> {
        let fail = |m: String| ProofError::Unavailable(m);
        let mut c = self.0.get().map_err(|e| fail(e.to_string()))?;
        let rows = c
            .query(
                "SELECT leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&to_i64(start), &to_i64(start.saturating_add(count))],
            )
            .map_err(|e| fail(e.to_string()))?;
        if rows.len() as u64 != count {
            return Err(ProofError::OutOfRange);
        }
        rows.iter()
            .map(|r| {
                r.try_get::<_, Vec<u8>>(0)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| fail("leaf unreadable".into()))
            })
            .collect()
    }
}

/// Rows of `audit_entries` gathered for one multi-row insert.
#[derive(Default)]
struct EntryRows {
    idxs: Vec<i64>,
    queue_ids: Vec<i64>,
    entries: Vec<Vec<u8>>,
    leaves: Vec<Vec<u8>>,
    subjects: Vec<Option<Vec<u8>>>,
    officials: Vec<Option<String>>,
    agencies: Vec<Option<String>>,
    purposes: Vec<Option<String>>,
    events: Vec<String>,
    at_ms: Vec<Option<i64>>,
}

impl EntryRows {
    /// Adds entry `idx` (its bytes, leaf hash and the queue row it came from).
    fn push(&mut self, idx: u64, queue_id: i64, bytes: Vec<u8>, leaf: &Hash) {
        let f = facts(&bytes);
        self.idxs.push(to_i64(idx));
        self.queue_ids.push(queue_id);
        self.leaves.push(leaf.to_vec());
        self.subjects.push(f.subject);
        self.officials.push(f.official);
        self.agencies.push(f.agency);
        self.purposes.push(f.purpose);
        self.events.push(f.event);
        self.at_ms.push(f.at_ms);
        self.entries.push(bytes);
    }

    /// Inserts them in one statement.
    fn insert(
        &self,
        tx: &mut postgres::Transaction<'_>,
        prepared: &mut Prepared,
    ) -> Result<u64, postgres::Error> {
        let insert = prepared.get(
            tx,
            "INSERT INTO audit_entries \
               (idx, queue_id, entry, leaf, subject, official, agency, purpose, event, at_ms) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], \
               $5::bytea[], $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[])",
        )?;
        tx.execute(
            &insert,
            &[
                &self.idxs,
                &self.queue_ids,
                &self.entries,
                &self.leaves,
                &self.subjects,
                &self.officials,
                &self.agencies,
                &self.purposes,
                &self.events,
                &self.at_ms,
            ],
        )
    }
}

/// Statements prepared once on a connection the log keeps (the sequencer's, the copy's):
/// a batch's statements then cost one round trip each, not a parse and an execution.
#[derive(Default)]
struct Prepared(HashMap<&'static str, postgres::Statement>);

impl Prepared {
    fn get(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        sql: &'static str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(sql)?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// The signed checkpoint `cp` must be the root of the first `cp.size` leaves of `tree`.
fn check_root(tree: &ChunkedTree, cp: &Checkpoint, pool: &Pool) -> Result<(), VaultError> {
    let root = merkle::root(&tree.view(cp.size, &DbLeaves(pool)), cp.size).map_err(proof_err)?;
    if root != cp.root {
        return Err(VaultError::StoreCorrupt(format!(
            "checkpoint at {} does not match the entries",
            cp.size
        )));
    }
    Ok(())
}

/// Cuts the followed tree back to its published size (leaves a failed batch pushed).
fn cut_back(f: &mut Followed, pool: &Pool) -> Result<(), VaultError> {
    if f.tree.size() > f.size {
        let size = f.size;
        f.tree.truncate(size, &DbLeaves(pool)).map_err(proof_err)?;
    }
    Ok(())
}

/// The columns a query filters on, from an entry's bytes.
struct Facts {
    subject: Option<Vec<u8>>,
    official: Option<String>,
    agency: Option<String>,
    purpose: Option<String>,
    event: String,
    at_ms: Option<i64>,
}

fn facts(bytes: &[u8]) -> Facts {
    match serde_json::from_slice::<EntryView>(bytes) {
        Ok(v) => Facts {
            subject: v
                .subject
                .as_deref()
                .and_then(Pseudonym::parse_hex)
                .map(|p| p.as_bytes().to_vec()),
            official: (v.actor.kind == "agency").then(|| v.actor.id.clone()),
            agency: v.actor.agency,
            purpose: v.purpose,
            event: v.event,
            at_ms: parse_time(&v.time).map(|t| t.as_millis()),
        },
        Err(_) => Facts {
            subject: None,
            official: None,
            agency: None,
            purpose: None,
            event: String::new(),
            at_ms: None,
        },
    }
}

impl PostgresLog {
    /// Opens the log in the database `pool` reaches (migrated), signing with `signer` when
    /// this node sequences. The first opener binds the database to the signer's key; a
    /// database bound to another key is refused. Loads every leaf hash, checks the latest
    /// checkpoint against them, and starts the queue writer, the follower and (unless
    /// `opts.sequence` is off) the sequencer.
    pub fn open(
        pool: Arc<Pool>,
        signer: Option<LogSigner>,
        verifier: LogVerifier,
        opts: LogOptions,
    ) -> Result<Self, VaultError> {
        bind_verifier(&pool, &verifier, signer.is_some())?;
        let inner = Arc::new(Inner {
            pool,
            signer,
            verifier,
            opts,
            followed: RwLock::new(Followed {
                tree: ChunkedTree::default(),
                size: 0,
            }),
            waiters: Mutex::new(Waiters::default()),
            queue_ok: AtomicBool::new(true),
            sequenced: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            stats: WriterStats::default(),
            epoch: Instant::now(),
            last_look: AtomicU64::new(0),
            lease: Mutex::new(None),
        });
        inner.follow()?;
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| VaultError::StoreUnavailable(format!("audit thread: {e}")))
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let (q, f) = (Arc::clone(&inner), Arc::clone(&inner));
        if inner.signer.is_some() {
            threads.push(spawn("audit-queue", Box::new(move || q.queue_loop(&rx)))?);
        }
        threads.push(spawn("audit-follow", Box::new(move || f.follow_loop()))?);
        if inner.signer.is_some() && inner.opts.sequence {
            let s = Arc::clone(&inner);
            threads.push(spawn(
                "audit-sequencer",
                Box::new(move || s.sequencer_loop()),
            )?);
        }
        Ok(Self {
            inner,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Queues entries; the ticket resolves when the sequencer has integrated them.
    pub fn submit(&self, entries: Vec<AuditEntry>) -> Ticket {
        if entries.is_empty() {
            return Ticket::ready(Ok(Vec::new()));
        }
        let (ticket, answer) = pair();
        let sent = self.tx.lock().ok().and_then(|tx| {
            tx.as_ref().map(|t| {
                t.send(Job {
                    entries,
                    answer,
                    bound: None,
                })
            })
        });
        match sent {
            Some(Ok(())) => ticket,
            // The job (and its answer) came back or was dropped: answered unavailable.
            _ => Ticket::ready(Err(VaultError::AuditUnavailable)),
        }
    }

    /// Queues entries in one transaction with a store's writes (`AuditLog::submit_with`) and
    /// waits, up to the bound, for that transaction's outcome.
    fn submit_bound(
        &self,
        entries: Vec<AuditEntry>,
        bound: PgBound,
    ) -> Result<Ticket, BoundRefusal> {
        let unavailable = || BoundRefusal::Failed(VaultError::AuditUnavailable);
        let (ticket, answer) = pair();
        let (said, hear) = mpsc::sync_channel(1);
        let job = Job {
            entries,
            answer,
            bound: Some(Box::new((bound, said))),
        };
        let sent = self
            .tx
            .lock()
            .ok()
            .and_then(|tx| tx.as_ref().map(|t| t.send(job)));
        if !matches!(sent, Some(Ok(()))) {
            return Err(unavailable());
        }
        // Past the bound the transaction may still commit: then the change stands with its
        // entries queued, and this caller, told `AuditUnavailable`, released nothing.
        match hear.recv_timeout(self.inner.opts.wait) {
            Ok(Ok(())) => Ok(ticket),
            Ok(Err(refused)) => Err(refused),
            Err(_) => Err(unavailable()),
        }
    }

    /// Whether this node holds the sequencer lease now (by its own last renewal).
    pub fn is_sequencer(&self) -> bool {
        self.inner.holding().is_some()
    }
}

/// Reads entries `from..to` with their leaf hashes (another log's `AuditLog::entries`).
pub type ReadEntries<'a> = dyn FnMut(u64, u64) -> Result<Vec<(Vec<u8>, Hash)>, VaultError> + 'a;

/// Copies a whole log from another store into this database's empty log (`vaultctl
/// migrate`): the entries `0..size` read by `read` (in batches, each with its leaf hash,
/// checked again here) and the source's signed `checkpoints`, each of which must verify
/// with `verifier` and match the copied entries; the database is bound to `verifier`. One
/// transaction: all or nothing. Returns the root at `size`.
pub fn copy_in(
    pool: &Pool,
    verifier: &LogVerifier,
    size: u64,
    read: &mut ReadEntries<'_>,
    checkpoints: &[(u64, String)],
) -> Result<Hash, VaultError> {
    let mut conn = pool.get().map_err(store_err)?;
    let c = conn.client().map_err(store_err)?;
    let mut tx = c.transaction().map_err(|e| db("copy", &e))?;
    let mut prepared = Prepared::default();
    let taken: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM audit_entries) + (SELECT count(*) FROM audit_queue) \
             + (SELECT count(*) FROM audit_checkpoints)",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| db("copy", &e))?;
    if taken != 0 {
        return Err(VaultError::StoreUnavailable(
            "the database already holds an audit log".into(),
        ));
    }
    let mut notes: std::collections::BTreeMap<u64, Checkpoint> = std::collections::BTreeMap::new();
    for (at, note) in checkpoints {
        let cp = Checkpoint::verify(note, verifier).map_err(|e| {
            VaultError::StoreCorrupt(format!("checkpoint at {at} does not verify: {e}"))
        })?;
        if cp.size != *at || cp.size > size {
            return Err(VaultError::StoreCorrupt(format!(
                "checkpoint at {at} is not of that size"
            )));
        }
        notes.insert(cp.size, cp);
    }
    if !notes.contains_key(&size) {
        return Err(VaultError::StoreCorrupt(format!(
            "the source has no signed checkpoint at its size {size}"
        )));
    }
    let mut tree = ChunkedTree::default();
    let root_at = |tree: &ChunkedTree| -> Result<(), VaultError> {
        notes
            .get(&tree.size())
            .map_or(Ok(()), |cp| check_root(tree, cp, pool))
    };
    root_at(&tree)?;
    let mut at = 0;
    while at < size {
        let to = (at + 5_000).min(size);
        let batch = read(at, to)?;
        if batch.len() as u64 != to - at {
            return Err(VaultError::StoreCorrupt(format!(
                "audit entries {at}..{to} missing"
            )));
        }
        let mut rows = EntryRows::default();
        for (k, (bytes, leaf)) in batch.into_iter().enumerate() {
            let idx = at + k as u64;
            if merkle::leaf_hash(&bytes) != leaf {
                return Err(VaultError::StoreCorrupt(format!(
                    "audit entry {idx} does not match its leaf hash"
                )));
            }
            tree.push(leaf);
            root_at(&tree)?;
            // Copied entries were queued by no node here: a queue id no ticket waits for.
            rows.push(idx, -1 - to_i64(idx), bytes, &leaf);
        }
        rows.insert(&mut tx, &mut prepared)
            .map_err(|e| db("copy", &e))?;
        at = to;
    }
    for (at, note) in checkpoints {
        tx.execute(
            "INSERT INTO audit_checkpoints (size, note) VALUES ($1, $2)",
            &[&to_i64(*at), note],
        )
        .map_err(|e| db("copy", &e))?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_verifier', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&verifier.to_string().as_bytes()],
    )
    .map_err(|e| db("copy", &e))?;
    tx.commit().map_err(|e| db("copy", &e))?;
    notes
        .get(&size)
        .map(|cp| cp.root)
        .ok_or(VaultError::AuditUnavailable)
}

/// Binds the database's log to the verifier key (first opener with a signer), or checks it.
fn bind_verifier(pool: &Pool, verifier: &LogVerifier, may_bind: bool) -> Result<(), VaultError> {
    let text = verifier.to_string();
    let mut c = pool.get().map_err(store_err)?;
    if may_bind {
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('audit_verifier', $1) ON CONFLICT DO NOTHING",
            &[&text.as_bytes()],
        )
        .map_err(store_err)?;
    }
    let bound: Option<Vec<u8>> = c
        .query_opt("SELECT value FROM meta WHERE key = 'audit_verifier'", &[])
        .map_err(store_err)?
        .map(|r| r.get(0));
    match bound {
        Some(b) if b == text.as_bytes() => Ok(()),
        Some(_) => Err(VaultError::StoreCorrupt(
            "the database's audit log is signed with another key than this vault's".into(),
        )),
        None => Err(VaultError::AuditUnavailable),
    }
}

/// The lease this node holds: its fencing token, until when (local clock, with margin).
#[derive(Clone, Copy)]
struct Held {
    fence: i64,
    until: Instant,
}

/// Waits up to `timeout` for a notification on `c`, then takes every other one waiting (one
/// look at the database covers them all).
fn wait_notice(c: &mut Client, timeout: Duration) {
    let _ = c.notifications().timeout_iter(timeout).next();
    let mut n = c.notifications();
    let mut pending = n.iter();
    while let Ok(Some(_)) = pending.next() {}
}

/// Channels the database notifies on: queued entries (wakes the sequencer), a grown log
/// (wakes the followers).
const QUEUED: &str = "cdv_audit_queued";
const GROWN: &str = "cdv_audit_grown";

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The lease as this node last renewed it, if it has not run out locally.
    fn holding(&self) -> Option<Held> {
        let l = self.lease.lock().ok()?;
        l.filter(|h| h.until > Instant::now())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn size(&self) -> u64 {
        self.followed.read().map(|f| f.size).unwrap_or(0)
    }

    /// Publishes integrated rows `(idx, queue id, leaf)` in index order from the current
    /// size, and answers the tickets they complete. Rows already followed are skipped.
    fn advance(&self, rows: &[(u64, i64, Hash)]) -> Result<(), VaultError> {
        {
            let mut f = self
                .followed
                .write()
                .map_err(|_| VaultError::AuditUnavailable)?;
            // Leaves pushed past `size` by a failed integration are cut first.
            cut_back(&mut f, &self.pool)?;
            for (idx, _, leaf) in rows {
                if *idx < f.size {
                    continue;
                }
                if *idx != f.size {
                    return Err(VaultError::StoreCorrupt(format!(
                        "audit entry {idx} follows {} entries",
                        f.size
                    )));
                }
                f.tree.push(*leaf);
                f.size += 1;
            }
        }
        self.answer(rows);
        Ok(())
    }

    /// `advance` after this node's own batch committed: `integrate` pushed its leaves to sign
    /// them, so when nothing moved the tree since, only the published size moves (cutting
    /// and pushing them again would read the last chunk back from the database).
    fn advance_own(&self, rows: &[(u64, i64, Hash)]) -> Result<(), VaultError> {
        {
            let mut f = self
                .followed
                .write()
                .map_err(|_| VaultError::AuditUnavailable)?;
            let n = rows.len() as u64;
            let pushed = rows.first().is_some_and(|(idx, _, _)| *idx == f.size)
                && f.tree.size() == f.size + n;
            if !pushed {
                drop(f);
                return self.advance(rows);
            }
            f.size += n;
        }
        self.answer(rows);
        Ok(())
    }

    /// Answers the tickets whose rows are among `rows`.
    fn answer(&self, rows: &[(u64, i64, Hash)]) {
        let Ok(mut w) = self.waiters.lock() else {
            return;
        };
        for (idx, qid, leaf) in rows {
            let Some((t, pos)) = w.rows.remove(qid) else {
                if *qid >= 0 {
                    w.early.insert(
                        *qid,
                        Appended {
                            index: *idx,
                            leaf_hash: *leaf,
                        },
                    );
                    w.early_order.push_back(*qid);
                    while w.early_order.len() > EARLY_KEPT {
                        if let Some(old) = w.early_order.pop_front() {
                            w.early.remove(&old);
                        }
                    }
                }
                continue;
            };
            let done = match w.tickets.get_mut(&t) {
                Some(waiting) => {
                    if let Some(p) = waiting.places.get_mut(pos) {
                        *p = Some(Appended {
                            index: *idx,
                            leaf_hash: *leaf,
                        });
                        waiting.left = waiting.left.saturating_sub(1);
                    }
                    waiting.left == 0
                }
                None => false,
            };
            if done && let Some(waiting) = w.tickets.remove(&t) {
                let places: Vec<Appended> = waiting.places.into_iter().flatten().collect();
                waiting.answer.send(Ok(places));
            }
        }
    }

    /// Answers `AuditUnavailable` to tickets past their deadline (their entries may still be
    /// integrated later; nothing was released for them).
    fn expire(&self) {
        let now = Instant::now();
        let Ok(mut w) = self.waiters.lock() else {
            return;
        };
        let late: Vec<u64> = w
            .tickets
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(t) = w.tickets.remove(&id) {
                t.answer.send(Err(VaultError::AuditUnavailable));
            }
            w.rows.retain(|_, (t, _)| *t != id);
        }
    }

    /// Reads what the log gained since this node's size, checks the newest checkpoint's
    /// signature and root against the followed tree, and publishes it.
    fn follow(&self) -> Result<(), VaultError> {
        self.catch_up()?;
        self.check_latest()
    }

    /// Publishes the entries integrated since this node's size.
    fn catch_up(&self) -> Result<(), VaultError> {
        loop {
            let from = self.size();
            let rows = {
                let mut c = self.pool.get().map_err(store_err)?;
                c.query(
                    "SELECT idx, queue_id, leaf FROM audit_entries WHERE idx >= $1 \
                     ORDER BY idx LIMIT 100000",
                    &[&to_i64(from)],
                )
                .map_err(store_err)?
            };
            let mut got = Vec::with_capacity(rows.len());
            for r in &rows {
                let idx: i64 = r.try_get(0).map_err(|e| db("follow", &e))?;
                let qid: i64 = r.try_get(1).map_err(|e| db("follow", &e))?;
                let leaf: Vec<u8> = r.try_get(2).map_err(|e| db("follow", &e))?;
                got.push((to_u64(idx), qid, hash_of(&leaf)?));
            }
            if got.is_empty() {
                return Ok(());
            }
            self.advance(&got)?;
            if got.len() < 100_000 {
                return Ok(());
            }
        }
    }

    /// The newest checkpoint at or below the followed size must verify and match the tree.
    fn check_latest(&self) -> Result<(), VaultError> {
        let size = self.size();
        let mut c = self.pool.get().map_err(store_err)?;
        let Some(row) = c
            .query_opt(
                "SELECT size, note FROM audit_checkpoints WHERE size <= $1 \
                 ORDER BY size DESC LIMIT 1",
                &[&to_i64(size)],
            )
            .map_err(store_err)?
        else {
            return Ok(());
        };
        drop(c);
        let note: String = row.try_get(1).map_err(|e| db("checkpoint", &e))?;
        let cp = Checkpoint::verify(&note, &self.verifier).map_err(|e| {
            VaultError::StoreCorrupt(format!("audit checkpoint does not verify: {e}"))
        })?;
        let f = self
            .followed
            .read()
            .map_err(|_| VaultError::AuditUnavailable)?;
        check_root(&f.tree, &cp, &self.pool)
    }

    /// Follows the log: on each notification of growth, and every 200 ms regardless; also
    /// looks at the lease (is anyone sequencing?) and expires late tickets.
    fn follow_loop(&self) {
        let mut listener: Option<Client> = None;
        while !self.stopped() {
            if listener.as_ref().is_none_or(Client::is_closed) {
                listener = (self.pool.connector())()
                    .ok()
                    .and_then(|mut c| c.batch_execute(&format!("LISTEN {GROWN}")).ok().map(|()| c));
            }
            if let Err(e) = self.follow() {
                // A checkpoint that does not verify is a corrupt log: stop answering.
                if matches!(e, VaultError::StoreCorrupt(_)) {
                    self.queue_ok.store(false, Ordering::SeqCst);
                }
            }
            self.look_at_lease();
            self.expire();
            match listener.as_mut() {
                Some(l) => wait_notice(l, Duration::from_millis(200)),
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Records whether some node holds an unexpired lease (by the database's clock).
    fn look_at_lease(&self) {
        let alive = self.pool.get().ok().and_then(|mut c| {
            c.query_opt("SELECT expires > now() FROM audit_lease WHERE id = 1", &[])
                .ok()
                .flatten()
                .and_then(|r| r.try_get::<_, bool>(0).ok())
        });
        self.sequenced.store(alive == Some(true), Ordering::SeqCst);
        self.last_look.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Writes queued jobs into `audit_queue`, as many as are waiting in one statement, and
    /// registers their tickets; notifies the sequencer.
    fn queue_loop(&self, rx: &mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < 1024
                && let Ok(j) = rx.try_recv()
            {
                jobs.push(j);
            }
            let (jobs, ids) = match self.queue_batch(jobs) {
                Ok(done) => {
                    self.queue_ok.store(true, Ordering::SeqCst);
                    done
                }
                Err(jobs) => {
                    self.queue_ok.store(false, Ordering::SeqCst);
                    for j in jobs {
                        if let Some(b) = j.bound {
                            let (_, said) = *b;
                            let _ =
                                said.send(Err(BoundRefusal::Failed(VaultError::AuditUnavailable)));
                        }
                        j.answer.send(Err(VaultError::AuditUnavailable));
                    }
                    continue;
                }
            };
            self.register(jobs, ids);
        }
    }

    /// Writes one batch: without store writes, one statement; with them, one transaction
    /// that locks the swapped grants in id order, swaps those still as their callers read
    /// them, writes the rows of every job but those whose swap failed (told `Stale`, their
    /// answers dropped), and queues the entries of the same jobs. Returns the queued jobs and
    /// their rows' ids in entry order, or every job back when nothing was committed.
    fn queue_batch(&self, jobs: Vec<Job>) -> Result<(Vec<Job>, Vec<i64>), Vec<Job>> {
        // One swap per grant per batch: a second (two callers read the same state) is told
        // `Stale` and reads again after this batch.
        let mut seen = std::collections::HashSet::new();
        let runs: Vec<bool> = jobs
            .iter()
            .map(|j| match j.bound.as_deref() {
                Some((b, _)) => b.swap.as_ref().is_none_or(|w| seen.insert(w.id.as_str())),
                None => false,
            })
            .collect();
        let swaps: Vec<&SwapState> = jobs
            .iter()
            .zip(&runs)
            .filter_map(|(j, &r)| {
                j.bound
                    .as_deref()
                    .filter(|_| r)
                    .and_then(|(b, _)| b.swap.as_ref())
            })
            .collect();
        let bound = jobs.iter().any(|j| j.bound.is_some());
        let Ok(mut c) = self.pool.get() else {
            return Err(jobs);
        };
        let Ok((insert, lock, swap)) = (|| {
            Ok::<_, crate::store::StoreError>((
                c.prepare(QUEUE_INSERT)?,
                c.prepare(SWAP_LOCK)?,
                c.prepare(SWAP)?,
            ))
        })() else {
            return Err(jobs);
        };
        let Ok(client) = c.client() else {
            return Err(jobs);
        };
        // Which jobs' entries go in: those without a swap, and those whose swap was done.
        let mut keep = vec![false; jobs.len()];
        let committed = (|| -> Result<Option<Vec<i64>>, postgres::Error> {
            if !bound {
                keep.fill(true);
                return queue_rows(client, &insert, &jobs, &keep);
            }
            let mut tx = client.transaction()?;
            let mut won = std::collections::HashSet::new();
            if !swaps.is_empty() {
                let mut ids: Vec<&str> = swaps.iter().map(|w| w.id.as_str()).collect();
                ids.sort_unstable();
                tx.query(&lock, &[&ids])?;
                let ids: Vec<&str> = swaps.iter().map(|w| w.id.as_str()).collect();
                let old: Vec<&[u8]> = swaps.iter().map(|w| w.old.as_slice()).collect();
                let new: Vec<&[u8]> = swaps.iter().map(|w| w.new.as_slice()).collect();
                for row in tx.query(&swap, &[&ids, &old, &new])? {
                    won.insert(row.try_get::<_, String>(0)?);
                }
            }
            let mut rows: Vec<&RowWrite> = Vec::new();
            for (k, (j, &r)) in keep.iter_mut().zip(jobs.iter().zip(&runs)) {
                *k = match j.bound.as_deref() {
                    None => true,
                    Some((b, _)) => r && b.swap.as_ref().is_none_or(|w| won.contains(&w.id)),
                };
                if let (true, Some((b, _))) = (*k, j.bound.as_deref()) {
                    rows.extend(&b.rows);
                }
            }
            // In one order on every node (table, then key), as the grants above: two nodes'
            // batches writing the same rows cannot deadlock. Stable: writes of one row keep
            // their callers' order.
            rows.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            for w in rows {
                tx.execute(w.sql, &w.params())?;
            }
            let ids = queue_rows(&mut tx, &insert, &jobs, &keep)?;
            // Rolled back (dropped) when the rows do not match the entries.
            if ids.is_some() {
                tx.commit()?;
            }
            Ok(ids)
        })();
        let Ok(Some(ids)) = committed else {
            return Err(jobs);
        };
        let mut queued = Vec::with_capacity(jobs.len());
        for (j, k) in jobs.into_iter().zip(keep) {
            let Job {
                entries,
                answer,
                bound,
            } = j;
            match bound.map(|b| b.1) {
                Some(said) if !k => {
                    let _ = said.send(Err(BoundRefusal::Stale));
                }
                Some(said) => {
                    let _ = said.send(Ok(()));
                    queued.push(Job {
                        entries,
                        answer,
                        bound: None,
                    });
                }
                None => queued.push(Job {
                    entries,
                    answer,
                    bound: None,
                }),
            }
        }
        Ok((queued, ids))
    }

    /// Registers the tickets of `jobs`, whose entries were queued as rows `ids` (in order):
    /// each is answered when its rows are integrated, or at once if they already are.
    fn register(&self, jobs: Vec<Job>, ids: Vec<i64>) {
        let deadline = Instant::now() + self.opts.wait;
        let Ok(mut w) = self.waiters.lock() else {
            return;
        };
        let mut ids = ids.into_iter();
        for j in jobs {
            let n = j.entries.len();
            let mut waiting = Waiting {
                answer: j.answer,
                places: vec![None; n],
                left: n,
                deadline,
            };
            let mut pending = Vec::new();
            for pos in 0..n {
                let Some(id) = ids.next() else { continue };
                // Integrated already (the sequencer beat this registration).
                if let Some(a) = w.early.remove(&id) {
                    if let Some(p) = waiting.places.get_mut(pos) {
                        *p = Some(a);
                        waiting.left -= 1;
                    }
                } else {
                    pending.push((id, pos));
                }
            }
            if waiting.left == 0 {
                let places: Vec<Appended> = waiting.places.into_iter().flatten().collect();
                waiting.answer.send(Ok(places));
                continue;
            }
            let t = w.next;
            w.next += 1;
            for (id, pos) in pending {
                w.rows.insert(id, (t, pos));
            }
            w.tickets.insert(t, waiting);
        }
    }

    /// Takes or renews the lease; `None` when another node holds it.
    fn take_lease(&self, c: &mut Client) -> Option<Held> {
        let asked = Instant::now();
        let ttl_ms = i64::try_from(self.opts.lease.as_millis()).unwrap_or(3000);
        let row = c
            .query_opt(
                "UPDATE audit_lease SET \
                   fence = CASE WHEN holder = $1 AND expires > now() THEN fence ELSE fence + 1 END, \
                   holder = $1, expires = now() + make_interval(secs => $2::bigint / 1000.0) \
                 WHERE id = 1 AND (holder = $1 OR expires <= now()) RETURNING fence",
                &[&self.opts.node, &ttl_ms],
            )
            .ok()??;
        let fence: i64 = row.try_get(0).ok()?;
        // Counted from before the request, less a margin: the database's expiry is later.
        let until = asked + self.opts.lease.mul_f32(0.8);
        Some(Held { fence, until })
    }

    fn set_lease(&self, held: Option<Held>) {
        if let Ok(mut l) = self.lease.lock() {
            *l = held;
        }
    }

    /// Sequences while this node holds the lease; tries to take it every `renew`.
    fn sequencer_loop(&self) {
        let mut conn: Option<Client> = None;
        let mut prepared = Prepared::default();
        // Whether a batch under this lease read the whole queue (`integrate`).
        let mut swept = false;
        let mut renewed = Instant::now() - self.opts.renew;
        while !self.stopped() {
            if conn.as_ref().is_none_or(Client::is_closed) {
                self.set_lease(None);
                prepared = Prepared::default();
                swept = false;
                // Every statement of the sequencer has its index; a plan that scans a table
                // (the queue, whose deleted rows wait for vacuum) costs a batch milliseconds.
                conn = (self.pool.connector())().ok().and_then(|mut c| {
                    c.batch_execute(&format!("LISTEN {QUEUED}; SET enable_seqscan = off"))
                        .ok()
                        .map(|()| c)
                });
                if conn.is_none() {
                    std::thread::sleep(self.opts.renew.min(Duration::from_millis(500)));
                    continue;
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            if renewed.elapsed() >= self.opts.renew || self.holding().is_none() {
                if self.holding().is_none() {
                    swept = false;
                }
                let held = self.take_lease(c);
                self.set_lease(held);
                renewed = Instant::now();
            }
            let Some(held) = self.holding() else {
                std::thread::sleep(self.opts.renew.min(Duration::from_millis(250)));
                continue;
            };
            match self.integrate(c, &mut prepared, held, !swept) {
                Ok(n) if n > 0 => {
                    swept = true;
                    continue;
                }
                Ok(_) => swept = true,
                Err(_) => {
                    // Lost the lease, or the database failed: stop signing until retaken.
                    self.set_lease(None);
                    swept = false;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            wait_notice(c, Duration::from_millis(100));
        }
        // Stopping: hand the lease back at once (another node need not wait for it to lapse).
        if let (Some(held), Some(c)) = (self.holding(), conn.as_mut()) {
            let _ = c.execute(
                "UPDATE audit_lease SET expires = now() WHERE id = 1 AND holder = $1 AND fence = $2",
                &[&self.opts.node, &held.fence],
            );
        }
        self.set_lease(None);
    }

    /// One batch: under the locked lease row (still ours, same fence, unexpired), gives the
    /// oldest queued entries the next indexes, writes them with their leaf hashes and query
    /// columns, deletes them from the queue and adds the signed checkpoint, in one
    /// transaction. Returns how many were integrated.
    fn integrate(
        &self,
        c: &mut Client,
        prepared: &mut Prepared,
        held: Held,
        from_start: bool,
    ) -> Result<usize, VaultError> {
        let signer = self.signer.as_ref().ok_or(VaultError::AuditUnavailable)?;
        let started = Instant::now();
        self.catch_up()?;
        let mut tx = c.transaction().map_err(|e| db("sequence", &e))?;
        let lease = prepared
            .get(
                &mut tx,
                "SELECT holder, fence, expires > now() FROM audit_lease WHERE id = 1 FOR UPDATE",
            )
            .and_then(|q| tx.query_one(&q, &[]))
            .map_err(|e| db("lease", &e))?;
        let (holder, fence, alive): (String, i64, bool) = (
            lease.try_get(0).map_err(|e| db("lease", &e))?,
            lease.try_get(1).map_err(|e| db("lease", &e))?,
            lease.try_get(2).map_err(|e| db("lease", &e))?,
        );
        if holder != self.opts.node || fence != held.fence || !alive {
            return Err(VaultError::AuditUnavailable);
        }
        // The head, and the queue row the last entry came from: queue ids are in commit
        // order (`QUEUE_INSERT`), so every row still queued is after it, except, once after
        // the lease is taken, rows a node queued before that order was kept.
        let last: Option<(i64, i64)> = prepared
            .get(
                &mut tx,
                "SELECT idx + 1, queue_id FROM audit_entries ORDER BY idx DESC LIMIT 1",
            )
            .and_then(|q| tx.query_opt(&q, &[]))
            .and_then(|r| r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
            .map_err(|e| db("head", &e))?;
        let (head, floor) = last.unwrap_or((0, i64::MIN));
        let floor = if from_start { i64::MIN } else { floor };
        let head = to_u64(head);
        // The followed tree is at the database's head (caught up before the transaction;
        // only the lease holder adds entries).
        if self.size() != head {
            return Err(VaultError::AuditUnavailable);
        }
        let limit = to_i64(self.opts.batch as u64);
        let queued = prepared
            .get(
                &mut tx,
                "SELECT id, entry FROM audit_queue WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .and_then(|q| tx.query(&q, &[&floor, &limit]))
            .map_err(|e| db("queue", &e))?;
        let has_zero = head > 0
            || tx
                .query_opt("SELECT 1 FROM audit_checkpoints WHERE size = 0", &[])
                .map_err(|e| db("checkpoint", &e))?
                .is_some();
        if queued.is_empty() && has_zero {
            return Ok(0);
        }
        let n = queued.len();
        let mut ids = Vec::with_capacity(n);
        let mut entries = EntryRows::default();
        let mut rows = Vec::with_capacity(n);
        for (k, r) in queued.iter().enumerate() {
            let id: i64 = r.try_get(0).map_err(|e| db("queue", &e))?;
            let bytes: Vec<u8> = r.try_get(1).map_err(|e| db("queue", &e))?;
            let leaf = merkle::leaf_hash(&bytes);
            let idx = head + k as u64;
            entries.push(idx, id, bytes, &leaf);
            ids.push(id);
            rows.push((idx, id, leaf));
        }
        let new_size = head + n as u64;
        let note = {
            let mut f = self
                .followed
                .write()
                .map_err(|_| VaultError::AuditUnavailable)?;
            // Leaves a failed batch pushed are cut first: this batch's checkpoint must sign
            // the tree of the published entries and this batch's alone.
            cut_back(&mut f, &self.pool)?;
            for (_, _, leaf) in &rows {
                f.tree.push(*leaf);
            }
            let root = merkle::root(&f.tree.view(new_size, &DbLeaves(&self.pool)), new_size)
                .map_err(proof_err)?;
            Checkpoint {
                origin: self.verifier.name().to_owned(),
                size: new_size,
                root,
            }
            .sign(signer)
            .map_err(|e| VaultError::StoreUnavailable(format!("audit checkpoint: {e}")))?
        };
        let written = (|| {
            if n > 0 {
                entries.insert(&mut tx, prepared)?;
                let delete = prepared.get(&mut tx, "DELETE FROM audit_queue WHERE id = ANY($1)")?;
                tx.execute(&delete, &[&ids])?;
            }
            let checkpoint = prepared.get(
                &mut tx,
                "INSERT INTO audit_checkpoints (size, note) VALUES ($1, $2)",
            )?;
            tx.execute(&checkpoint, &[&to_i64(new_size), &note])?;
            let notify = prepared.get(&mut tx, "SELECT pg_notify('cdv_audit_grown', $1)")?;
            tx.execute(&notify, &[&new_size.to_string()])?;
            tx.commit()
        })();
        if let Err(e) = written {
            // The pushed leaves are cut by the next batch or `advance`.
            return Err(db("integrate", &e));
        }
        self.advance_own(&rows)?;
        self.stats.record_batch(
            n as u64,
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        Ok(n.max(1))
    }
}

impl PostgresLog {
    fn inner_entry_rows(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, Vec<u8>, Hash)>, VaultError> {
        let mut c = self.inner.pool.get().map_err(store_err)?;
        c.query(
            "SELECT idx, entry, leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            &[&to_i64(from), &to_i64(to)],
        )
        .map_err(store_err)?
        .iter()
        .map(|r| {
            let idx: i64 = r.try_get(0).map_err(|e| db("entry", &e))?;
            let bytes: Vec<u8> = r.try_get(1).map_err(|e| db("entry", &e))?;
            let leaf: Vec<u8> = r.try_get(2).map_err(|e| db("entry", &e))?;
            let leaf = hash_of(&leaf)?;
            if merkle::leaf_hash(&bytes) != leaf {
                return Err(VaultError::StoreCorrupt(format!(
                    "audit entry {idx} does not match its leaf hash"
                )));
            }
            Ok((to_u64(idx), bytes, leaf))
        })
        .collect()
    }

    /// Makes sure the followed tree covers `size` (a checkpoint another node just wrote).
    fn covering(&self, size: u64) -> Result<(), VaultError> {
        if size > self.inner.size() {
            self.inner.catch_up()?;
        }
        if size > self.inner.size() {
            return Err(VaultError::AuditNotFound);
        }
        Ok(())
    }

    fn with_view<T>(
        &self,
        size: u64,
        f: impl FnOnce(&crate::audit::tree::TreeView<'_>) -> Result<T, ProofError>,
    ) -> Result<T, VaultError> {
        self.covering(size)?;
        let followed = self
            .inner
            .followed
            .read()
            .map_err(|_| VaultError::AuditUnavailable)?;
        let reader = DbLeaves(&self.inner.pool);
        let view = followed.tree.view(size, &reader);
        f(&view).map_err(proof_err)
    }
}

impl AuditLog for PostgresLog {
    fn submit(&self, entries: Vec<AuditEntry>) -> Ticket {
        PostgresLog::submit(self, entries)
    }

    fn submit_with(
        &self,
        entries: Vec<AuditEntry>,
        write: BoundWrite,
    ) -> Result<Ticket, BoundRefusal> {
        match write.take::<PgBound>() {
            Some(bound) => self.submit_bound(entries, bound),
            None => Err(BoundRefusal::Failed(VaultError::AuditUnavailable)),
        }
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn is_healthy(&self) -> bool {
        self.inner.queue_ok.load(Ordering::SeqCst) && self.inner.sequenced.load(Ordering::SeqCst)
    }

    fn probe(&self) -> bool {
        self.inner.look_at_lease();
        let reachable = self
            .inner
            .pool
            .get()
            .and_then(|mut c| c.query_opt("SELECT 1", &[]))
            .is_ok();
        if reachable {
            self.inner.queue_ok.store(true, Ordering::SeqCst);
        }
        reachable && self.is_healthy()
    }

    fn entry(&self, index: u64) -> Result<Vec<u8>, VaultError> {
        self.entries(index, index.saturating_add(1))?
            .pop()
            .map(|(b, _)| b)
            .ok_or(VaultError::AuditNotFound)
    }

    fn leaf_hash(&self, index: u64) -> Result<Hash, VaultError> {
        self.entries(index, index.saturating_add(1))?
            .pop()
            .map(|(_, h)| h)
            .ok_or(VaultError::AuditNotFound)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, Hash)>, VaultError> {
        let to = to.min(self.size());
        if from >= to {
            return Ok(Vec::new());
        }
        let rows = self.inner_entry_rows(from, to)?;
        if rows.len() as u64 != to - from {
            return Err(VaultError::StoreCorrupt("audit entries missing".into()));
        }
        Ok(rows.into_iter().map(|(_, b, h)| (b, h)).collect())
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, VaultError> {
        self.with_view(size, |v| merkle::inclusion_proof(v, index, size))
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        self.with_view(to, |v| merkle::consistency_proof(v, from, to))
    }

    fn latest_checkpoint(&self) -> Result<String, VaultError> {
        let mut c = self.inner.pool.get().map_err(store_err)?;
        let row = c
            .query_opt(
                "SELECT note FROM audit_checkpoints WHERE size <= $1 ORDER BY size DESC LIMIT 1",
                &[&to_i64(self.size())],
            )
            .map_err(store_err)?
            .ok_or(VaultError::AuditUnavailable)?;
        row.try_get(0).map_err(|e| db("checkpoint", &e))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, VaultError> {
        let mut c = self.inner.pool.get().map_err(store_err)?;
        c.query_opt(
            "SELECT note FROM audit_checkpoints WHERE size = $1",
            &[&to_i64(size)],
        )
        .map_err(store_err)?
        .map(|r| r.try_get(0).map_err(|e| db("checkpoint", &e)))
        .transpose()
    }

    fn verifier(&self) -> LogVerifier {
        self.inner.verifier.clone()
    }

    fn query(
        &self,
        q: &AuditQuery,
        cursor: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page, VaultError> {
        let limit = limit.clamp(1, 1000);
        let size = to_i64(self.size());
        let subject = q.subject.map(|p| p.as_bytes().to_vec());
        let official = q.official.as_ref().map(|o| o.as_str().to_owned());
        let agency = q.agency.as_ref().map(|a| a.as_str().to_owned());
        let purpose = q.purpose.as_ref().map(|p| p.as_str().to_owned());
        let event = q.event.map(|e| e.as_str().to_owned());
        let from = q.from.map(|t| t.as_millis());
        let to = q.to.map(|t| t.as_millis());
        let cursor = cursor.map(to_i64);
        let n = to_i64(limit as u64);
        // Only bound parameters: the filters never become SQL text.
        let mut sql = String::from("SELECT idx FROM audit_entries WHERE idx < $1");
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&size];
        macro_rules! filter {
            ($val:expr, $col:literal, $op:literal) => {
                if let Some(v) = $val.as_ref() {
                    params.push(v);
                    sql.push_str(&format!(
                        concat!(" AND ", $col, " ", $op, " ${}"),
                        params.len()
                    ));
                }
            };
        }
        filter!(subject, "subject", "=");
        filter!(official, "official", "=");
        filter!(agency, "agency", "=");
        filter!(purpose, "purpose", "=");
        filter!(event, "event", "=");
        filter!(from, "at_ms", ">=");
        filter!(to, "at_ms", "<=");
        if newest_first {
            filter!(cursor, "idx", "<");
            sql.push_str(" ORDER BY idx DESC");
        } else {
            filter!(cursor, "idx", ">");
            sql.push_str(" ORDER BY idx");
        }
        params.push(&n);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
        let mut c = self.inner.pool.get().map_err(store_err)?;
        let rows = c
            .client()
            .map_err(store_err)?
            .query(sql.as_str(), &params)
            .map_err(|e| db("query", &e))?;
        let indexes: Vec<u64> = rows
            .iter()
            .filter_map(|r| r.try_get::<_, i64>(0).ok())
            .map(to_u64)
            .collect();
        let next = (indexes.len() >= limit)
            .then(|| indexes.last().copied())
            .flatten();
        Ok(Page { indexes, next })
    }

    fn verify_all(&self) -> Result<VerifyReport, VaultError> {
        self.inner.catch_up()?;
        let size = self.size();
        let notes: Vec<(u64, String)> = {
            let mut c = self.inner.pool.get().map_err(store_err)?;
            c.query(
                "SELECT size, note FROM audit_checkpoints WHERE size <= $1 ORDER BY size",
                &[&to_i64(size)],
            )
            .map_err(store_err)?
            .iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get(0).map_err(|e| db("checkpoint", &e))?),
                    r.try_get(1).map_err(|e| db("checkpoint", &e))?,
                ))
            })
            .collect::<Result<_, VaultError>>()?
        };
        let mut notes = notes.into_iter().peekable();
        let mut tree = ChunkedTree::default();
        let reader = DbLeaves(&self.inner.pool);
        let mut checkpoints = 0;
        let mut check = |tree: &ChunkedTree,
                         notes: &mut std::iter::Peekable<std::vec::IntoIter<(u64, String)>>|
         -> Result<(), VaultError> {
            while let Some((s, note)) = notes.next_if(|(s, _)| *s == tree.size()) {
                let cp = Checkpoint::verify(&note, &self.inner.verifier).map_err(|e| {
                    VaultError::StoreCorrupt(format!("checkpoint at {s} does not verify: {e}"))
                })?;
                if cp.size != s {
                    return Err(VaultError::StoreCorrupt(format!(
                        "checkpoint at {s} names another size"
                    )));
                }
                check_root(tree, &cp, &self.inner.pool)?;
                checkpoints += 1;
            }
            Ok(())
        };
        check(&tree, &mut notes)?;
        let mut at = 0;
        while at < size {
            let to = (at + 10_000).min(size);
            let rows = self.inner_entry_rows(at, to)?;
            for (idx, _, leaf) in rows {
                if idx != tree.size() {
                    return Err(VaultError::StoreCorrupt(format!(
                        "audit entry {} missing",
                        tree.size()
                    )));
                }
                tree.push(leaf);
                check(&tree, &mut notes)?;
            }
            if tree.size() != to {
                return Err(VaultError::StoreCorrupt(format!(
                    "audit entry {} missing",
                    tree.size()
                )));
            }
            at = to;
        }
        if notes.next().is_some() {
            return Err(VaultError::StoreCorrupt(
                "a checkpoint names a size between entries that do not exist".into(),
            ));
        }
        let root = merkle::root(&tree.view(size, &reader), size).map_err(proof_err)?;
        Ok(VerifyReport {
            entries: size,
            checkpoints,
            root,
        })
    }

    fn stats(&self) -> Option<&WriterStats> {
        Some(&self.inner.stats)
    }

    fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        self.inner.stop.store(true, Ordering::SeqCst);
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        // Tickets still waiting are answered unavailable as their answers drop.
        if let Ok(mut w) = self.inner.waiters.lock() {
            w.rows.clear();
            w.tickets.clear();
        }
    }
}

impl Drop for PostgresLog {
    fn drop(&mut self) {
        AuditLog::shutdown(self);
    }
}

/// Opens a `PostgresLog` once the vault's keyring gives the signer.
#[derive(Debug, Clone)]
pub struct PostgresLogIn {
    /// The database.
    pub pool: Arc<Pool>,
    /// Thread tuning and this node's name.
    pub opts: LogOptions,
}

impl crate::audit::AuditOpener for PostgresLogIn {
    fn open(&self, signer: LogSigner) -> Result<Arc<dyn AuditLog>, VaultError> {
        let verifier = signer.verifier();
        Ok(Arc::new(PostgresLog::open(
            Arc::clone(&self.pool),
            Some(signer),
            verifier,
            self.opts.clone(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, EntryContext, SafeId};
    use crate::clock::Timestamp;
    use crate::consent::StandingConsent;
    use crate::id::BlindId;
    use crate::id::FieldName;
    use crate::postgres::PostgresStore;
    use crate::postgres::testdb;
    use crate::store::{
        AuditedStore as _, ConsentStore as _, EncodedRecord, GrantStore as _, Landing,
        RecordStore as _, SealedRecord, StoreError, Write,
    };

    fn signer() -> LogSigner {
        LogSigner::from_seed("test.vault/audit", &[42; 32]).unwrap()
    }

    fn entry(i: u64) -> AuditEntry {
        let ctx = EntryContext {
            time: Timestamp::from_millis(1_700_000_000_000 + i as i64),
            policy: [1; 32],
        };
        AuditEntry::record_written(
            &ctx,
            &Actor::operator(SafeId::parse("vaultctl").unwrap()),
            &Pseudonym::from_bytes([(i % 3) as u8; 32]),
            &[FieldName::parse("full_name").unwrap()],
        )
        .unwrap()
    }

    fn fast(node: &str) -> LogOptions {
        LogOptions {
            lease: Duration::from_millis(1500),
            renew: Duration::from_millis(300),
            wait: Duration::from_secs(3),
            ..LogOptions::new(node)
        }
    }

    fn node(pool: &Arc<Pool>, name: &str) -> PostgresLog {
        let s = signer();
        let v = s.verifier();
        PostgresLog::open(Arc::clone(pool), Some(s), v, fast(name)).unwrap()
    }

    fn setup() -> (Arc<Pool>, testdb::Cluster) {
        let (pool, cluster) = testdb::fresh_pool(16);
        (Arc::new(pool), cluster)
    }

    #[test]
    fn entries_get_indexes_proofs_checkpoints_and_verify() {
        let (pool, _c) = setup();
        let log = node(&pool, "a");
        let made: Vec<AuditEntry> = (0..100).map(entry).collect();
        let mut seen = Vec::new();
        for e in &made[..40] {
            let a = log.append(vec![e.clone()]).unwrap();
            seen.push(a[0]);
        }
        let many = log.append(made[40..].to_vec()).unwrap();
        assert_eq!(many.len(), 60);
        seen.extend(many);
        assert_eq!(
            seen.iter().map(|a| a.index).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        assert_eq!(log.size(), 100);
        let cp = Checkpoint::verify(&log.latest_checkpoint().unwrap(), &log.verifier()).unwrap();
        assert_eq!(cp.size, 100);
        for a in &seen {
            assert_eq!(log.entry(a.index).unwrap(), made[a.index as usize].bytes());
            assert_eq!(log.leaf_hash(a.index).unwrap(), a.leaf_hash);
            let proof = log.inclusion_proof(a.index, 100).unwrap();
            merkle::verify_inclusion(a.index, 100, &a.leaf_hash, &proof, &cp.root).unwrap();
        }
        let old =
            Checkpoint::verify(&log.checkpoint_at(40).unwrap().unwrap(), &log.verifier()).unwrap();
        let proof = log.consistency_proof(40, 100).unwrap();
        merkle::verify_consistency(40, 100, &old.root, &cp.root, &proof).unwrap();
        let report = log.verify_all().unwrap();
        assert_eq!((report.entries, report.root), (100, cp.root));
        // Queries by the indexed columns, both orders, paged.
        let q = AuditQuery {
            subject: Some(Pseudonym::from_bytes([1; 32])),
            ..Default::default()
        };
        let page = log.query(&q, None, 10, false).unwrap();
        assert_eq!(page.indexes, (0..10).map(|k| 1 + 3 * k).collect::<Vec<_>>());
        let next = log.query(&q, page.next, 1000, false).unwrap();
        assert_eq!(next.indexes.first(), Some(&31));
        let newest = log.query(&q, None, 2, true).unwrap();
        assert_eq!(newest.indexes, vec![97, 94]);
        let q = AuditQuery {
            from: Some(Timestamp::from_millis(1_700_000_000_095)),
            ..Default::default()
        };
        assert_eq!(log.query(&q, None, 100, false).unwrap().indexes.len(), 5);
    }

    #[test]
    fn two_nodes_share_one_log_with_one_sequencer_and_takeover() {
        let (pool, _c) = setup();
        let a = node(&pool, "a");
        let b = node(&pool, "b");
        let writers: Vec<_> = [&a, &b]
            .into_iter()
            .map(|log| {
                (0..30)
                    .map(|i| log.submit(vec![entry(i)]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut indexes: Vec<u64> = writers
            .into_iter()
            .flatten()
            .map(|t| t.wait().unwrap().appended()[0].index)
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..60).collect::<Vec<_>>());
        assert!(
            a.is_sequencer() != b.is_sequencer(),
            "exactly one sequences"
        );
        let (leader, other) = if a.is_sequencer() { (a, b) } else { (b, a) };
        // The other node proves against the leader's checkpoints.
        let cp =
            Checkpoint::verify(&other.latest_checkpoint().unwrap(), &other.verifier()).unwrap();
        assert_eq!(cp.size, 60);
        let proof = other.inclusion_proof(7, 60).unwrap();
        merkle::verify_inclusion(7, 60, &other.leaf_hash(7).unwrap(), &proof, &cp.root).unwrap();
        // The leader goes; the other takes over within the lease and sequences on.
        drop(leader);
        let started = Instant::now();
        let got = other.append(vec![entry(99)]);
        let took = started.elapsed();
        assert_eq!(got.unwrap()[0].index, 60);
        assert!(other.is_sequencer());
        // Within the lease (1.5 s) and a renewal, with room for a loaded machine.
        assert!(took < Duration::from_secs(5), "takeover took {took:?}");
        assert_eq!(other.verify_all().unwrap().entries, 61);
    }

    #[test]
    fn a_node_that_lost_the_lease_writes_nothing_and_callers_get_unavailable() {
        let (pool, _c) = setup();
        let a = node(&pool, "a");
        a.append(vec![entry(0)]).unwrap();
        assert!(a.is_sequencer());
        // Another node takes the lease (a long one) without sequencing: a is fenced out.
        let mut c = pool.get().unwrap();
        c.client()
            .unwrap()
            .execute(
                "UPDATE audit_lease SET holder = 'usurper', fence = fence + 1, \
                 expires = now() + interval '1 hour'",
                &[],
            )
            .unwrap();
        let checkpoints = |c: &mut super::super::pool::Conn<'_>| -> i64 {
            c.client()
                .unwrap()
                .query_one("SELECT count(*) FROM audit_checkpoints", &[])
                .unwrap()
                .get(0)
        };
        let before = checkpoints(&mut c);
        let started = Instant::now();
        assert!(matches!(
            a.append(vec![entry(1)]),
            Err(VaultError::AuditUnavailable)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!a.is_sequencer());
        assert_eq!(checkpoints(&mut c), before, "a fenced node signed nothing");
        assert_eq!(a.size(), 1);
        // The lease lapses: a takes it back and integrates what waited in the queue.
        c.client()
            .unwrap()
            .execute(
                "UPDATE audit_lease SET expires = now() - interval '1 second'",
                &[],
            )
            .unwrap();
        assert_eq!(a.append(vec![entry(2)]).unwrap()[0].index, 2);
        // The entry queued while fenced out was integrated after the lease came back.
        let queued: serde_json::Value = serde_json::from_slice(&a.entry(1).unwrap()).unwrap();
        assert_eq!(queued["time"], "2023-11-14T22:13:20.001Z");
        assert_eq!(a.verify_all().unwrap().entries, 3);
    }

    #[test]
    fn a_ticket_whose_rows_were_integrated_before_it_was_registered_is_answered() {
        let (pool, _c) = setup();
        let log = PostgresLog::open(
            Arc::clone(&pool),
            Some(signer()),
            signer().verifier(),
            LogOptions {
                sequence: false,
                ..fast("a")
            },
        )
        .unwrap();
        // The sequencer (here: by hand) answers rows 41 and 42 before the queue writer has
        // registered the ticket their insert returned.
        let leaf = merkle::leaf_hash(b"e");
        log.inner.answer(&[(7, 41, leaf), (8, 42, leaf)]);
        let (ticket, answer) = pair();
        log.inner.register(
            vec![Job {
                entries: vec![entry(1), entry(2)],
                answer,
                bound: None,
            }],
            vec![41, 42],
        );
        let places = ticket.wait().unwrap().into_appended();
        assert_eq!(
            places.iter().map(|a| a.index).collect::<Vec<_>>(),
            vec![7, 8]
        );
        // One row early, one late: answered when the second comes.
        log.inner.answer(&[(9, 43, leaf)]);
        let (ticket, answer) = pair();
        log.inner.register(
            vec![Job {
                entries: vec![entry(3), entry(4)],
                answer,
                bound: None,
            }],
            vec![43, 44],
        );
        log.inner.answer(&[(10, 44, leaf)]);
        let places = ticket.wait().unwrap().into_appended();
        assert_eq!(
            places.iter().map(|a| a.index).collect::<Vec<_>>(),
            vec![9, 10]
        );
    }

    #[test]
    fn a_batch_after_a_failed_one_signs_only_the_published_entries_and_its_own() {
        let (pool, _c) = setup();
        let log = node(&pool, "a");
        log.append(vec![entry(0)]).unwrap();
        // What a batch whose commit failed (the primary lost) leaves in the tree.
        log.inner.followed.write().unwrap().tree.push([9; 32]);
        let a = log.append(vec![entry(1)]).unwrap();
        assert_eq!(a[0].index, 1);
        let report = log.verify_all().unwrap();
        assert_eq!(report.entries, 2);
        let cp = Checkpoint::verify(&log.latest_checkpoint().unwrap(), &log.verifier()).unwrap();
        assert_eq!((cp.size, cp.root), (2, report.root));
    }

    #[test]
    fn a_changed_entry_or_a_foreign_key_is_caught() {
        let (pool, _c) = setup();
        let a = node(&pool, "a");
        a.append((0..5).map(entry).collect()).unwrap();
        let mut c = pool.get().unwrap();
        c.client()
            .unwrap()
            .execute(
                "UPDATE audit_entries SET entry = $1 WHERE idx = 3",
                &[&entry(9).bytes()],
            )
            .unwrap();
        drop(c);
        assert!(matches!(a.verify_all(), Err(VaultError::StoreCorrupt(_))));
        assert!(matches!(a.entry(3), Err(VaultError::StoreCorrupt(_))));
        let other = LogSigner::from_seed("test.vault/audit", &[7; 32]).unwrap();
        let v = other.verifier();
        let err = PostgresLog::open(Arc::clone(&pool), Some(other), v, fast("b")).unwrap_err();
        assert!(matches!(err, VaultError::StoreCorrupt(_)), "{err:?}");
    }

    #[test]
    fn queue_ids_follow_commits_and_a_new_sequencer_reads_the_whole_queue_once() {
        let (pool, _c) = setup();
        let a = node(&pool, "a");
        for i in 0..3 {
            a.append(vec![entry(i)]).unwrap();
        }
        let sql = |q: &'static str| -> i64 {
            pool.get()
                .unwrap()
                .query_opt(q, &[])
                .unwrap()
                .unwrap()
                .get(0)
        };
        // Ids come from the head row, one after another.
        let first = sql("SELECT min(queue_id) FROM audit_entries");
        assert_eq!(sql("SELECT max(queue_id) FROM audit_entries"), first + 2);
        assert_eq!(sql("SELECT next FROM audit_queue_head"), first + 3);
        drop(a);
        // A row queued below the last integrated id (as one queued before the order was kept
        // could be) is found by the next sequencer's first batch.
        assert!(first > 0);
        let straggler = entry(7);
        let mut c = pool.get().unwrap();
        c.client()
            .unwrap()
            .execute(
                "INSERT INTO audit_queue (id, entry) VALUES ($1, $2)",
                &[&(first - 1), &straggler.bytes()],
            )
            .unwrap();
        drop(c);
        let b = node(&pool, "b");
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.size() < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.size(), 4);
        assert_eq!(b.entry(3).unwrap(), straggler.bytes());
        assert_eq!(b.append(vec![entry(8)]).unwrap()[0].index, 4);
        assert_eq!(b.verify_all().unwrap().entries, 5);
    }

    /// A grant with `uses` uses, stored through `store`; the time at which it is live.
    fn live_grant(store: &PostgresStore, id: &str, uses: u32) -> Timestamp {
        let mut g = crate::store::test_grant(id, 10_000);
        g.max_uses = uses;
        assert!(store.insert_grant(&g).unwrap());
        Timestamp::from_secs(9_900)
    }

    #[test]
    fn uses_spent_on_two_nodes_land_with_their_entries_and_no_more_than_the_grant_allows() {
        let (pool, _c) = setup();
        let store = PostgresStore::new(Arc::clone(&pool));
        let now = live_grant(&store, "g-race", 50);
        let logs = [Arc::new(node(&pool, "a")), Arc::new(node(&pool, "b"))];
        let won = AtomicU64::new(0);
        let refused = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (store, log) = (store.clone(), Arc::clone(&logs[t % 2]));
                let (won, refused) = (&won, &refused);
                s.spawn(move || {
                    for i in 0..10 {
                        let spent = store.update_grant_state_audited(
                            "g-race",
                            &mut |st| st.spend(now),
                            &mut |_| Ok(vec![entry(t as u64 * 100 + i)]),
                            &*log,
                        );
                        match spent {
                            Ok((_, ticket)) => {
                                assert_eq!(ticket.wait().unwrap().into_appended().len(), 1);
                                won.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(StoreError::Refused(VaultError::GrantExhausted)) => {
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                });
            }
        });
        assert_eq!(won.load(Ordering::SeqCst), 50);
        assert_eq!(refused.load(Ordering::SeqCst), 30);
        assert_eq!(store.grant("g-race").unwrap().unwrap().uses, 50);
        // Exactly one entry per spent use, whichever node queued it.
        for log in &logs {
            log.covering(50).unwrap();
            assert_eq!(log.size(), 50);
        }
        let logged: i64 = pool
            .get()
            .unwrap()
            .query_opt("SELECT count(*) FROM audit_entries", &[])
            .unwrap()
            .unwrap()
            .get(0);
        assert_eq!(logged, 50);
        assert!(logs[0].verify_all().unwrap().entries == 50);
    }

    #[test]
    fn a_change_whose_entries_cannot_be_queued_is_not_made() {
        let (pool, _c) = setup();
        let store = PostgresStore::new(Arc::clone(&pool));
        let now = live_grant(&store, "g-fail", 2);
        let log = node(&pool, "a");
        let exec = |sql: &str| {
            let mut c = pool.get().unwrap();
            c.client().unwrap().batch_execute(sql).unwrap();
        };
        // Every queue insert fails from here: the swap in its transaction is rolled back.
        exec("ALTER TABLE audit_queue ADD CONSTRAINT refuse_all CHECK (false) NOT VALID");
        let revoke = |log: &PostgresLog, id: &str, landing: Landing| {
            store.update_grant_audited(
                id,
                landing,
                &mut |g| {
                    g.end(crate::grant::GrantStatus::Revoked, now);
                    Ok(vec![entry(1)])
                },
                &[],
                log,
            )
        };
        let spend = |log: &PostgresLog| {
            store.update_grant_state_audited(
                "g-fail",
                &mut |st| st.spend(now),
                &mut |_| Ok(vec![entry(2)]),
                log,
            )
        };
        assert!(matches!(
            spend(&log),
            Err(StoreError::Refused(VaultError::AuditUnavailable))
        ));
        assert!(matches!(
            revoke(&log, "g-fail", Landing::EntriesFirst),
            Err(StoreError::Refused(VaultError::AuditUnavailable))
        ));
        let citizen = BlindId::from_bytes([0xab; 32]);
        let consent = StandingConsent {
            id: "c-kept".into(),
            citizen: citizen.to_string(),
            agency: "ubnd-phuong-sai-gon".into(),
            purpose: "construction_permit".into(),
            fields: vec!["full_name".into()],
            created: now,
            expires: now.plus_secs(86_400),
            grant_id: "g-fail".into(),
            withdrawn: None,
        };
        let kept = [Write::Consent(&consent)];
        assert!(matches!(
            store.write_audited(&kept, vec![entry(3)], &log),
            Err(StoreError::Refused(VaultError::AuditUnavailable))
        ));
        let g = store.grant("g-fail").unwrap().unwrap();
        assert_eq!(
            (g.uses, g.status_at(now)),
            (0, crate::grant::GrantStatus::Active)
        );
        assert!(store.consents_of_citizen(&citizen).unwrap().is_empty());
        // Records, and an erasure, likewise.
        let record = EncodedRecord::new(&SealedRecord {
            dek_version: 1,
            wrapped_dek: vec![1; 60],
            audit_salt: [2; 32],
            record_version: 1,
            fields: std::collections::BTreeMap::new(),
        });
        let (kept_one, new_one) = (BlindId::from_bytes([1; 32]), BlindId::from_bytes([3; 32]));
        store.put_encoded(&[(kept_one, record.clone())]).unwrap();
        let written = [(new_one, record.clone())];
        for w in [Write::Records(&written), Write::Erase(&kept_one)] {
            assert!(matches!(
                store.write_audited(&[w], vec![entry(4)], &log),
                Err(StoreError::Refused(VaultError::AuditUnavailable))
            ));
        }
        assert!(store.citizen(&new_one).unwrap().is_none());
        assert!(store.citizen(&kept_one).unwrap().is_some());
        // A revocation fails closed: it takes effect without its entry, and says so.
        live_grant(&store, "g-closed", 1);
        let (g, t) = revoke(&log, "g-closed", Landing::ChangeFirst).unwrap();
        assert_eq!(g.status_at(now), crate::grant::GrantStatus::Revoked);
        assert!(matches!(t.wait(), Err(VaultError::AuditUnavailable)));
        // Once entries can be queued again, the same changes land with them.
        exec("ALTER TABLE audit_queue DROP CONSTRAINT refuse_all");
        let (_, t) = spend(&log).unwrap();
        t.wait().unwrap();
        let (g, t) = revoke(&log, "g-fail", Landing::ChangeFirst).unwrap();
        assert_eq!(t.wait().unwrap().into_appended()[0].index, 1);
        assert_eq!(
            (g.uses, g.status_at(now)),
            (1, crate::grant::GrantStatus::Revoked)
        );
        let t = store.write_audited(&kept, vec![entry(3)], &log).unwrap();
        assert_eq!(t.wait().unwrap().into_appended()[0].index, 2);
        assert_eq!(
            store.consents_of_citizen(&citizen).unwrap(),
            vec![consent.clone()]
        );
        for w in [Write::Records(&written), Write::Erase(&kept_one)] {
            store
                .write_audited(&[w], vec![entry(4)], &log)
                .unwrap()
                .wait()
                .unwrap();
        }
        assert!(store.citizen(&new_one).unwrap().is_some());
        assert!(store.citizen(&kept_one).unwrap().is_none());
        // A change that records nothing is made without a queue row.
        let (_, t) = store
            .update_grant_audited(
                "g-fail",
                Landing::ChangeFirst,
                &mut |_| Ok(Vec::new()),
                &[],
                &log,
            )
            .unwrap();
        assert!(t.wait().unwrap().into_appended().is_empty());
    }
}
