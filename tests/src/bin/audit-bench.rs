//! Audit-log benchmark: durable appends per second at 1, 16 and 256 concurrent writers
//! against a raw ceiling measured in the same run (the same framing, batching and fdatasync,
//! without hashing, leaf index, signing or checkpoints), offline verification rate, inclusion
//! proof latency and disk bytes per entry.
//!
//! `cargo run --release -p vault-tests --bin audit-bench -- [--seconds S] [--entries N]`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark aborts on any setup failure"
)]

use std::io::Write;
use std::path::Path;

/// The same allocator as the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use vault_core::audit::export::{export_line, verify_export};
use vault_core::audit::file::{FsFile, LogFile};
use vault_core::audit::{
    Access, Actor, AuditEntry, EntryContext, LogSigner, Pseudonym, SafeId, SegmentLog,
};
use vault_core::{FieldName, Timestamp};

use vault_tests::arg_u64 as arg;

/// Realistic `record.released` entries (about 520 bytes each).
/// The pool's i-th citizen pseudonym: uniformly spread like the real HMAC pseudonyms.
fn subject(i: u64) -> [u8; 32] {
    vault_core::crypto::sha256(&i.to_be_bytes())
}

fn entry_pool(n: usize) -> Vec<AuditEntry> {
    let id = |s: &str| SafeId::parse(s).unwrap();
    let fields: Vec<FieldName> = [
        "full_name",
        "date_of_birth",
        "sex",
        "permanent_address",
        "phone",
        "health_insurance_number",
        "social_insurance_number",
        "nationality",
    ]
    .iter()
    .map(|f| FieldName::parse(f).unwrap())
    .collect();
    let (purpose, dossier, grant) = (
        id("health_insurance_card"),
        id("HS-2026-004211"),
        id("g-7KQ2M9XA"),
    );
    let actor = Actor::official(
        id("can-bo-0042"),
        id("bhxh-tphcm"),
        Some(id("phong-cap-the")),
    );
    (0..n)
        .map(|i| {
            let ctx = EntryContext {
                time: Timestamp::from_millis(1_795_000_000_000 + i as i64),
                policy: [7; 32],
            };
            let p = subject(i as u64);
            let access = Access {
                purpose: Some(&purpose),
                dossier: &dossier,
                fields: &fields,
                grant: Some(&grant),
                break_glass: false,
                consent: None,
            };
            AuditEntry::record_released(&ctx, &actor, &Pseudonym::from_bytes(p), &access).unwrap()
        })
        .collect()
}

type Reply = mpsc::SyncSender<u64>;

/// The ceiling: one writer thread, the same record framing, one fdatasync per batch.
fn raw_log(path: &Path) -> mpsc::Sender<(Vec<u8>, Reply)> {
    let (tx, rx) = mpsc::channel::<(Vec<u8>, Reply)>();
    let file = FsFile::open(path).unwrap();
    std::thread::spawn(move || {
        let mut len = 0u64;
        let mut index = 0u64;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < 16_384 {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let mut buf = Vec::new();
            for (bytes, _) in &batch {
                buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                buf.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
                buf.extend_from_slice(bytes);
            }
            file.write_at(len, &buf).unwrap();
            file.sync().unwrap();
            len += buf.len() as u64;
            for (_, reply) in batch {
                let _ = reply.send(index);
                index += 1;
            }
        }
    });
    tx
}

