"""Helpers shared by the portal's browser tests: the vault server, agency calls over mutual
TLS, openssl, Debian's Chromium driven by Playwright, and axe-core.

Nothing here downloads anything: Chromium is Debian's (`/usr/bin/chromium`, or $CHROMIUM),
axe-core is the copy bundled in the `axe-playwright-python` wheel.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
BIN = Path(os.environ.get("CDV_BIN_DIR") or TARGET / "debug")
VAULT_SERVER = BIN / "vault-server"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

LISTENING = re.compile(r"listening on (https://[0-9.]+:\d+)")


class TestFailure(AssertionError):
    """A check that failed; its message says what was expected and what was seen."""


class Aborted(Exception):
    """A required step failed: the steps after it cannot run."""


def check(cond, msg: str) -> None:
    if not cond:
        raise TestFailure(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir(default_prefix: str) -> Path:
    d = os.environ.get("PORTAL_ARTIFACTS")
    path = Path(d) if d else Path(tempfile.mkdtemp(prefix=default_prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------
# Steps and the closing summary


class Runner:
    """Runs named steps, keeps going after a failed one (unless it is required), and ends
    with one summary line `N passed, N failed`."""

    def __init__(self, name: str):
        self.name = name
        self.passed = 0
        self.failures: list[tuple[str, str]] = []
        self.axe: list[tuple[str, dict]] = []
        self.axe_runs = 0
        self.started = time.monotonic()

    @contextmanager
    def step(self, title: str, required: bool = False):
        print(f"-- {title}", flush=True)
        t = time.monotonic()
        try:
            yield
        except Exception as e:  # noqa: BLE001: every failure is reported the same way
            detail = f"{type(e).__name__}: {e}"
            if not isinstance(e, TestFailure):
                detail += "\n" + traceback.format_exc()
            self.failures.append((title, detail))
            print(f"   FAILED ({time.monotonic() - t:.1f} s): {detail}", flush=True)
            if required:
                print(f"   (required step: the rest of {self.name} cannot run)", flush=True)
                raise Aborted(title) from None
        else:
            self.passed += 1
            print(f"   ok ({time.monotonic() - t:.1f} s)", flush=True)

    def finish(self) -> int:
        print(f"\n== {self.name}: {time.monotonic() - self.started:.0f} s", flush=True)
        if self.axe:
            print(f"axe-core violations (every impact) in {self.axe_runs} page checks:")
            for label, v in self.axe:
                print(f"  {label}: {v['id']} ({v['impact']}) x{len(v['nodes'])}: {v['help']}")
        elif self.axe_runs:
            print(f"axe-core: no violation on any of {self.axe_runs} page checks")
        for title, detail in self.failures:
            print(f"FAILED: {title}\n  {detail.strip()}")
        print(f"{self.name}: {self.passed} passed, {len(self.failures)} failed", flush=True)
        return 1 if self.failures else 0


# ---------------------------------------------------------------------------------------
# The vault server


class Server:
    """A `vault-server` process; its stderr goes to `log` and is watched for the address."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, timeout=180,
                 ca: Path | None = None):
        self.log_path = log
        self._log = open(log, "w", encoding="utf-8")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(
            [str(VAULT_SERVER), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.PIPE,
            env=e,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._found = threading.Event()
        self.url = ""
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._found.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise TestFailure(
                    f"vault-server {' '.join(args)} did not start "
                    f"(exit {self.proc.returncode}); log {log}:\n{tail}"
                )
        if ca is not None:
            self._wait_healthy(ca, deadline)

    def _wait_healthy(self, ca: Path, deadline: float):
        # The "listening on" line comes before the server loop (and its SIGTERM handler)
        # runs: wait for an answer, so that a stop right after the start is a clean one.
        last = None
        while time.monotonic() < deadline:
            try:
                st, _, _ = https(self.url, "GET", "/healthz", ca=ca)
                if st == 200:
                    return
                last = st
            except OSError as e:
                last = e
            time.sleep(0.1)
        self.stop()
        raise TestFailure(f"{self.url}/healthz never answered 200 (last: {last})")

    def _pump(self):
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            m = LISTENING.search(line)
            if m and not self._found.is_set():
                self.url = m.group(1)
                self._found.set()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout=60) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_dev(data: Path, log: Path, listen="127.0.0.1:0") -> Server:
    """`vault-server dev`: creates the dev vault in `data` on the first start."""
    return Server(
        ["dev", "--data", str(data), "--listen", listen],
        log,
        env={"VAULT_SERVER_METRICS_LISTEN": "off"},
        ca=data / "dev" / "ca.pem",
    )


def demo_citizens(data: Path) -> list[dict]:
    with open(data / "dev" / "citizens.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------
# HTTPS calls (standard library only)


def https(
    base: str,
    method: str,
    path: str,
    *,
    ca: Path,
    cert: tuple[Path, Path] | None = None,
    body=None,
    form: dict | None = None,
    headers: dict | None = None,
):
    """One HTTPS request (a JSON `body` or a urlencoded `form`); returns (status, headers,
    parsed JSON or text). Redirects are not followed."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    host, port = base.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("content-type", "application/json")
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        h.setdefault("content-type", "application/x-www-form-urlencoded")
    try:
        conn.request(method, path, body=data, headers=h)
        res = conn.getresponse()
        raw = res.read().decode("utf-8", "replace")
        hdrs = {k.lower(): v for k, v in res.getheaders()}
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return res.status, hdrs, parsed


class Agency:
    """An agency system of a dev vault: its client certificate from DATA/dev/agencies/."""

    def __init__(self, base: str, data: Path, agency_id: str):
        self.base = base
        self.id = agency_id
        self.ca = data / "dev" / "ca.pem"
        d = data / "dev" / "agencies"
        self.cert = (d / f"{agency_id}.pem", d / f"{agency_id}.key")

    def call(self, method: str, path: str, body=None, headers=None):
        return https(self.base, method, path, ca=self.ca, cert=self.cert, body=body, headers=headers)

    def grant(self, citizen_id, purpose, fields, dossier_id, official="can-bo-01"):
        return self.call(
            "POST",
            "/v1/grants",
            {
                "citizen_id": citizen_id,
                "purpose": purpose,
                "dossier_id": dossier_id,
                "fields": fields,
                "official": {"id": official, "unit": "doi-1"},
            },
        )

    def read(self, citizen_id, token, fields):
        return self.call(
            "GET",
            f"/v1/citizens/{citizen_id}/fields?fields={','.join(fields)}",
            headers={"authorization": f"Bearer {token}"},
        )

    def grant_and_read(self, citizen_id, purpose, fields, dossier_id):
        """A grant that needs no consent and one release; returns the release's answer."""
        st, _, g = self.grant(citizen_id, purpose, fields, dossier_id)
        check(st == 201, f"{self.id}: POST /v1/grants answered {st} {g}, expected 201")
        st, _, r = self.read(citizen_id, g["access_token"], fields)
        check(st == 200, f"{self.id}: GET fields answered {st} {r}, expected 200")
        return r


# ---------------------------------------------------------------------------------------
# openssl


def openssl(*args: str) -> bytes:
    p = subprocess.run(["openssl", *args], capture_output=True, check=False)
    if p.returncode != 0:
        raise TestFailure(f"openssl {' '.join(args)}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def self_signed_cert(directory: Path, ip="127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (RSA 2048, 2 days) for `ip`; returns (cert, key)."""
    cert, key = directory / "tls.pem", directory / "tls.key"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext", "extendedKeyUsage=serverAuth",
        "-keyout", str(key), "-out", str(cert),
    )
    return cert, key


def spki_sha256(cert: Path) -> str:
    """The base64 SHA-256 of a certificate's public key (Chromium's SPKI pin format)."""
    pub = openssl("x509", "-in", str(cert), "-noout", "-pubkey")
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True, check=True
    ).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


# ---------------------------------------------------------------------------------------
# Chromium, axe-core


def launch_chromium(pw, trusted_certs: list[Path]):
    """Debian's Chromium, headless. The servers' certificates are trusted by their public
    key (`--ignore-certificate-errors-spki-list`): the pages stay a secure context, so the
    receipt check's WebCrypto runs as it would for a citizen, and any other certificate
    still fails."""
    pins = ",".join(spki_sha256(c) for c in trusted_certs)
    args = [f"--ignore-certificate-errors-spki-list={pins}"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


class PageWatch:
    """Records what a page must never do: open a dialog, load from another origin, log a
    JavaScript error, get an error answer for a resource. A missing /favicon.ico (which the
    browser asks for by itself) is only noted."""

    def __init__(self, page, origins: list[str]):
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.notes: set[str] = set()
        self.origins = origins

        def on_dialog(d):
            self.dialogs.append(f"{d.type}: {d.message} on {page.url}")
            d.dismiss()

        def on_request(r):
            if not any(r.url.startswith(o) for o in self.origins) and not r.url.startswith(
                ("data:", "blob:", "about:")
            ):
                self.foreign.append(r.url)

        def on_response(r):
            if r.status >= 400:
                if urllib.parse.urlsplit(r.url).path == "/favicon.ico":
                    self.notes.add(f"GET /favicon.ico answered {r.status}")
                else:
                    self.errors.append(f"{r.request.method} {r.url} answered {r.status}")

        def on_console(m):
            # resource failures are reported by on_response with their URL
            if m.type == "error" and not m.text.startswith("Failed to load resource"):
                self.errors.append(f"{page.url}: console error: {m.text}")

        page.on("dialog", on_dialog)
        page.on("request", on_request)
        page.on("response", on_response)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        page.on("console", on_console)


_AXE = None


def axe_check(runner: Runner, page, label: str) -> None:
    """Runs axe-core on the page as it is now; prints every violation, records them, and
    fails on any of impact serious or critical.

    axe-core is evaluated through Playwright's `page.evaluate` (the DevTools protocol), to
    which the page's `Content-Security-Policy: default-src 'self'` does not apply: no
    `bypass_csp`, so the pages run under their real policy throughout."""
    global _AXE
    if _AXE is None:
        from axe_playwright_python.sync_playwright import Axe

        _AXE = Axe()
    res = _AXE.run(page, options={"resultTypes": ["violations"]}).response
    runner.axe_runs += 1
    violations = res["violations"]
    bad = []
    for v in violations:
        runner.axe.append((label, v))
        targets = "; ".join(
            " ".join(map(str, n.get("target", []))) for n in v["nodes"][:5]
        )
        print(f"   axe {label}: {v['id']} ({v['impact']}) x{len(v['nodes'])}: {v['help']} [{targets}]")
        summary = (v["nodes"][0].get("failureSummary") or "").replace("\n", " ")
        print(f"       {summary[:300]}")
        if v["impact"] in ("serious", "critical"):
            bad.append(f"{v['id']} ({v['impact']})")
    check(not bad, f"axe-core on {label}: {', '.join(bad)}")


def exit_with(code: int) -> None:
    sys.stdout.flush()
    sys.exit(code)
