//! Citizen and auditor reads: a citizen's own record (audited as `record.self_viewed`), their
//! access history with purpose labels, their pending consent requests, the genuineness check
//! of a verification code (answered only to the owning citizen), and auditor queries (each
//! audited as `audit.queried` before it runs).

use std::borrow::Cow;

use serde_json::Value;

use super::{Record, Vault};
use crate::audit::merkle::Hash;
use crate::audit::{Actor, AuditEntry, AuditQuery, Checkpoint, Page, SafeId};
use crate::clock::Timestamp;
use crate::error::VaultError;
use crate::grant::{self, Grant, GrantStatus};
use crate::id::{CitizenId, FieldName};
use crate::store::{Landing, VaultStore};

/// One line of a citizen's access history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Audit index (the citizen can ask for its inclusion proof).
    pub index: u64,
    /// RFC 3339 time.
    pub time: String,
    /// Event name.
    pub event: String,
    /// The agency concerned.
    pub agency: Option<String>,
    /// The official who acted.
    pub official: Option<String>,
    /// Purpose id.
    pub purpose: Option<String>,
    /// Purpose label in Vietnamese.
    pub purpose_label: Option<String>,
    /// The agency's dossier.
    pub dossier_id: Option<String>,
    /// Field names.
    pub fields: Vec<String>,
    /// permit, deny or error.
    pub outcome: String,
    /// Emergency access.
    pub break_glass: bool,
}

/// The members of an entry a history line shows, borrowed from its bytes where
/// they hold no escapes (entries hold identifiers, so they all do).
#[derive(serde::Deserialize)]
struct HistoryView<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor: Option<ActorRef<'a>>,
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dossier_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    fields: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    break_glass: Option<bool>,
}

#[derive(serde::Deserialize)]
struct ActorRef<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    agency: Option<Cow<'a, str>>,
}

/// What a genuine verification code tells its citizen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// The requesting agency.
    pub agency: String,
    /// The purpose, in Vietnamese.
    pub purpose_label: String,
    /// When the request was made.
    pub requested_at: Timestamp,
    /// Its status now.
    pub status: GrantStatus,
}

/// A citizen's offline-checkable receipt: one of their entries and its inclusion in the
/// latest signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's index.
    pub index: u64,
    /// The entry's canonical bytes (the leaf).
    pub entry: Vec<u8>,
    /// Its RFC 9162 leaf hash.
    pub leaf_hash: Hash,
    /// The tree size of the checkpoint.
    pub tree_size: u64,
    /// The inclusion proof.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint (note text).
    pub checkpoint: String,
}

/// What an auditor looked at, named in the `audit.queried` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditorRead {
    /// One entry by index.
    Entry(u64),
    /// The latest checkpoint.
    Checkpoint,
    /// An inclusion proof.
    Inclusion {
        /// Entry index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A consistency proof.
    Consistency {
        /// Older size.
        from: u64,
        /// Newer size.
        to: u64,
    },
}

/// What an auditor read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditorAnswer {
    /// An entry's bytes and leaf hash.
    Entry(Vec<u8>, Hash),
    /// A signed checkpoint.
    Checkpoint(String),
    /// Proof hashes.
    Proof(Vec<Hash>),
}

impl<S: VaultStore> Vault<S> {
    /// A receipt for one of the citizen's own entries (SPEC `GET /v1/me/accesses/{index}/proof`).
    /// An entry about someone else answers exactly like a missing one (`AuditNotFound`), and
    /// the attempt is audited as `record.denied` under the asking citizen's pseudonym.
    pub fn my_receipt(
        &self,
        citizen: &CitizenId,
        index: u64,
        now: Timestamp,
    ) -> Result<Receipt, VaultError> {
        let blind = self.keyring().blind(citizen);
        let record = self.store.citizen(&blind)?;
        let subject = self.subject_of(&blind, record.as_ref());
        let entry = match self.audit.entry(index) {
            Ok(e) => Some(e),
            Err(VaultError::AuditNotFound) => None,
            Err(e) => return Err(e),
        };
        let own = entry.as_ref().is_some_and(|e| {
            serde_json::from_slice::<Value>(e)
                .ok()
                .and_then(|v| v.get("subject").and_then(Value::as_str).map(str::to_owned))
                .is_some_and(|s| crate::crypto::ct_eq(s.as_bytes(), subject.to_string().as_bytes()))
        });
        let (Some(entry), true) = (entry, own) else {
            let denied = AuditEntry::record_denied(
                &self.entry_context(now),
                &Actor::citizen(),
                Some(&subject),
                &[],
                None,
                VaultError::AuditNotFound.code(),
            )?;
            self.audit.append(vec![denied])?;
            return Err(VaultError::AuditNotFound);
        };
        let checkpoint = self.audit.latest_checkpoint()?;
        let tree_size = Checkpoint::verify(&checkpoint, &self.audit.verifier())
            .map_err(|_| VaultError::AuditCorrupt {
                index,
                reason: "latest checkpoint does not verify".into(),
            })?
            .size;
        Ok(Receipt {
            index,
            leaf_hash: self.audit.leaf_hash(index)?,
            hashes: self.audit.inclusion_proof(index, tree_size)?,
            entry,
            tree_size,
            checkpoint,
        })
    }

