//! `vaultctl` beside a running server: the commands that change the vault (and `status`)
//! go over the server's admin socket (`crate::admin`) when one answers there, streaming the
//! server's lines to stdout and stderr; with no server, the caller runs them itself.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::admin::{Reply, Request, SOCKET};

use super::{Command, Context, CtlError, CtlResult, KeysCommand, out, progress_bar};

/// Carries `command` out through a running server; `None` when it is not one the server
/// carries out or no server answers on the data directory's socket.
pub(super) fn carry_out(ctx: &Context, command: &Command) -> Result<Option<CtlResult>, CtlError> {
    let served = matches!(
        command,
        Command::Status
            | Command::Reload
            | Command::Erase { .. }
            | Command::Keys { .. }
            | Command::Import { .. }
            | Command::Backup { .. }
    );
    if !served {
        return Ok(None);
    }
    let Ok(conn) = UnixStream::connect(ctx.data.join(SOCKET)) else {
        return Ok(None);
    };
    let operator = ctx.operator.clone();
    let (request, file) = match command {
        Command::Reload => (Request::Reload, None),
        Command::Erase { citizen } => (
            Request::Erase {
                citizen: citizen.clone(),
                operator,
            },
            None,
        ),
        Command::Keys { command } => (
            match command {
                KeysCommand::Rotate => Request::KeysRotate { operator },
                KeysCommand::RotateToken => Request::KeysRotateToken { operator },
                KeysCommand::RetireOldTokenKeys => Request::KeysRetireOldTokenKeys { operator },
            },
            None,
        ),
        // Opened here, with the operator's rights; the server reads what was passed.
        Command::Import { file: path, strict } => {
            let f = std::fs::File::open(path)
                .map_err(|e| CtlError(format!("{}: cannot open: {e}", path.display())))?;
            let name = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            (
                Request::Import {
                    name,
                    strict: *strict,
                    operator,
                },
                Some(f),
            )
        }
        // Created here, with the operator's rights; the server writes into it.
        Command::Backup { out } => (
            Request::Backup { operator },
            Some(super::backup::create_backup_file(out)?),
        ),
        _ => (Request::Status, None),
    };
    Ok(Some(talk(&conn, &request, file.as_ref())))
}

fn talk(conn: &UnixStream, request: &Request, file: Option<&std::fs::File>) -> CtlResult {
    let unreachable = |e: &dyn std::fmt::Display| {
        CtlError(format!("the running vault-server's admin socket: {e}"))
    };
    let mut line = serde_json::to_vec(request).map_err(|e| unreachable(&e))?;
    line.push(b'\n');
    send(conn, &line, file).map_err(|e| unreachable(&e))?;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut stderr = std::io::stderr();
    for l in BufReader::new(conn).lines() {
        let l = l.map_err(|e| unreachable(&e))?;
        let reply: Reply = serde_json::from_str(&l).map_err(|e| unreachable(&e))?;
        match reply {
            Reply::Say(text) => out(&text)?,
            Reply::Warn(text) => {
                let _ = writeln!(stderr, "{text}");
            }
            Reply::Progress { line, total, .. } => {
                bar.get_or_insert_with(|| progress_bar(total, "the server is working"))
                    .set_position(line);
            }
            Reply::Ok(text) => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                return out(&text);
            }
            Reply::Error(e) => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                return Err(CtlError(e));
            }
        }
    }
    Err(CtlError(
        "the running vault-server closed its admin socket before answering; see its log".into(),
    ))
}

/// Writes the request line, with `file`'s descriptor alongside when there is one.
fn send(conn: &UnixStream, line: &[u8], file: Option<&std::fs::File>) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let Some(file) = file else {
        return (&*conn).write_all(line);
    };
    let fds = [file.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let sent = rustix::net::sendmsg(
        conn,
        &[std::io::IoSlice::new(line)],
        &mut control,
        SendFlags::empty(),
    )?;
    (&*conn).write_all(line.get(sent..).unwrap_or_default())
}
