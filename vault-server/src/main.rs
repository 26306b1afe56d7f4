//! `vault-server`: `serve --config FILE` for deployments, `dev` for a working vault on a
//! laptop in one command (SPEC §7).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vault_server::config::Config;
use vault_server::server;

/// mimalloc: many small allocations per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Citizen Data Vault server.
#[derive(Debug, Parser)]
#[command(name = "vault-server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file (see deploy/vault-server.example.toml).
    Serve {
        /// The configuration file.
        #[arg(long, env = "VAULT_CONFIG")]
        config: PathBuf,
    },
    /// Development mode: certificates, keys, a dev token issuer and 1,000 demo citizens
    /// under DATA/dev/, created on first start and reused after.
    Dev {
        /// Data directory.
        #[arg(long, default_value = "./vault-data")]
        data: PathBuf,
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
}

/// The server's own messages: an event of the JSON log when the log is JSON (one format on
/// stderr), else a plain line.
fn say(text: &str) {
    if vault_server::logsink::is_json() {
        if text.contains(": error: ") {
            tracing::error!(target: "vault::server", "{text}");
        } else if text.contains(": warning: ") {
            tracing::warn!(target: "vault::server", "{text}");
        } else {
            tracing::info!(target: "vault::server", "{text}");
        }
        vault_server::logsink::flush_stderr();
        return;
    }
    // Log lines queued before this message are written first.
    vault_server::logsink::flush_stderr();
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("VAULT_"))
        .collect()
}

/// Binds the metrics listener. A dev vault whose metrics port is taken (another dev vault
/// on this machine) serves without metrics, with a warning; a production one refuses to
/// start.
fn metrics_listener(config: &Config, dev: bool) -> Result<Option<TcpListener>, String> {
    let Some(addr) = config.server.metrics_addr() else {
        return Ok(None);
    };
    match TcpListener::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if dev => {
            say(&format!(
                "vault-server: warning: metrics not served: {addr}: {e} (set VAULT_SERVER_METRICS_LISTEN)"
            ));
            Ok(None)
        }
        Err(e) => Err(format!("server.metrics_listen {addr}: {e}")),
    }
}

