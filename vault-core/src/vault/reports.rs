//! The auditors' reports (SPEC §2 "Auditor"): the 72-hour breach notification pre-filled from
//! the log for a window (and an agency or official), the "declare once" ledger of what the
//! vault supplied in a window, and the record of processing built from the policy set. Each
//! is audited (`audit.queried`) before it is computed. Windows are found by time in the log
//! (a binary search on entry times, then a bulk scan), never by reading it from the start.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Vault;
use crate::audit::{Actor, AuditEntry, SafeId};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::store::VaultStore;

/// How far an entry's time may run behind its position in the log (entries are stamped when
/// made and sequenced when committed): windows are widened by this much, then each entry is
/// checked against the window itself.
const SLACK_MS: i64 = 60_000;
/// Entries read per bulk read.
const BATCH: u64 = 4_096;

/// The members of an entry a report needs.
#[derive(Deserialize)]
struct ReportView<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    actor: Option<ActorView<'a>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    fields: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ActorView<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    agency: Option<Cow<'a, str>>,
}

/// The pre-filled breach notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachReport {
    /// Window start.
    pub from: Timestamp,
    /// Window end.
    pub to: Timestamp,
    /// Only this agency, if asked.
    pub agency: Option<String>,
    /// Only this official, if asked.
    pub official: Option<String>,
    /// Distinct citizens concerned (counted by pseudonym; no id anywhere).
    pub affected_citizens: u64,
    /// Fields concerned.
    pub fields: BTreeSet<String>,
    /// Agencies concerned.
    pub agencies: BTreeSet<String>,
    /// Officials concerned.
    pub officials: BTreeSet<String>,
    /// Entries by event.
    pub events: BTreeMap<String, u64>,
    /// The entries it rests on.
    pub entries: Vec<u64>,
}

/// One line of the "declare once" ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReuseLine {
    /// Releases made.
    pub releases: u64,
    /// Field values supplied (each released field of each release).
    pub field_values: u64,
    /// Distinct citizens served (by pseudonym).
    pub citizens: u64,
}

