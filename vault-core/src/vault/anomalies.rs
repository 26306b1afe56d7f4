//! Anomaly detection over the audit log (SPEC §2 "Auditor"), incremental: a detector keeps
//! sliding windows per agency, official and citizen pseudonym and is fed each entry once, as
//! the log grows (the server feeds it every second; a query feeds what is left first), never
//! by re-reading the log per query. Thresholds come from `policies/anomalies.toml`. The
//! detector lives in memory: at open it starts from the entries of the longest window before
//! the log's end, so an anomaly older than that is not shown after a restart.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use serde::Deserialize;

use super::Vault;
use crate::audit::{Actor, AuditEntry, SafeId};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::policy::PolicySet;
use crate::store::VaultStore;

/// Anomalies kept (the oldest go first).
const MAX_KEPT: usize = 10_000;
/// Entries read per feeding step.
const BATCH: u64 = 4_096;
/// Entry indexes one anomaly lists (its first ones): an anomaly that lasts (an official
/// reading steadily for a day) would otherwise grow without bound, in memory and in answers.
const MAX_ENTRIES: usize = 10_000;

/// Something the auditors should look at, with the entries it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Stable id: the rule and its first entry.
    pub id: String,
    /// The rule that raised it.
    pub rule: &'static str,
    /// `high`, `medium` or `low`.
    pub severity: &'static str,
    /// The agency concerned, where one is.
    pub agency: Option<String>,
    /// The official concerned, where one is.
    pub official: Option<String>,
    /// First entry's time.
    pub from: Timestamp,
    /// Last entry's time.
    pub to: Timestamp,
    /// How many (distinct citizens, agencies, events) at its peak.
    pub count: u64,
    /// The entries it rests on.
    pub entries: Vec<u64>,
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    actor: Option<ActorView<'a>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(default)]
    break_glass: Option<bool>,
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

/// A sliding window of (time, entry, what), with how often each `what` is in it (so the
/// number of distinct ones is known without a pass over the window).
#[derive(Debug, Default)]
struct Window {
    items: VecDeque<(Timestamp, u64, String)>,
    counts: HashMap<String, u32>,
}

/// A window per key.
type Windows = HashMap<String, Window>;

/// The detector's state.
#[derive(Debug, Default)]
pub(super) struct Detector {
    fed_through: Option<u64>,
    official_citizens: Windows,
    denials: Windows,
    break_glass: Windows,
    citizen_agencies: Windows,
    verify_failures: Windows,
    /// The open anomaly of each rule and key (index into `found`).
    open: HashMap<(&'static str, String), usize>,
    found: VecDeque<Anomaly>,
    /// How many anomalies were dropped from the front of `found`.
    dropped: usize,
}

fn minutes(m: u32) -> i64 {
    i64::from(m) * 60_000
}

/// Adds an item to a key's window, drops what fell out of it, and returns the window.
fn push<'w>(
    windows: &'w mut Windows,
    key: &str,
    item: (Timestamp, u64, String),
    window_ms: i64,
) -> &'w Window {
    let w = windows.entry(key.to_owned()).or_default();
    let now = item.0;
    *w.counts.entry(item.2.clone()).or_default() += 1;
    w.items.push_back(item);
    while w
        .items
        .front()
        .is_some_and(|(t, _, _)| t.as_millis() < now.as_millis() - window_ms)
    {
        if let Some((_, _, what)) = w.items.pop_front()
            && let Some(c) = w.counts.get_mut(&what)
        {
            *c -= 1;
            if *c == 0 {
                w.counts.remove(&what);
            }
        }
    }
    w
}

/// How many distinct `what`s a window holds.
fn distinct(w: &Window) -> u64 {
    w.counts.len() as u64
}

impl Detector {
    /// Whether `raise` for `rule` and `key` at `time` would extend the open anomaly (which
    /// then needs only the newest entry, not the whole window again).
    fn extends(&self, rule: &'static str, key: &str, time: Timestamp, gap_ms: i64) -> bool {
        self.open
            .get(&(rule, key.to_owned()))
            .and_then(|at| at.checked_sub(self.dropped))
            .and_then(|i| self.found.get(i))
            .is_some_and(|a| time.as_millis() - a.to.as_millis() <= gap_ms)
    }

