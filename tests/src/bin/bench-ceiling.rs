//! The framework ceiling for the benchmark: actix-web with the vault's own TLS configuration
//! (rustls/ring, TLS 1.3/1.2 AEAD suites, client certificates verified against the same CA),
//! answering a fixed JSON body of a given size to any request over a verified client
//! certificate. Nothing else: what the vault adds on top is what the comparison shows.
//!
//! `bench-ceiling --cert F --key F --client-ca F --body-bytes N [--listen 127.0.0.1:0]`

#![expect(
    clippy::print_stdout,
    reason = "prints the address it listens on for the benchmark driver"
)]

use std::net::TcpListener;
use std::path::PathBuf;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use vault_server::tls::PeerCert;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn answer(req: HttpRequest, body: web::Data<String>) -> HttpResponse {
    if req.conn_data::<PeerCert>().is_none() {
        return HttpResponse::Forbidden().finish();
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.get_ref().clone())
}

fn main() -> std::process::ExitCode {
    let (Some(cert), Some(key), Some(ca)) = (arg("--cert"), arg("--key"), arg("--client-ca"))
    else {
        eprintln!("usage: bench-ceiling --cert F --key F --client-ca F --body-bytes N");
        return std::process::ExitCode::FAILURE;
    };
    let size: usize = arg("--body-bytes")
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    // A JSON object padded to exactly `size` bytes.
    let pad = size.saturating_sub(12).max(1);
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(pad));
    let run = || -> std::io::Result<()> {
        let tls = vault_server::tls::server_config(
            &PathBuf::from(&cert),
            &PathBuf::from(&key),
            &PathBuf::from(&ca),
            &[],
        )
        .map(|(config, _)| config)
        .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(&listen)?;
        println!("listening on https://{}", listener.local_addr()?);
        let body = web::Data::new(body);
        actix_web::rt::System::new().block_on(
            HttpServer::new(move || {
                App::new()
                    .app_data(body.clone())
                    .default_service(web::to(answer))
            })
            .on_connect(vault_server::tls::on_connect)
            .listen_rustls_0_23(listener, tls)?
            .run(),
        )
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-ceiling: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