    /// An auditor's view of one entry with its inclusion proof in the latest signed
    /// checkpoint (what the console checks in the browser); audited once, as `audit.queried`
    /// (`entry_proof`), before it is read.
    pub fn auditor_receipt(
        &self,
        auditor: &SafeId,
        index: u64,
        now: Timestamp,
    ) -> Result<Receipt, VaultError> {
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            "entry_proof",
        )?;
        self.audit.append(vec![entry])?;
        let checkpoint = self.audit.latest_checkpoint()?;
        let tree_size = Checkpoint::verify(&checkpoint, &self.audit.verifier())
            .map_err(|_| VaultError::AuditCorrupt {
                index,
                reason: "latest checkpoint does not verify".into(),
            })?
            .size;
        if index >= tree_size {
            return Err(VaultError::AuditNotFound);
        }
        Ok(Receipt {
            index,
            entry: self.audit.entry(index)?,
            leaf_hash: self.audit.leaf_hash(index)?,
            hashes: self.audit.inclusion_proof(index, tree_size)?,
            tree_size,
            checkpoint,
        })
    }

    /// The latest signed checkpoint and, for an older size, the checkpoint signed at it (or
    /// the nearest below it) and the consistency proof from it to the latest; audited once
    /// (`checkpoints`).
    #[expect(
        clippy::type_complexity,
        reason = "a pair of notes and a proof, named in the doc"
    )]
    pub fn auditor_checkpoints(
        &self,
        auditor: &SafeId,
        from: Option<u64>,
        now: Timestamp,
    ) -> Result<(String, u64, Option<(String, Vec<Hash>)>), VaultError> {
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            "checkpoints",
        )?;
        self.audit.append(vec![entry])?;
        let latest = self.audit.latest_checkpoint()?;
        let size = Checkpoint::verify(&latest, &self.audit.verifier())
            .map_err(|_| VaultError::AuditCorrupt {
                index: 0,
                reason: "latest checkpoint does not verify".into(),
            })?
            .size;
        // The checkpoint at `from`, or the nearest signed below it (checkpoints are signed
        // per committed batch, so not every size has one).
        let older = match from.filter(|f| *f <= size && *f > 0) {
            Some(f) => {
                let mut found = None;
                for at in (f.saturating_sub(4_096).max(1)..=f).rev() {
                    if let Some(note) = self.audit.checkpoint_at(at)? {
                        found = Some((note, self.audit.consistency_proof(at, size)?));
                        break;
                    }
                }
                Some(found.ok_or(VaultError::AuditNotFound)?)
            }
            None if from.is_some() => return Err(VaultError::AuditNotFound),
            None => None,
        };
        Ok((latest, size, older))
    }

    /// An auditor's read of the log itself (an entry, the checkpoint, a proof); audited as
    /// `audit.queried` before it is answered, like every auditor query.
    pub fn auditor_read(
        &self,
        auditor: &SafeId,
        read: AuditorRead,
        now: Timestamp,
    ) -> Result<AuditorAnswer, VaultError> {
        let kind = match read {
            AuditorRead::Entry(_) => "entry",
            AuditorRead::Checkpoint => "checkpoint",
            AuditorRead::Inclusion { .. } => "inclusion_proof",
            AuditorRead::Consistency { .. } => "consistency_proof",
        };
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            None,
            kind,
        )?;
        self.audit.append(vec![entry])?;
        Ok(match read {
            AuditorRead::Entry(i) => {
                AuditorAnswer::Entry(self.audit.entry(i)?, self.audit.leaf_hash(i)?)
            }
            AuditorRead::Checkpoint => AuditorAnswer::Checkpoint(self.audit.latest_checkpoint()?),
            AuditorRead::Inclusion { index, size } => {
                AuditorAnswer::Proof(self.audit.inclusion_proof(index, size)?)
            }
            AuditorRead::Consistency { from, to } => {
                AuditorAnswer::Proof(self.audit.consistency_proof(from, to)?)
            }
        })
    }

    /// The citizen's own record. The `record.self_viewed` entry is durable before anything
    /// is decrypted.
    pub fn my_record(&self, citizen: &CitizenId, now: Timestamp) -> Result<Record, VaultError> {
        let blind = self.keyring().blind(citizen);
        let Some(sealed) = self.store.citizen(&blind)? else {
            return self.refused(
                super::Caller::Citizen(citizen),
                super::Attempt::new("me.record"),
                VaultError::CitizenNotFound,
                now,
            );
        };
        let subject = self.pseudonym(&sealed);
        let fields: Vec<FieldName> = sealed.fields.keys().cloned().collect();
        self.audit.append(vec![AuditEntry::record_self_viewed(
            &self.entry_context(now),
            &subject,
            &fields,
        )?])?;
        let mut record = self.read_record_unaudited(citizen)?;
        record.disputed = self.disputed_of(&blind)?;
        Ok(record)
    }

    /// The citizen's history, newest first, `limit` at most, before `cursor`.
    pub fn my_accesses(
        &self,
        citizen: &CitizenId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<HistoryItem>, Option<u64>), VaultError> {
        let blind = self.keyring().blind(citizen);
        let record = self.store.citizen(&blind)?;
        let subject = self.subject_of(&blind, record.as_ref());
        let q = AuditQuery {
            subject: Some(subject),
            ..Default::default()
        };
        let page = self.audit.query(&q, cursor, limit, true)?;
        let mut items = Vec::with_capacity(page.indexes.len());
        for &index in &page.indexes {
            let bytes = self.audit.entry(index)?;
            let e: HistoryView<'_> = serde_json::from_slice(&bytes)
                .map_err(|_| VaultError::StoreCorrupt("audit entry is not JSON".into()))?;
            let actor = e.actor.as_ref();
            items.push(HistoryItem {
                index,
                time: e.time.unwrap_or_default().into_owned(),
                event: e.event.unwrap_or_default().into_owned(),
                agency: actor.and_then(|a| a.agency.clone()).map(Cow::into_owned),
                official: actor
                    .filter(|a| a.kind.as_deref() == Some("agency"))
                    .and_then(|a| a.id.clone())
                    .map(Cow::into_owned),
                purpose_label: e
                    .purpose
                    .as_deref()
                    .and_then(|p| self.policy().purpose(p).map(|p| p.label_vi.clone())),
                purpose: e.purpose.map(Cow::into_owned),
                dossier_id: e.dossier_id.map(Cow::into_owned),
                fields: e.fields.into_iter().map(Cow::into_owned).collect(),
                outcome: e.outcome.unwrap_or_default().into_owned(),
                break_glass: e.break_glass.unwrap_or(false),
            });
        }
        Ok((items, page.next))
    }

    /// The citizen's grants in a given status as of `now` (e.g. pending consent).
    pub fn my_grants(
        &self,
        citizen: &CitizenId,
        status: Option<GrantStatus>,
        now: Timestamp,
    ) -> Result<Vec<Grant>, VaultError> {
        let blind = self.keyring().blind(citizen);
        let mut grants: Vec<Grant> = self
            .store
            .grants_of_citizen(&blind)?
            .into_iter()
            .filter(|g| status.is_none_or(|s| g.status_at(now) == s))
            .collect();
        grants.sort_by_key(|g| std::cmp::Reverse(g.created));
        Ok(grants)
    }

    /// Whether a verification code belongs to a real request about this citizen. A code of
    /// another citizen, or no code at all, answers the same: `None`.
    pub fn verify_code(
        &self,
        citizen: &CitizenId,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<CodeInfo>, VaultError> {
        let found = self.code_info(citizen, code, now)?;
        if found.is_none() {
            // A failed check is recorded (`access.denied`, code `code_not_genuine`): repeated
            // failures for one citizen are an anomaly the auditors see.
            self.record_refusal(
                super::Caller::Citizen(citizen),
                super::Attempt::new("code.verify"),
                "code_not_genuine",
                now,
            )?;
        }
        Ok(found)
    }

    fn code_info(
        &self,
        citizen: &CitizenId,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<CodeInfo>, VaultError> {
        let code = code.trim().to_ascii_uppercase();
        if !grant::is_code_shaped(&code) {
            return Ok(None);
        }
        let Some(id) = self.store.grant_id_by_code(&code)? else {
            return Ok(None);
        };
        let Some(g) = self.store.grant(&id)? else {
            return Ok(None);
        };
        if !crate::crypto::ct_eq(
            g.citizen.as_bytes(),
            self.keyring().blind(citizen).to_string().as_bytes(),
        ) {
            return Ok(None);
        }
        let agency = self
            .policy()
            .agency(&g.agency)
            .map_or_else(|| g.agency.to_string(), |a| a.name_vi.clone());
        let purpose_label = self
            .policy()
            .purpose(&g.purpose)
            .map_or_else(|| g.purpose.to_string(), |p| p.label_vi.clone());
        Ok(Some(CodeInfo {
            agency,
            purpose_label,
            requested_at: g.created,
            status: g.status_at(now),
        }))
    }

    /// An auditor's query; the `audit.queried` entry (naming the citizen's pseudonym when the
    /// query names a citizen) is durable before the query runs.
    pub fn audit_query(
        &self,
        auditor: &SafeId,
        q: &AuditQuery,
        citizen: Option<&CitizenId>,
        cursor: Option<u64>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page, VaultError> {
        let mut q = q.clone();
        if let Some(c) = citizen {
            let blind = self.keyring().blind(c);
            let record = self.store.citizen(&blind)?;
            q.subject = Some(self.subject_of(&blind, record.as_ref()));
        }
        let kind = match (&q.subject, &q.official, &q.agency, &q.purpose, &q.event) {
            (Some(_), ..) => "by_citizen",
            (_, Some(_), ..) => "by_official",
            (_, _, Some(_), ..) => "by_agency",
            (_, _, _, Some(_), _) => "by_purpose",
            (_, _, _, _, Some(_)) => "by_event",
            _ => "all",
        };
        let entry = AuditEntry::audit_queried(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            q.subject.as_ref(),
            kind,
        )?;
        self.audit.append(vec![entry])?;
        self.audit.query(&q, cursor, limit, false)
    }

    /// Break-glass grants, oldest first; only the unreviewed ones when `unreviewed`.
    pub fn break_glass_queue(&self, unreviewed: bool) -> Result<Vec<Grant>, VaultError> {
        let mut g: Vec<Grant> = self
            .store
            .break_glass_grants()?
            .into_iter()
            .filter(|g| !unreviewed || g.review.is_none())
            .collect();
        g.sort_by_key(|g| g.created);
        Ok(g)
    }

    /// An auditor's review of a break-glass grant: `justified` or `unjustified`, audited as
    /// `breakglass.reviewed` before it is recorded.
    pub fn review_break_glass(
        &self,
        auditor: &SafeId,
        grant_id: &str,
        justified: bool,
        now: Timestamp,
    ) -> Result<Grant, VaultError> {
        let g = self
            .store
            .grant(grant_id)?
            .filter(|g| g.break_glass)
            .ok_or(VaultError::GrantNotFound)?;
        if g.review.is_some() {
            return Err(VaultError::GrantNotPending);
        }
        let (outcome, code) = if justified {
            (crate::audit::Outcome::Permit, "justified")
        } else {
            (crate::audit::Outcome::Deny, "unjustified")
        };
        let entry = AuditEntry::breakglass_reviewed(
            &self.entry_context(now),
            &Actor::auditor(auditor.clone()),
            &SafeId::parse(&g.id)?,
            outcome,
            code,
        )?;
        let (g, ticket) = self.store.update_grant_audited(
            grant_id,
            Landing::EntriesFirst,
            &mut |g| {
                if g.review.is_some() {
                    return Err(VaultError::GrantNotPending);
                }
                g.review = Some(code.to_owned());
                g.reviewed_at = Some(now);
                Ok(vec![entry.clone()])
            },
            &[],
            &*self.audit,
        )?;
        ticket.wait()?;
        Ok(g)
    }
}
