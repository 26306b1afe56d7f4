#!/usr/bin/env python3
"""The portal signs citizens in at an independent OpenID provider, not only at the dev issuer.

Builds a vault data directory with one `vault-server dev` start, generates a self-signed
certificate for 127.0.0.1 with openssl, starts `oidc-provider` (tests/browser/oidc, installed
with `npm ci`) over HTTPS with one public client for the portal (PKCE, RS256 ID tokens), then
runs `vault-server serve --config FILE` on that data directory with `[oidc]` and `[portal]`
pointing at the provider. In Chromium: /portal, "Đăng nhập", the provider's own login and
consent pages, back on /portal signed in as that citizen.

Run from the workspace after building the binaries: `python3 tests/browser/oidc_provider_test.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Aborted,
    Agency,
    PageWatch,
    Runner,
    Server,
    TestFailure,
    check,
    demo_citizens,
    exit_with,
    free_port,
    https,
    launch_chromium,
    self_signed_cert,
    start_dev,
)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
CLIENT_ID = "hcmc-citizen-portal"


class Provider:
    """`node provider.mjs`: oidc-provider over HTTPS on 127.0.0.1:port."""

    def __init__(self, port: int, cert: Path, key: Path, redirect_uri: str, log: Path):
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise TestFailure(f"oidc-provider is not installed: run `npm ci` in {OIDC_DIR}")
        self.log = open(log, "w", encoding="utf-8")
        env = dict(
            os.environ,
            OIDC_PORT=str(port),
            OIDC_CERT=str(cert),
            OIDC_KEY=str(key),
            PORTAL_CLIENT_ID=CLIENT_ID,
            PORTAL_REDIRECT_URI=redirect_uri,
        )
        self.proc = subprocess.Popen(
            ["node", "provider.mjs"], cwd=OIDC_DIR, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.PIPE, text=True,
        )
        ready = threading.Event()

        def pump():
            for line in self.proc.stderr:
                self.log.write(line)
                self.log.flush()
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 30
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TestFailure(f"oidc-provider did not start; log {log}:\n"
                                  + log.read_text(errors="replace")[-3000:])
        self.issuer = f"https://127.0.0.1:{port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def toml_str(v) -> str:
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, data: Path, vport: int, disc: dict, provider_cert: Path,
                 redirect_uri: str):
    dev = data / "dev"
    path.write_text(
        f"""# vault-server serve: the dev data directory, the independent OpenID provider
listen = {toml_str(f"127.0.0.1:{vport}")}
data = {toml_str(data)}

[tls]
cert = {toml_str(dev / "server.pem")}
key = {toml_str(dev / "server.key")}
client_ca = {toml_str(dev / "ca.pem")}

[oidc]
issuer = {toml_str(disc["issuer"])}
audience = {toml_str(CLIENT_ID)}
jwks_url = {toml_str(disc["jwks_uri"])}
jwks_ca = {toml_str(provider_cert)}

[server]
metrics_listen = "off"

[log]
format = "text"