    /// Raises an anomaly for `rule` and `key` resting on `entries`, or extends the open one
    /// when it is still within `gap_ms` of it.
    #[expect(clippy::too_many_arguments, reason = "one anomaly's facts, named")]
    fn raise(
        &mut self,
        rule: &'static str,
        severity: &'static str,
        key: String,
        agency: Option<String>,
        official: Option<String>,
        entries: Vec<(Timestamp, u64)>,
        count: u64,
        gap_ms: i64,
    ) {
        let Some(&(last_time, _)) = entries.last() else {
            return;
        };
        let k = (rule, key);
        if let Some(&at) = self.open.get(&k)
            && let Some(a) = at
                .checked_sub(self.dropped)
                .and_then(|i| self.found.get_mut(i))
            && last_time.as_millis() - a.to.as_millis() <= gap_ms
        {
            // Kept sorted, and only what is newer than its last entry is looked at: the
            // window's earlier entries are in it already. An anomaly that lasts gathers
            // thousands of entries, and a linear search for each made feeding the detector
            // quadratic (half of the server's CPU under a steady load by one official).
            let last = a.entries.last().copied();
            let newer = entries
                .iter()
                .rev()
                .take_while(|(_, i)| last.is_none_or(|l| *i > l))
                .count();
            let start = entries.len() - newer;
            let mut fresh: Vec<u64> = entries[start..].iter().map(|(_, i)| *i).collect();
            fresh.sort_unstable();
            fresh.dedup();
            let room = MAX_ENTRIES.saturating_sub(a.entries.len());
            a.entries.extend(fresh.into_iter().take(room));
            a.to = last_time;
            a.count = a.count.max(count);
            return;
        }
        let first = entries.first().map_or(0, |(_, i)| *i);
        let from = entries.first().map_or(last_time, |(t, _)| *t);
        self.found.push_back(Anomaly {
            id: format!("{rule}-{first}"),
            rule,
            severity,
            agency,
            official,
            from,
            to: last_time,
            count,
            entries: {
                let mut e: Vec<u64> = entries.iter().map(|(_, i)| *i).collect();
                e.sort_unstable();
                e.dedup();
                e.truncate(MAX_ENTRIES);
                e
            },
        });
        self.open.insert(k, self.dropped + self.found.len() - 1);
        while self.found.len() > MAX_KEPT {
            self.found.pop_front();
            self.dropped += 1;
        }
    }

