//! Tests of queries over the segment log and its indexes.

use super::super::entry::{Access, Actor, EntryContext, Event, Pseudonym};
use super::*;
use crate::clock::Timestamp;
use crate::id::FieldName;
use crate::id::SafeId;

fn wait_indexed(log: &SegmentLog) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.indexed_through() < log.size() {
        assert!(std::time::Instant::now() < deadline, "indexer stalled");
        std::thread::yield_now();
    }
}

#[test]
fn queries_page_by_subject_official_agency_event_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log =
        SegmentLog::open(dir.path(), LogSigner::from_seed("t/log", &[1; 32]).unwrap()).unwrap();
    let id = |s: &str| SafeId::parse(s).unwrap();
    let fields = [FieldName::parse("full_name").unwrap()];
    let (purpose, dossier) = (id("birth_registration"), id("HS-1"));
    for i in 0..300u64 {
        let ctx = EntryContext {
            time: Timestamp::from_millis(1_000_000 + i as i64 * 1000),
            policy: [0; 32],
        };
        let subject = Pseudonym::from_bytes([(i % 3) as u8; 32]);
        let official = Actor::official(
            id(&format!("cb-{}", i % 5)),
            id(if i % 2 == 0 {
                "ubnd-phuong-sai-gon"
            } else {
                "bhxh-tphcm"
            }),
            None,
        );
        let access = Access {
            purpose: Some(&purpose),
            dossier: &dossier,
            fields: &fields,
            grant: None,
            break_glass: false,
            consent: None,
        };
        let e = if i % 4 == 0 {
            AuditEntry::record_released(&ctx, &official, &subject, &access)
        } else {
            AuditEntry::grant_issued(&ctx, &official, &subject, &access)
        };
        log.append_one(e.unwrap()).unwrap();
        if i == 150 {
            wait_indexed(&log); // half indexed, half possibly in the tail: both paths run
        }
    }
    // Newest 50 of citizen 1, then the next page.
    let q = AuditQuery {
        subject: Some(Pseudonym::from_bytes([1; 32])),
        ..Default::default()
    };
    let p1 = log.query(&q, None, 50, true).unwrap();
    assert_eq!(p1.indexes.len(), 50);
    assert_eq!(p1.indexes[0], 298);
    assert!(
        p1.indexes
            .windows(2)
            .all(|w| w[0] > w[1] && w[0] - w[1] == 3)
    );
    let p2 = log.query(&q, p1.next, 50, true).unwrap();
    assert_eq!(p2.indexes[0], p1.indexes[49] - 3);
    wait_indexed(&log);
    let q = AuditQuery {
        official: Some(SafeId::parse("cb-2").unwrap()),
        event: Some(Event::RecordReleased),
        ..Default::default()
    };
    let all = log.query(&q, None, 1000, false).unwrap();
    assert!(all.indexes.iter().all(|i| i % 5 == 2 && i % 4 == 0));
    assert_eq!(all.indexes.len(), 15);
    assert_eq!(all.next, None);
    let q = AuditQuery {
        agency: Some(SafeId::parse("bhxh-tphcm").unwrap()),
        from: Some(Timestamp::from_millis(1_000_000 + 100_000)),
        to: Some(Timestamp::from_millis(1_000_000 + 120_000)),
        ..Default::default()
    };
    let r = log.query(&q, None, 1000, false).unwrap();
    assert_eq!(
        r.indexes,
        (100..=120).filter(|i| i % 2 == 1).collect::<Vec<_>>()
    );
    // Reopen: the index persists or is rebuilt, same answers.
    drop(log);
    let log =
        SegmentLog::open(dir.path(), LogSigner::from_seed("t/log", &[1; 32]).unwrap()).unwrap();
    wait_indexed(&log);
    assert_eq!(log.query(&q, None, 1000, false).unwrap(), r);
}