fn run_writers(threads: usize, secs: f64, op: Arc<dyn Fn(usize) + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, op) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&op));
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    op(i);
                    i += threads;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    use std::os::unix::fs::MetadataExt;
                    // Allocated blocks, not apparent length (sled preallocates sparse files).
                    if e.path().is_dir() {
                        dir_size(&e.path())
                    } else {
                        e.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let secs = arg("--seconds", 3) as f64;
    let n_verify = arg("--entries", 1_000_000);
    let rounds = arg("--rounds", 2);
    let work = tempfile::tempdir().unwrap();
    let pool = Arc::new(entry_pool(4096));
    let signer = || LogSigner::from_seed("bench.vault/audit", &[9; 32]).unwrap();
    println!(
        "# Audit log benchmark ({} s per run, {rounds} alternating rounds, {})\n",
        secs,
        std::env::consts::ARCH
    );
    println!("| writers | raw ceiling appends/s | audit log appends/s | ratio |");
    println!("|---:|---:|---:|---:|");
    for &threads in &[1usize, 16, 256] {
        let (mut raw_total, mut log_total) = (0.0, 0.0);
        for round in 0..rounds {
            let raw_path = work.path().join(format!("raw-{threads}-{round}.log"));
            let tx = raw_log(&raw_path);
            let pool_raw = Arc::clone(&pool);
            raw_total += run_writers(
                threads,
                secs,
                Arc::new(move |i| {
                    let (reply, answer) = mpsc::sync_channel(1);
                    tx.send((pool_raw[i % pool_raw.len()].bytes().to_vec(), reply))
                        .unwrap();
                    answer.recv().unwrap();
                }),
            );
            let log = Arc::new(
                SegmentLog::open(
                    &work.path().join(format!("log-{threads}-{round}")),
                    signer(),
                )
                .unwrap(),
            );
            let pool_log = Arc::clone(&pool);
            let l = Arc::clone(&log);
            log_total += run_writers(
                threads,
                secs,
                Arc::new(move |i| {
                    l.append_one(pool_log[i % pool_log.len()].clone()).unwrap();
                }),
            );
            log.shutdown();
        }
        let (raw, log) = (raw_total / rounds as f64, log_total / rounds as f64);
        println!("| {threads} | {raw:.0} | {log:.0} | {:.2} |", log / raw);
    }

    // Offline verification of an export of n_verify entries.
    let dir = work.path().join("big");
    let log = SegmentLog::open(&dir, signer()).unwrap();
    let start = Instant::now();
    let mut added = 0u64;
    while added < n_verify {
        let k = (n_verify - added).min(8192) as usize;
        log.append(
            (0..k)
                .map(|i| pool[(added as usize + i) % pool.len()].clone())
                .collect(),
        )
        .unwrap();
        added += k as u64;
    }
    let fill_rate = n_verify as f64 / start.elapsed().as_secs_f64();
    let export_path = work.path().join("export.jsonl");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&export_path).unwrap());
        for i in 0..n_verify {
            w.write_all(&export_line(
                i,
                &log.entry(i).unwrap(),
                &log.leaf_hash(i).unwrap(),
            ))
            .unwrap();
        }
    }
    let note = log.latest_checkpoint().unwrap();
    let start = Instant::now();
    let report = verify_export(
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&export_path).unwrap()),
        &note,
        &log.verifier(),
    )
    .unwrap();
    let verify_rate = report.entries as f64 / start.elapsed().as_secs_f64();

    // Inclusion-proof latency at this size.
    let size = log.size();
    let mut lat: Vec<f64> = Vec::with_capacity(10_000);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % size;
        let t = Instant::now();
        let p = log.inclusion_proof(i, size).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(!p.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];

    // Citizen-history queries at this size (the `/v1/me/accesses` path): once the indexer has
    // caught up, the newest 50 entries of a random citizen. Each of the pool's subjects has
    // size / pool entries, a heavy citizen's history.
    let caught_up = Instant::now();
    while log.indexed_through() < size && caught_up.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut hist: Vec<f64> = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = subject(x % pool.len() as u64);
        let q = vault_core::audit::AuditQuery {
            subject: Some(Pseudonym::from_bytes(p)),
            ..Default::default()
        };
        let t = Instant::now();
        let page = log.query(&q, None, 50, true).unwrap();
        hist.push(t.elapsed().as_secs_f64() * 1e6);
        // Entries go round the pool, so a subject has size / pool entries, or one more.
        let per = (size / pool.len() as u64) as usize;
        assert!(
            (50.min(per)..=50.min(per + 1)).contains(&page.indexes.len()),
            "{} entries for a subject with {per} or {}",
            page.indexes.len(),
            per + 1
        );
    }
    hist.sort_by(f64::total_cmp);
    let hpct = |q: f64| hist[((hist.len() as f64 * q) as usize).min(hist.len() - 1)];
    log.shutdown();
    let on_disk = dir_size(&dir);
    let index_disk = dir_size(&dir.join("index"));
    println!("\n| measure | result |\n|---|---:|");
    println!("| bulk append (8,192-entry batches) | {fill_rate:.0} entries/s |");
    println!(
        "| offline verification of {n_verify} exported entries | {verify_rate:.0} entries/s |"
    );
    println!(
        "| inclusion proof at {size} entries | p50 {:.1} µs, p99 {:.1} µs |",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "| citizen-history query (newest 50 of {} entries) at {size} entries | p50 {:.0} µs, p99 {:.0} µs |",
        size / pool.len() as u64,
        hpct(0.5),
        hpct(0.99)
    );
    println!(
        "| disk per entry, allocated blocks | {:.0} bytes in all; {:.0} bytes without the query index (entry itself {} bytes) |",
        on_disk as f64 / size as f64,
        (on_disk - index_disk) as f64 / size as f64,
        pool[0].bytes().len()
    );
}