    /// Looks at one entry.
    fn see(&mut self, policy: &PolicySet, index: u64, time: Timestamp, v: &View<'_>) {
        let t = policy.anomalies();
        let agency_actor = v.actor.as_ref().filter(|a| a.kind == "agency");
        let agency = agency_actor
            .and_then(|a| a.agency.as_deref())
            .map(str::to_owned);
        let official = agency_actor.map(|a| a.id.to_string());
        let subject = v.subject.as_deref().map(str::to_owned);
        let event = v.event.as_ref();
        let window_entries =
            |w: &Window| w.items.iter().map(|(t, i, _)| (*t, *i)).collect::<Vec<_>>();
        let released = event == "record.released" && v.code.is_none();
        // One official reading many distinct citizens.
        if released && let (Some(a), Some(o), Some(s)) = (&agency, &official, &subject) {
            let th = t.official_many_citizens;
            let key = format!("{a}/{o}");
            let extending = self.extends(
                "official_many_citizens",
                &key,
                time,
                minutes(th.window_minutes),
            );
            let w = push(
                &mut self.official_citizens,
                &key,
                (time, index, s.clone()),
                minutes(th.window_minutes),
            );
            let n = distinct(w);
            if n >= u64::from(th.count) {
                let entries = if extending {
                    vec![(time, index)]
                } else {
                    window_entries(w)
                };
                self.raise(
                    "official_many_citizens",
                    "high",
                    key,
                    agency.clone(),
                    official.clone(),
                    entries,
                    n,
                    minutes(th.window_minutes),
                );
            }
        }
        // A release outside working hours (local time, UTC+7). Emergencies (break-glass)
        // happen at any hour and have their own review; an agency that works around the
        // clock (`agencies.toml`) has no off hours.
        if released
            && v.break_glass != Some(true)
            && let Some(a) = &agency
            && !policy.agency(a).is_some_and(|x| x.around_the_clock)
        {
            let h = t.off_hours;
            let local = time.as_millis() + 7 * 3_600_000;
            let day = local.div_euclid(86_400_000);
            let hour = u32::try_from(local.rem_euclid(86_400_000) / 3_600_000).unwrap_or(0);
            // 1970-01-01 was a Thursday: Monday is 0.
            let weekend = (day + 3).rem_euclid(7) >= 5;
            if hour < h.start_hour || hour >= h.end_hour || (h.weekends && weekend) {
                let key = format!("{a}/{}/{day}", official.as_deref().unwrap_or(""));
                self.raise(
                    "off_hours",
                    "low",
                    key,
                    agency.clone(),
                    official.clone(),
                    vec![(time, index)],
                    1,
                    86_400_000,
                );
                if let Some(&at) = self.open.get(&(
                    "off_hours",
                    format!("{a}/{}/{day}", official.as_deref().unwrap_or("")),
                )) && let Some(an) = at
                    .checked_sub(self.dropped)
                    .and_then(|i| self.found.get_mut(i))
                {
                    an.count = an.entries.len() as u64;
                }
            }
        }
        // Many refusals for one agency.
        if matches!(event, "grant.denied" | "record.denied" | "access.denied")
            && let Some(a) = &agency
        {
            let th = t.denials;
            let extending = self.extends("denials", a, time, minutes(th.window_minutes));
            let w = push(
                &mut self.denials,
                a,
                (time, index, index.to_string()),
                minutes(th.window_minutes),
            );
            let n = w.items.len() as u64;
            if n >= u64::from(th.count) {
                let entries = if extending {
                    vec![(time, index)]
                } else {
                    window_entries(w)
                };
                self.raise(
                    "denials",
                    "medium",
                    a.clone(),
                    agency.clone(),
                    None,
                    entries,
                    n,
                    minutes(th.window_minutes),
                );
            }
        }
        // Break-glass above its usual rate.
        if event == "grant.issued"
            && v.break_glass == Some(true)
            && let Some(a) = &agency
        {
            let th = t.break_glass;
            let extending = self.extends("break_glass_rate", a, time, minutes(th.window_minutes));
            let w = push(
                &mut self.break_glass,
                a,
                (time, index, index.to_string()),
                minutes(th.window_minutes),
            );
            let n = w.items.len() as u64;
            if n >= u64::from(th.count) {
                let entries = if extending {
                    vec![(time, index)]
                } else {
                    window_entries(w)
                };
                self.raise(
                    "break_glass_rate",
                    "high",
                    a.clone(),
                    agency.clone(),
                    None,
                    entries,
                    n,
                    minutes(th.window_minutes),
                );
            }
        }
        // One citizen asked for by many agencies.
        if matches!(event, "grant.issued" | "grant.pending" | "grant.denied")
            && let (Some(a), Some(s)) = (&agency, &subject)
        {
            let th = t.citizen_many_agencies;
            let extending =
                self.extends("citizen_many_agencies", s, time, minutes(th.window_minutes));
            let w = push(
                &mut self.citizen_agencies,
                s,
                (time, index, a.clone()),
                minutes(th.window_minutes),
            );
            let n = distinct(w);
            if n >= u64::from(th.count) {
                let entries = if extending {
                    vec![(time, index)]
                } else {
                    window_entries(w)
                };
                self.raise(
                    "citizen_many_agencies",
                    "medium",
                    s.clone(),
                    None,
                    None,
                    entries,
                    n,
                    minutes(th.window_minutes),
                );
            }
        }
        // Repeated failed code checks by one citizen.
        if event == "access.denied"
            && v.action.as_deref() == Some("code.verify")
            && let Some(s) = &subject
        {
            let th = t.verify_failures;
            let extending = self.extends("verify_failures", s, time, minutes(th.window_minutes));
            let w = push(
                &mut self.verify_failures,
                s,
                (time, index, index.to_string()),
                minutes(th.window_minutes),
            );
            let n = w.items.len() as u64;
            if n >= u64::from(th.count) {
                let entries = if extending {
                    vec![(time, index)]
                } else {
                    window_entries(w)
                };
                self.raise(
                    "verify_failures",
                    "medium",
                    s.clone(),
                    None,
                    None,
                    entries,
                    n,
                    minutes(th.window_minutes),
                );
            }
        }
    }
}

