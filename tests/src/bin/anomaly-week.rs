//! False positives of the anomaly rules: a simulated working week of the city's agencies
//! (every agency of the policy set, 20 officials each, each handling 12–24 dossiers a working
//! day between 08:00 and 17:00, a grant and a release per dossier, 3 % of requests refused,
//! over 200,000 citizens; the hospital's night shift reading under its ordinary purposes and
//! about two emergencies a day; citizens mistyping a request code now and then), written
//! into a fresh vault's log, then the anomalies the detector raised over that week, by rule.
//! Nothing in this workload is misuse, so every anomaly it raises is a false positive.
//!
//! `cargo build --release -p vault-tests --bin anomaly-week && target/release/anomaly-week`

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "a benchmark aborts on any setup failure"
)]

use std::collections::BTreeMap;

use vault_core::audit::{Access, Actor, AuditEntry, EntryContext, Pseudonym, SafeId};
use vault_core::{FieldName, Timestamp};

/// Monday 7 December 2026, 00:00 in Vietnam (UTC+7).
const MONDAY_LOCAL_MIDNIGHT_MS: i64 = 1_796_576_400_000;
const HOUR: i64 = 3_600_000;
const HOSPITAL: &str = "benh-vien-cho-ray";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn main() {
    let seed = vault_tests::arg_u64("--seed", 7);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vault-data");
    vault_server::ctl::init_vault(&data, &vault_server::backend::StoreSettings::sled(64 << 20))
        .unwrap();
    let vault = vault_server::ctl::open_vault(
        &data,
        None,
        None,
        &vault_server::backend::StoreSettings::sled(64 << 20),
    )
    .unwrap();
    let policy = vault.policy().clone();
    let agencies: Vec<String> = policy.agencies().map(|a| a.id.clone()).collect();
    let id = |s: &str| SafeId::parse(s).unwrap();
    let fields = [FieldName::parse("full_name").unwrap()];
    let dossier = id("HS-TUAN");
    let ordinary = id("health_insurance_card");
    let emergency = id("emergency_care");
    let hospital_purpose = id(&policy.agency(HOSPITAL).unwrap().purposes[0]);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let citizen = |rng: &mut Rng| {
        Pseudonym::from_bytes(vault_core::crypto::sha256(
            &rng.below(200_000).to_be_bytes(),
        ))
    };
    // (time, entry) for the whole week, sorted by time before appending.
    let mut week: Vec<(i64, AuditEntry)> = Vec::new();
    let ctx = |t: i64| EntryContext {
        time: Timestamp::from_millis(t),
        policy: policy.sha256(),
    };
    let push_dossier = |week: &mut Vec<(i64, AuditEntry)>,
                        rng: &mut Rng,
                        t: i64,
                        actor: &Actor,
                        purpose: &SafeId,
                        break_glass: bool| {
        let subject = citizen(rng);
        let access = Access {
            purpose: Some(purpose),
            dossier: &dossier,
            fields: &fields,
            grant: None,
            break_glass,
            consent: None,
        };
        if rng.below(100) < 3 {
            week.push((
                t,
                AuditEntry::grant_denied(
                    &ctx(t),
                    actor,
                    Some(&subject),
                    &access,
                    "purpose_not_allowed",
                )
                .unwrap(),
            ));
            return;
        }
        week.push((
            t,
            AuditEntry::grant_issued(&ctx(t), actor, &subject, &access).unwrap(),
        ));
        let read = t + 1_000 + i64::try_from(rng.below(60_000)).unwrap();
        week.push((
            read,
            AuditEntry::record_released(&ctx(read), actor, &subject, &access).unwrap(),
        ));
    };
    let mut releases = 0u64;
    for day in 0..5i64 {
        let midnight = MONDAY_LOCAL_MIDNIGHT_MS + day * 24 * HOUR;
        for agency in &agencies {
            for o in 0..20 {
                let actor = Actor::official(id(&format!("can-bo-{o}")), id(agency), None);
                let purpose = policy
                    .agency(agency)
                    .and_then(|a| a.purposes.first().cloned())
                    .map_or_else(|| ordinary.clone(), |p| id(&p));
                for _ in 0..12 + rng.below(13) {
                    let t = midnight + 8 * HOUR + i64::try_from(rng.below(9 * 3_600_000)).unwrap();
                    push_dossier(&mut week, &mut rng, t, &actor, &purpose, false);
                    releases += 1;
                }
            }
        }
        // The hospital's night shift (19:00–07:00) and its emergencies.
        for o in 0..5 {
            let actor = Actor::official(id(&format!("truc-dem-{o}")), id(HOSPITAL), None);
            for _ in 0..3 {
                let t = midnight + 19 * HOUR + i64::try_from(rng.below(12 * 3_600_000)).unwrap();
                push_dossier(&mut week, &mut rng, t, &actor, &hospital_purpose, false);
                releases += 1;
            }
        }
        for _ in 0..2 {
            let actor = Actor::official(id("bac-si-cap-cuu"), id(HOSPITAL), None);
            let t = midnight + i64::try_from(rng.below(24 * 3_600_000)).unwrap();
            push_dossier(&mut week, &mut rng, t, &actor, &emergency, true);
            releases += 1;
        }
        // Citizens mistyping a request code (one failure each).
        for _ in 0..50 {
            let t = midnight + 7 * HOUR + i64::try_from(rng.below(15 * 3_600_000)).unwrap();
            let who = citizen(&mut rng);
            week.push((
                t,
                AuditEntry::access_denied(
                    &ctx(t),
                    &Actor::citizen(),
                    Some(&who),
                    &id("code.verify"),
                    None,
                    "code_not_genuine",
                )
                .unwrap(),
            ));
        }
    }
    week.sort_by_key(|(t, _)| *t);
    let entries = week.len();
    // The detector starts from the log's end (as a server does) and sees each entry once.
    vault.feed_anomalies().unwrap();
    let mut rest = week.into_iter().map(|(_, e)| e).peekable();
    while rest.peek().is_some() {
        vault
            .audit()
            .append(rest.by_ref().take(10_000).collect())
            .unwrap();
        vault.feed_anomalies().unwrap();
    }
    let from = Timestamp::from_millis(MONDAY_LOCAL_MIDNIGHT_MS);
    let to = Timestamp::from_millis(MONDAY_LOCAL_MIDNIGHT_MS + 7 * 24 * HOUR);
    let found = vault.anomalies(&id("kt-week"), from, to, 72, to).unwrap();
    let mut by_rule: BTreeMap<&str, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for a in &found {
        let (n, who) = by_rule.entry(a.rule).or_default();
        *n += 1;
        *who.entry(a.agency.clone().unwrap_or_default()).or_default() += 1;
    }
    println!(
        "a working week: {} agencies, {} dossiers, {entries} entries; {} anomalies",
        agencies.len(),
        releases,
        found.len()
    );
    for (rule, (n, who)) in &by_rule {
        println!("  {rule}: {n} ({who:?})");
    }
}