[portal]
client_id = {toml_str(CLIENT_ID)}
authorization_endpoint = {toml_str(disc["authorization_endpoint"])}
token_endpoint = {toml_str(disc["token_endpoint"])}
redirect_uri = {toml_str(redirect_uri)}
token_ca = {toml_str(provider_cert)}
""",
        encoding="utf-8",
    )


def main() -> int:
    runner = Runner("oidc_provider_test")
    tmp = Path(tempfile.mkdtemp(prefix="portal-oidc-test-"))
    print(f"work dir {tmp}", flush=True)
    data = tmp / "vault"
    provider = None
    vault = None
    try:
        with runner.step("build the vault's data directory with one `vault-server dev` start",
                         required=True):
            dev = start_dev(data, tmp / "dev.log")
            code = dev.stop()
            check(code == 0, f"vault-server dev exited with {code} on SIGTERM")

        with runner.step("start oidc-provider over HTTPS (self-signed certificate from openssl)",
                         required=True):
            (tmp / "oidc").mkdir()
            cert, key = self_signed_cert(tmp / "oidc")
            oport, vport = free_port(), free_port()
            redirect_uri = f"https://127.0.0.1:{vport}/portal/callback"
            provider = Provider(oport, cert, key, redirect_uri, tmp / "oidc.log")
            st, _, disc = https(provider.issuer, "GET", "/.well-known/openid-configuration",
                                ca=cert)
            check(st == 200 and disc.get("issuer") == provider.issuer, f"discovery: {st} {disc}")
            check("S256" in disc.get("code_challenge_methods_supported", []), f"{disc}")
            check("RS256" in disc.get("id_token_signing_alg_values_supported", []), f"{disc}")

        with runner.step("start `vault-server serve --config` with [oidc] and [portal] at the "
                         "provider", required=True):
            cfg = tmp / "vault.toml"
            write_config(cfg, data, vport, disc, cert, redirect_uri)
            vault = Server(["serve", "--config", str(cfg)], tmp / "serve.log", timeout=90,
                           ca=data / "dev" / "ca.pem")
            check(vault.port == vport, f"vault listens on {vault.url}, expected port {vport}")
            st, _, body = https(vault.url, "GET", "/readyz", ca=data / "dev" / "ca.pem")
            check(st == 200, f"/readyz: {st} {body}")

        citizen = demo_citizens(data)[7]
        cid, name = citizen["citizen_id"], citizen["fields"]["full_name"]
        with runner.step("an agency reads the citizen's data before the citizen signs in"):
            rel = Agency(vault.url, data, "csgt-cong-an-tphcm").grant_and_read(
                cid, "driver_licence_renewal", ["full_name", "date_of_birth"], "HS-2026-0777"
            )
            release = rel["audit"]["index"]

        with sync_playwright() as pw:
            browser = launch_chromium(pw, [data / "dev" / "server.pem", cert])
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
            ctx.set_default_timeout(15_000)
            blocked: list[str] = []
            # oidc-provider's development pages import a web font: nothing leaves this machine.
            ctx.route(
                lambda url: urlsplit(url).hostname not in ("127.0.0.1", None),
                lambda route: (blocked.append(route.request.url), route.abort()),
            )
            page = ctx.new_page()
            watch = PageWatch(page, [vault.url, provider.issuer])
            try:
                with runner.step("sign in at oidc-provider's login and consent pages, land on "
                                 "/portal signed in", required=True):
                    auth: list[str] = []
                    callbacks: list[str] = []
                    page.on("request", lambda r: auth.append(r.url)
                            if r.url.startswith(disc["authorization_endpoint"]) else None)
                    page.on("request", lambda r: callbacks.append(r.url)
                            if r.url.startswith(redirect_uri) else None)
                    page.goto(vault.url + "/portal")
                    page.get_by_role("link", name="Đăng nhập", exact=True).click()
                    page.wait_for_url(re.compile(re.escape(provider.issuer) + r"/interaction/"))
                    page.locator('input[name="login"]').fill(cid)
                    page.locator('input[name="password"]').fill("any password")
                    with page.expect_navigation():
                        page.get_by_role("button", name="Sign-in").click()
                    if page.url.startswith(provider.issuer):
                        consent = page.get_by_role("button", name="Continue")
                        if consent.count():
                            print("   consent screen shown: Continue", flush=True)
                            consent.click()
                    page.wait_for_url(re.compile(re.escape(vault.url) + r"/portal/?(#.*)?$"))
                    expect(page.locator("#accesses")).to_be_visible()
                    check(auth, "the browser never reached the authorization endpoint")
                    q = parse_qs(urlsplit(auth[0]).query)
                    for k, want in (("response_type", "code"), ("client_id", CLIENT_ID),
                                    ("code_challenge_method", "S256"),
                                    ("redirect_uri", redirect_uri)):
                        check(q.get(k) == [want], f"authorization request {k}={q.get(k)}")
                    for k in ("state", "nonce", "code_challenge"):
                        check(q.get(k), f"authorization request without {k}: {auth[0]}")

                with runner.step("the portal shows this citizen's history and record"):
                    row = page.locator(f'#accesses tr:has(a[href="/portal/receipt/{release}"])')
                    expect(row).to_contain_text("HS-2026-0777")
                    page.goto(vault.url + "/portal/record")
                    expect(page.locator("#record")).to_contain_text(name)

                with runner.step("the receipt is verified in the browser"):
                    page.goto(f"{vault.url}/portal/receipt/{release}")
                    expect(page.locator("#receipt-status")).to_have_text("Đã xác minh",
                                                                         timeout=20_000)

                with runner.step("sign out ends the session"):
                    page.goto(vault.url + "/portal")
                    old = ctx.cookies(vault.url)
                    with page.expect_navigation():
                        page.get_by_role("button", name="Đăng xuất", exact=True).click()
                    check(page.locator("#accesses").count() == 0, "still signed in")
                    other = browser.new_context()
                    other.add_cookies(old)
                    p2 = other.new_page()
                    p2.goto(vault.url + "/portal")
                    check(p2.locator("#accesses").count() == 0, "the old cookie still signs in")
                    other.close()

                with runner.step("the callback URL replayed (same state, code used twice) signs "
                                 "nobody in"):
                    check(len(callbacks) == 1, f"callbacks seen: {callbacks}")
                    res = page.goto(callbacks[0])
                    check(page.locator("#accesses").count() == 0,
                          f"replayed callback signed in (status {res.status if res else None})")
                    check(res is not None and res.status >= 400,
                          f"replayed callback answered {res.status if res else None}")
                    p_fresh = browser.new_context()
                    p3 = p_fresh.new_page()
                    p3.goto(callbacks[0])
                    check(p3.locator("#accesses").count() == 0,
                          "the callback URL signs in a browser that did not start the login")
                    p_fresh.close()
                    # the refusals above are the expected answers, not page errors
                    watch.errors = [e for e in watch.errors if "/portal/callback?" not in e]

                with runner.step("no dialog, no JavaScript error, nothing sent off this machine"):
                    check(not watch.dialogs, f"dialogs: {watch.dialogs}")
                    check(not watch.errors, "errors:\n    " + "\n    ".join(watch.errors))
                    print(f"   requests blocked (provider's web font): {sorted(set(blocked))}")
            finally:
                browser.close()
    except Aborted:
        pass
    finally:
        if vault is not None:
            code = vault.stop()
            if code not in (0, None):
                runner.failures.append(("vault-server serve stops cleanly", f"exit {code}"))
        if provider is not None:
            provider.stop()
    code = runner.finish()
    if code == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp} (logs: dev.log, oidc.log, serve.log)")
    return code


if __name__ == "__main__":
    try:
        exit_with(main())
    except TestFailure as e:
        print(f"FAILED: {e}")
        exit_with(1)
