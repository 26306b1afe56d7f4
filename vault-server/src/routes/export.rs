//! `GET /v1/audit/export`: the log's lines as `vaultctl audit export` prints them, streamed
//! in constant memory. The `audit.exported` entry is durable before the first line; a thread
//! reads entries in batches into a small bounded channel that the response drains, so a slow
//! client holds at most a few batches, and a client that goes away stops the reading.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tokio::sync::mpsc;
use vault_core::audit::export::export_line;

use crate::auth::Auditor;
use crate::problem::ApiError;
use crate::state::{State, core};

/// Entries read per batch.
const BATCH: u64 = 4_096;
/// Batches buffered between the reader and the client.
const BUFFERED: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
/// Query parameters.
pub struct ExportQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
}

/// The response body: batches of lines from the reader thread.
struct Lines(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl MessageBody for Lines {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// `GET /v1/audit/export?from=&to=`
pub async fn export(
    Auditor(who): Auditor,
    state: State,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = (q.from.unwrap_or(0), q.to);
    let (from, to) = core(&state, move |st| {
        st.vault.begin_export(&who, from, to, st.now())
    })
    .await?;
    let (tx, rx) = mpsc::channel(BUFFERED);
    let st = state.into_inner();
    std::thread::Builder::new()
        .name("audit-export".into())
        .spawn(move || {
            let log = st.vault.audit();
            let mut at = from;
            while at < to {
                let end = (at + BATCH).min(to);
                let chunk = log.entries(at, end).map(|batch| {
                    let mut out = Vec::with_capacity(batch.len() * 700);
                    for (k, (entry, leaf)) in batch.iter().enumerate() {
                        out.extend_from_slice(&export_line(at + k as u64, entry, leaf));
                    }
                    Bytes::from(out)
                });
                let failed = chunk.is_err();
                let sent = tx.blocking_send(chunk.map_err(|e| {
                    tracing::error!(target: "vault::export", code = e.code(), "export stopped");
                    std::io::Error::other("the audit log could not be read")
                }));
                if sent.is_err() || failed {
                    return;
                }
                at = end;
            }
        })
        .map_err(|_| ApiError::Unavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Cache-Control", "no-store"))
        .body(Lines(rx)))
}