fn serve(
    config: &Config,
    banner: Option<&str>,
    dev: Option<vault_server::dev::DevIssuer>,
    bound: &dyn Fn(&std::net::SocketAddr) -> Result<(), String>,
) -> Result<(), String> {
    server::init_logging(&config.log.format, &config.log.level);
    let clock = vault_server::clock::server_clock(
        std::env::var_os(vault_server::clock::TEST_CLOCK_VAR).map(PathBuf::from),
    );
    let prepared = server::prepare(config, clock, dev)?;
    // `vaultctl` beside this server: its changing commands are carried out here.
    let admin_ctx = vault_server::admin::AdminContext {
        data: config.data.clone(),
        root_key: config.root_key.clone(),
        policies: config.policies.clone(),
    };
    let shared = config.store.backend == vault_server::backend::Backend::Postgres;
    let _admin = vault_server::admin::AdminSocket::start(
        prepared.state.clone().into_inner(),
        admin_ctx.clone(),
        shared,
    )?;
    if _admin.is_none() {
        say(
            "vault-server: another node serves this data directory's admin socket; vaultctl \
             commands go to it (the database is shared)",
        );
    }
    let listener =
        TcpListener::bind(&config.listen).map_err(|e| format!("listen {}: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listen {}: {e}", config.listen))?;
    let _ = prepared.state.self_origin.set(format!("https://{addr}"));
    bound(&addr)?;
    let metrics = metrics_listener(config, banner.is_some())?;
    let srv = server::run(listener, &prepared).map_err(|e| format!("serve: {e}"))?;
    let metrics = match metrics {
        Some(l) => {
            let maddr = l.local_addr().map_err(|e| format!("metrics: {e}"))?;
            let m = server::run_metrics(l, &prepared).map_err(|e| format!("metrics: {e}"))?;
            say(&format!("vault-server: metrics on http://{maddr}/metrics"));
            Some(m)
        }
        None => None,
    };
    if let Some(b) = banner {
        say(&b.replace("{addr}", &addr.to_string()));
    }
    server::log_start(&prepared, config);
    say(&format!("vault-server: listening on https://{addr}"));
    let reload_state = prepared.state.clone().into_inner();
    actix_web::rt::System::new().block_on(async {
        // SIGHUP loads the policy set again (as `vaultctl reload`).
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            actix_web::rt::spawn(async move {
                while hup.recv().await.is_some() {
                    let (st, ctx) = (std::sync::Arc::clone(&reload_state), admin_ctx.clone());
                    match actix_web::web::block(move || vault_server::admin::reload(&st, &ctx))
                        .await
                    {
                        Ok(Ok(said)) => say(&format!("vault-server: {}", said.trim_end())),
                        Ok(Err(e)) => say(&format!("vault-server: {e}")),
                        Err(_) => say("vault-server: policy reload could not run"),
                    }
                }
            });
        }
        let handle = metrics.map(|m| {
            let h = m.handle();
            actix_web::rt::spawn(m);
            h
        });
        let served = srv.await.map_err(|e| format!("serve: {e}"));
        if let Some(h) = handle {
            h.stop(false).await;
        }
        served
    })?;
    server::finish(&prepared);
    say("vault-server: stopped; in-flight requests finished, audit log and store synced");
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    // A PKCS#11 root key's module and PIN come from the environment, never the config file.
    let env = environment();
    vault_server::ctl::set_pkcs11(
        env.get("VAULT_PKCS11_MODULE").map(PathBuf::from),
        env.get("VAULT_PKCS11_PIN")
            .map(|p| zeroize::Zeroizing::new(p.clone())),
    );
    match cli.command {
        Command::Serve { config } => {
            serve(&Config::load(&config, &environment())?, None, None, &|_| {
                Ok(())
            })
        }
        Command::Dev { data, listen } => {
            let setup = vault_server::dev::prepare(&data, &listen, &environment())?;
            let d = setup.dir.display();
            let banner = format!(
                "vault-server dev: {}\n  data:         {}\n  CA:           {d}/ca.pem\n  \
                 agency certs: {d}/agencies/<agency-id>.pem and .key\n  auditor cert: {d}/auditor.pem and .key\n  \
                 citizens:     {d}/citizens.jsonl ({} demo citizens)\n  portal:       \
                 https://{{addr}}/portal (sign in with a demo citizen's id)\n  console:      \
                 https://{{addr}}/audit-console (sign in with an auditor id, e.g. kt-01)\n  tokens:       \
                 vaultctl dev token --data {} --citizen <id> | --auditor <id>\n  \
                 walk-through: {d}/README.txt\n  DEVELOPMENT ONLY: the root key and CA key sit on disk",
                if setup.created {
                    "created a new vault"
                } else {
                    "reusing the vault"
                },
                data.display(),
                vault_server::dev::DEMO_CITIZENS,
                data.display(),
            );
            let issuer = vault_server::dev::DevIssuer::load_or_create(&data)?;
            serve(&setup.config, Some(&banner), Some(issuer), &|addr| {
                vault_server::dev::write_readme(&data, &addr.to_string())
            })
        }
    }
}

fn main() -> ExitCode {
    if !vault_server::memory::disable_transparent_huge_pages() {
        say(
            "vault-server: warning: transparent huge pages could not be turned off for this process; resident memory may grow in 2 MiB steps under load",
        );
    }
    if let Err(e) = vault_server::fdlimit::raise_open_file_limit() {
        say(&format!(
            "vault-server: warning: the open-file limit could not be raised to the hard limit ({e}); the server may stop accepting connections near the soft limit"
        ));
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("vault-server: error: {e}"));
            ExitCode::FAILURE
        }
    }
}