impl<S: VaultStore> Vault<S> {
    fn audit_report(
        &self,
        auditor: &SafeId,
        what: &'static str,
        now: Timestamp,
    ) -> Result<(), VaultError> {
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            what,
        )?;
        self.audit.append(vec![entry]).map(|_| ())
    }

    /// The time of entry `index`.
    pub(super) fn entry_time(&self, index: u64) -> Result<Timestamp, VaultError> {
        let bytes = self.audit.entry(index)?;
        let v: ReportView<'_> = serde_json::from_slice(&bytes)
            .map_err(|_| VaultError::StoreCorrupt("audit entry is not JSON".into()))?;
        crate::audit::parse_time(&v.time)
            .ok_or_else(|| VaultError::StoreCorrupt("audit entry time unreadable".into()))
    }

    /// The first index whose entry is at or after `t` (entries are in time order but for
    /// `SLACK_MS`).
    pub(super) fn first_entry_at(&self, t: Timestamp, size: u64) -> Result<u64, VaultError> {
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry_time(mid)? < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Calls `visit` with every entry in `[from, to]` (by its own time), in log order. With a
    /// `needle`, entries whose bytes do not contain it are skipped unparsed (a report for one
    /// agency reads its window but parses only that agency's entries).
    fn scan_window(
        &self,
        from: Timestamp,
        to: Timestamp,
        needle: Option<&[u8]>,
        visit: &mut dyn FnMut(u64, &ReportView<'_>),
    ) -> Result<(), VaultError> {
        let size = self.audit.size();
        let mut at = self.first_entry_at(
            Timestamp::from_millis(from.as_millis().saturating_sub(SLACK_MS)),
            size,
        )?;
        let stop = Timestamp::from_millis(to.as_millis().saturating_add(SLACK_MS));
        while at < size {
            let end = (at + BATCH).min(size);
            let batch = self.audit.entries(at, end)?;
            // A batch that starts past the window ends the scan.
            if let Some((first, _)) = batch.first()
                && crate::audit::parse_time(&parse(first)?.time).is_some_and(|t| t > stop)
            {
                return Ok(());
            }
            for (k, (bytes, _)) in batch.iter().enumerate() {
                if needle.is_some_and(|n| !contains(bytes, n)) {
                    continue;
                }
                let v = parse(bytes)?;
                let Some(t) = crate::audit::parse_time(&v.time) else {
                    continue;
                };
                if t > stop {
                    return Ok(());
                }
                if t >= from && t <= to {
                    visit(at + k as u64, &v);
                }
            }
            at = end;
        }
        Ok(())
    }

    /// The breach notification for a window, optionally one agency's or one official's.
    pub fn breach_report(
        &self,
        auditor: &SafeId,
        from: Timestamp,
        to: Timestamp,
        agency: Option<&str>,
        official: Option<&str>,
        now: Timestamp,
    ) -> Result<BreachReport, VaultError> {
        self.audit_report(auditor, "breach_report", now)?;
        let mut r = BreachReport {
            from,
            to,
            agency: agency.map(str::to_owned),
            official: official.map(str::to_owned),
            affected_citizens: 0,
            fields: BTreeSet::new(),
            agencies: BTreeSet::new(),
            officials: BTreeSet::new(),
            events: BTreeMap::new(),
            entries: Vec::new(),
        };
        let mut subjects: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
        let needle = agency
            .map(|a| format!("\"agency\":\"{a}\""))
            .or_else(|| official.map(|o| format!("\"id\":\"{o}\"")));
        self.scan_window(
            from,
            to,
            needle.as_deref().map(str::as_bytes),
            &mut |i, v| {
                let actor = v.actor.as_ref();
                let a = actor.and_then(|a| a.agency.as_deref());
                let o = actor.filter(|a| a.kind == "agency").map(|a| a.id.as_ref());
                if agency.is_some_and(|want| a != Some(want))
                    || official.is_some_and(|want| o != Some(want))
                {
                    return;
                }
                // Only what agencies did or were refused (the citizen's own acts and the
                // auditors' are not a disclosure).
                if actor.is_none_or(|a| a.kind != "agency") {
                    return;
                }
                // Few distinct values, millions of entries: allocate only for a new one.
                if let Some(s) = &v.subject {
                    let mut b = [0u8; 32];
                    if hex::decode_to_slice(s.as_bytes(), &mut b).is_ok() {
                        subjects.insert(b);
                    }
                }
                for f in &v.fields {
                    if !r.fields.contains(f.as_ref()) {
                        r.fields.insert(f.to_string());
                    }
                }
                if let Some(a) = a
                    && !r.agencies.contains(a)
                {
                    r.agencies.insert(a.to_owned());
                }
                if let Some(o) = o
                    && !r.officials.contains(o)
                {
                    r.officials.insert(o.to_owned());
                }
                match r.events.get_mut(v.event.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        r.events.insert(v.event.to_string(), 1);
                    }
                }
                r.entries.push(i);
            },
        )?;
        r.affected_citizens = subjects.len() as u64;
        Ok(r)
    }

    /// The "declare once" ledger for a window: per agency and purpose, the releases and the
    /// field values the vault supplied instead of asking the citizen again.
    pub fn reuse_report(
        &self,
        auditor: &SafeId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<BTreeMap<(String, String), ReuseLine>, VaultError> {
        self.audit_report(auditor, "reuse_report", now)?;
        let mut lines: BTreeMap<(String, String), (ReuseLine, BTreeSet<String>)> = BTreeMap::new();
        let needle: &[u8] = b"\"event\":\"record.released\"";
        self.scan_window(from, to, Some(needle), &mut |_, v| {
            // Releases under a grant (a correction shown to its agency is not one).
            if v.event != "record.released" || v.code.is_some() {
                return;
            }
            let (Some(a), Some(p)) = (
                v.actor.as_ref().and_then(|a| a.agency.as_deref()),
                v.purpose.as_deref(),
            ) else {
                return;
            };
            let (line, citizens) = lines.entry((a.to_owned(), p.to_owned())).or_default();
            line.releases += 1;
            line.field_values += v.fields.len() as u64;
            if let Some(s) = &v.subject {
                citizens.insert(s.to_string());
            }
        })?;
        Ok(lines
            .into_iter()
            .map(|(k, (mut line, citizens))| {
                line.citizens = citizens.len() as u64;
                (k, line)
            })
            .collect())
    }

    /// Records that an auditor read the record of processing (built from the policy set by
    /// the caller).
    pub fn inventory_read(&self, auditor: &SafeId, now: Timestamp) -> Result<(), VaultError> {
        self.audit_report(auditor, "inventory", now)
    }
}

fn parse(bytes: &[u8]) -> Result<ReportView<'_>, VaultError> {
    serde_json::from_slice(bytes)
        .map_err(|_| VaultError::StoreCorrupt("audit entry is not JSON".into()))
}

/// Whether `hay` contains `needle`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.first() == needle.first() && w == needle)
}