impl<S: VaultStore> Vault<S> {
    /// Feeds the detector the entries appended since it last looked (at first, those of the
    /// longest window before the log's end). Cheap when nothing is new.
    pub fn feed_anomalies(&self) -> Result<(), VaultError> {
        let t = *self.policy().anomalies();
        let size = self.audit.size();
        let mut d = self
            .anomalies
            .lock()
            .map_err(|_| VaultError::StoreUnavailable("anomaly detector poisoned".into()))?;
        let mut at = match d.fed_through {
            Some(f) => f,
            None if size == 0 => 0,
            None => {
                let last = self.entry_time(size - 1)?;
                let longest = [
                    t.official_many_citizens.window_minutes,
                    t.denials.window_minutes,
                    t.break_glass.window_minutes,
                    t.citizen_many_agencies.window_minutes,
                    t.verify_failures.window_minutes,
                ]
                .into_iter()
                .max()
                .unwrap_or(60);
                self.first_entry_at(
                    Timestamp::from_millis(last.as_millis() - minutes(longest)),
                    size,
                )?
            }
        };
        while at < size {
            let end = (at + BATCH).min(size);
            for (k, (bytes, _)) in self.audit.entries(at, end)?.iter().enumerate() {
                let Ok(v) = serde_json::from_slice::<View<'_>>(bytes) else {
                    continue;
                };
                if let Some(time) = crate::audit::parse_time(&v.time) {
                    d.see(&self.policy(), at + k as u64, time, &v);
                }
            }
            at = end;
        }
        d.fed_through = Some(at);
        Ok(())
    }

    /// The anomalies overlapping `[from, to]`, newest first, with the break-glass grants whose
    /// review is overdue (`review_hours` after they were issued). Audited as `audit.queried`
    /// (`anomalies`) first.
    pub fn anomalies(
        &self,
        auditor: &SafeId,
        from: Timestamp,
        to: Timestamp,
        review_hours: u32,
        now: Timestamp,
    ) -> Result<Vec<Anomaly>, VaultError> {
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            "anomalies",
        )?;
        self.audit.append(vec![entry])?;
        self.feed_anomalies()?;
        let mut out: Vec<Anomaly> = {
            let d = self
                .anomalies
                .lock()
                .map_err(|_| VaultError::StoreUnavailable("anomaly detector poisoned".into()))?;
            d.found
                .iter()
                .filter(|a| a.to >= from && a.from <= to)
                .cloned()
                .collect()
        };
        for g in self.break_glass_queue(true)? {
            let due = g.created.plus_secs(i64::from(review_hours) * 3_600);
            if now > due && due >= from && due <= to {
                out.push(Anomaly {
                    id: format!("break_glass_review_overdue-{}", g.id),
                    rule: "break_glass_review_overdue",
                    severity: "high",
                    agency: Some(g.agency.to_string()),
                    official: Some(g.official.clone()),
                    from: g.created,
                    to: due,
                    count: 1,
                    entries: Vec::new(),
                });
            }
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.to));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_anomaly_lists_its_first_entries_up_to_the_cap_and_grows_on() {
        let mut d = Detector::default();
        let n = MAX_ENTRIES as u64 + 500;
        for i in 0..n {
            let t = Timestamp::from_millis(1_000 + i as i64);
            d.raise(
                "off_hours",
                "low",
                "k".into(),
                None,
                None,
                vec![(t, i)],
                i + 1,
                60_000,
            );
        }
        assert_eq!(d.found.len(), 1, "one anomaly, extended");
        let a = &d.found[0];
        assert_eq!(a.entries.len(), MAX_ENTRIES);
        assert_eq!(a.entries.first(), Some(&0));
        assert_eq!(a.entries.last(), Some(&(MAX_ENTRIES as u64 - 1)));
        assert_eq!(a.count, n);
        assert_eq!(a.to, Timestamp::from_millis(1_000 + n as i64 - 1));
        // A new one raised over a window larger than the cap lists its first entries too.
        let many: Vec<(Timestamp, u64)> = (0..n)
            .map(|i| (Timestamp::from_millis(10_000_000 + i as i64), n + i))
            .collect();
        d.raise("denials", "medium", "k".into(), None, None, many, n, 60_000);
        assert_eq!(d.found[1].entries.len(), MAX_ENTRIES);
        assert_eq!(d.found[1].entries.first(), Some(&n));
    }
}
