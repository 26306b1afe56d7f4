#!/usr/bin/env python3
"""Browser test of the audit console (/audit-console) in Debian's Chromium.

Starts one `vault-server dev` in a temporary directory; a hospital makes a break-glass grant
and one release, the citizen files a complaint about that release and a data-subject request
(agency calls over mutual TLS, citizen calls with a `vaultctl dev token`). Then, as an
auditor signed in at the dev issuer: a log search by the citizen's id (by POST) and an entry
whose inclusion proof is checked in the browser, checkpoints with a consistency proof checked
in the browser, the break-glass review (seen through the auditor API and by the citizen), a
complaint answer and a request update (seen by the citizen), the breach report for the
hospital, the ledger and the record of processing; a citizen id cannot sign in; no URL the
browser asked for carries the citizen id; sign-out ends the session on the server. axe-core
runs on every console page in Vietnamese and English at 360 and 1280 pixels (serious or
critical violations fail); full-page screenshots go to $PORTAL_ARTIFACTS (default: a
temporary directory).

Run from the workspace after building the binaries: `python3 tests/browser/console_test.py`.
Exits non-zero on any failure.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BIN,
    Aborted,
    Agency,
    PageWatch,
    Runner,
    TestFailure,
    artifacts_dir,
    axe_check,
    check,
    demo_citizens,
    exit_with,
    https,
    launch_chromium,
    start_dev,
)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

VAULTCTL = BIN / "vaultctl"
WIDTHS = (360, 1280)
AUDITOR = "kt-01"
HOSPITAL = "benh-vien-cho-ray"
CONSOLE = re.compile(r"^https://127\.0\.0\.1:\d+/audit-console/?(\?[^#]*)?(#.*)?$")
SESSION_COOKIE = "__Host-vault-console"
REVIEW_NOTE = "Không có ca cấp cứu nào vào giờ này; đã báo bệnh viện."
COMPLAINT = "Tôi không nhập viện Chợ Rẫy; xin kiểm tra lần truy cập này."
ANSWER = "Khiếu nại có cơ sở: lần truy cập không gắn với ca cấp cứu nào."
REQUEST_NOTE = "Đã nhận yêu cầu, sẽ gửi bản sao trong hạn."

# Strings of the catalogs (vault-server/i18n) the test reads or clicks.
T = {
    "vi": {
        "sign_in": "Đăng nhập",
        "sign_out": "Đăng xuất",
        "verified": "Đã xác minh",
        "checking": "Đang kiểm tra…",
        "other_lang": "English",
        "search": "Tìm",
        "open_report": "Lập báo cáo",
    },
    "en": {
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "verified": "Verified",
        "checking": "Checking…",
        "other_lang": "Tiếng Việt",
        "search": "Search",
        "open_report": "Produce the report",
    },
}
NOT_AUDITOR = "Tài khoản này không có vai trò kiểm toán viên."
DEV_ISSUER_BAD_ID = "Mã kiểm toán viên không hợp lệ"


def submit(page, button):
    """Clicks a button or link and waits for the page it leads to; returns its response."""
    with page.expect_navigation() as nav:
        button.click()
    return nav.value


def vaultctl_token(data: Path, who: str, value: str) -> str:
    p = subprocess.run(
        [str(VAULTCTL), "dev", "token", "--data", str(data), f"--{who}", value],
        capture_output=True, text=True, check=False, timeout=120,
    )
    check(p.returncode == 0 and p.stdout.strip(),
          f"vaultctl dev token --{who} {value}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout.strip()


class Console:
    """The state the steps share."""

    def __init__(self, runner: Runner, browser, base: str, data: Path, shots: Path):
        self.r = runner
        self.browser = browser
        self.base = base
        self.data = data
        self.shots = shots
        self.ca = data / "dev" / "ca.pem"
        self.watches: list[PageWatch] = []
        # every URL the browser asked for (redirects included) and every page it showed
        self.urls: list[str] = []
        self.cid = ""

    # -- browser helpers ------------------------------------------------------------------

    def new_page(self, width=1280):
        ctx = self.browser.new_context(viewport={"width": width, "height": 900}, locale="vi-VN")
        ctx.set_default_timeout(15_000)
        ctx.on("request", lambda r: self.urls.append(r.url))
        page = ctx.new_page()
        page.on("framenavigated", lambda f: self.urls.append(f.url))
        self.watches.append(PageWatch(page, [self.base]))
        return page

    def goto(self, page, path: str, status=200):
        res = page.goto(self.base + path)
        check(res is not None, f"GET {path}: no response")
        check(res.status == status, f"GET {path}: status {res.status}, expected {status}")
        if status == 200:
            csp = res.headers.get("content-security-policy", "")
            check("default-src 'self'" in csp and "frame-ancestors 'none'" in csp,
                  f"GET {path}: CSP is {csp!r}")
        return res

    def html_lang(self, page) -> str:
        return page.evaluate("document.documentElement.lang")

    def signed_in(self, page) -> bool:
        return page.locator("#break-glass").count() > 0

    def sign_in(self, page, auditor: str):
        """From the signed-out landing page: the sign-in link, the dev issuer's form, back
        signed in."""
        self.goto(page, "/audit-console")
        page.get_by_role("link", name=T["vi"]["sign_in"], exact=True).click()
        page.wait_for_url(re.compile(r"/dev-issuer/authorize"))
        page.get_by_label("Mã kiểm toán viên").fill(auditor)
        return submit(page, page.get_by_role("button", name="Đăng nhập", exact=True))

    def search_citizen(self, page, cid: str, lang="vi"):
        form = page.locator("#entries form").first
        form.locator('input[name="citizen_id"]').fill(cid)
        return submit(page, form.get_by_role("button", name=T[lang]["search"], exact=True))

    def shot(self, page, name: str):
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def main() -> int:
    runner = Runner("console_test")
    tmp = Path(tempfile.mkdtemp(prefix="console-test-"))
    shots = artifacts_dir("console-artifacts-")
    print(f"work dir {tmp}; screenshots in {shots}", flush=True)
    server = None
    try:
        data = tmp / "vault"
        with runner.step("start vault-server dev (creates the dev vault)", required=True):
            server = start_dev(data, tmp / "server.log")
            print(f"   {server.url}", flush=True)
        run(runner, server.url, data, shots)
    except Aborted:
        pass
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, None):
                print(f"vault-server exited with {code}; log {tmp / 'server.log'}")
                runner.failures.append(("vault-server stops cleanly on SIGTERM", f"exit {code}"))
    code = runner.finish()
    if code == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp} (server log: {tmp / 'server.log'})")
    return code


def run(runner: Runner, base: str, data: Path, shots: Path):
    citizens = demo_citizens(data)
    cid = citizens[2]["citizen_id"]
    hospital = Agency(base, data, HOSPITAL)
    ca = data / "dev" / "ca.pem"
    s: dict = {"cid": cid}

    def me(method, path, body=None):
        return https(base, method, path, ca=ca, body=body,
                     headers={"authorization": f"Bearer {s['citizen_token']}"})

    def audit(method, path, body=None):
        return https(base, method, path, ca=ca, body=body,
                     headers={"authorization": f"Bearer {s['auditor_token']}"})

    s["me"], s["audit"] = me, audit

    with runner.step("a break-glass grant and release, a complaint, a data-subject request",
                     required=True):
        st, _, g = hospital.grant(cid, "emergency_care", ["blood_type"], "CC-1",
                                  official="bac-si-01")
        check(st == 201 and g.get("status") == "active", f"break-glass grant: {st} {g}")
        s["grant"] = g["grant_id"]
        st, _, rel = hospital.read(cid, g["access_token"], ["blood_type"])
        check(st == 200, f"break-glass release: {st} {rel}")
        s["release"] = rel["audit"]["index"]
        s["citizen_token"] = vaultctl_token(data, "citizen", cid)
        s["auditor_token"] = vaultctl_token(data, "auditor", AUDITOR)
        st, _, c = me("POST", "/v1/me/complaints",
                      {"audit_index": s["release"], "text": COMPLAINT})
        check(st == 201 and c.get("status") == "open", f"POST /v1/me/complaints: {st} {c}")
        s["complaint"] = c["id"]
        st, _, q = me("POST", "/v1/me/requests", {"kind": "access"})
        check(st == 201 and q.get("status") == "received", f"POST /v1/me/requests: {st} {q}")
        s["request"] = q["id"]
        st, _, queue = audit("GET", "/v1/audit/break-glass?status=unreviewed")
        check(st == 200 and any(i["grant_id"] == s["grant"] for i in queue),
              f"unreviewed break-glass queue: {st} {queue}")
        print(f"   citizen {cid[:3]}…, grant {s['grant']}, release #{s['release']}, "
              f"complaint {s['complaint']}, request {s['request']}")

    with sync_playwright() as pw:
        browser = launch_chromium(pw, [data / "dev" / "server.pem"])
        p = Console(runner, browser, base, data, shots)
        p.cid = cid
        try:
            flows(p, s, hospital)
        finally:
            with runner.step("no URL the browser asked for or showed carries the citizen id"):
                bad = sorted({u for u in p.urls if cid in u})
                check(p.urls, "no URL was recorded")
                check(not bad, f"URLs with the citizen id: {bad}")
                print(f"   {len(p.urls)} URLs checked")
            with runner.step("no page opened a dialog, loaded another origin or logged an error"):
                dialogs = [d for w in p.watches for d in w.dialogs]
                foreign = [u for w in p.watches for u in w.foreign]
                errors = [e for w in p.watches for e in w.errors]
                check(not dialogs, f"dialogs opened: {dialogs}")
                check(not foreign, f"requests to other origins: {foreign}")
                check(not errors, "errors:\n    " + "\n    ".join(errors))
                for note in sorted({n for w in p.watches for n in w.notes}):
                    print(f"   note: {note}")
            browser.close()


def flows(p: Console, s: dict, hospital: Agency):
    r = p.r
    page = p.new_page()
    cid, rel = s["cid"], s["release"]

    with r.step("the signed-out landing page links to the sign-in"):
        p.goto(page, "/audit-console")
        check(p.html_lang(page) == "vi", f"<html lang> is {p.html_lang(page)!r}, expected vi")
        check(not p.signed_in(page), "the landing page shows #break-glass before sign-in")
        link = page.get_by_role("link", name=T["vi"]["sign_in"], exact=True)
        expect(link).to_have_attribute("href", "/audit-console/login")

    with r.step("sign in as an auditor at the dev issuer and land on /audit-console",
                required=True):
        p.sign_in(page, AUDITOR)
        check(CONSOLE.match(page.url), f"after sign-in the browser is at {page.url}")
        check(p.signed_in(page), f"not signed in at {page.url}: {page.inner_text('main')[:300]}")
        for sid in ("entries", "break-glass", "complaints", "requests", "anomalies",
                    "reports", "checkpoints"):
            check(page.locator(f"#{sid}").count() == 1, f"home has no #{sid}")
        expect(page.get_by_role("button", name=T["vi"]["sign_out"], exact=True)).to_be_visible()

    with r.step("the console's session cookie is __Host-, HttpOnly, Secure, SameSite=Lax"):
        cookies = {c["name"]: c for c in page.context.cookies()}
        c = cookies.get(SESSION_COOKIE)
        check(c, f"no {SESSION_COOKIE} cookie among {sorted(cookies)}")
        check(c["httpOnly"] and c["secure"] and c["sameSite"] == "Lax" and c["path"] == "/",
              f"session cookie {c}")

    with r.step("search the log by the citizen's id (POST) and open the release's entry"):
        p.goto(page, "/audit-console")
        res = p.search_citizen(page, cid)
        check(res.status == 200, f"POST /audit-console/search answered {res.status}")
        check(urlsplit(page.url).path == "/audit-console/search" and not urlsplit(page.url).query,
              f"results at {page.url}")
        rows = page.locator("#entries tbody tr")
        n = rows.count()
        check(n >= 3, f"only {n} result rows for the citizen")
        row = page.locator(f'#entries tr:has(a[href="/audit-console/entries/{rel}"])')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("record.released")
        expect(row).to_contain_text(HOSPITAL)
        events = page.locator("#entries tbody tr td:nth-child(3)").all_inner_texts()
        print(f"   {n} rows: {sorted(set(events))}")
        check("complaint.filed" in events and "request.received" in events,
              f"the citizen's complaint and request are not among {events}")
        row.get_by_role("link", name=str(rel), exact=True).click()
        page.wait_for_url(re.compile(rf"/audit-console/entries/{rel}$"))
        expect(page.locator("#proof-status")).to_have_text(T["vi"]["verified"], timeout=20_000)
        expect(page.locator("pre.entry")).to_contain_text('"record.released"')
        check(cid not in page.inner_text("main"), "the entry page shows the citizen id")

    with r.step("a malformed citizen id is refused in words and not echoed"):
        p.goto(page, "/audit-console")
        bad = "0799"
        res = p.search_citizen(page, bad)
        check(res.status == 400, f"search with citizen_id={bad}: {res.status}")
        expect(page.locator("[role=alert]")).to_contain_text("Số định danh cá nhân")
        value = page.locator('#entries input[name="citizen_id"]').input_value()
        check(value == "", f"the refused id is echoed in the form: {value!r}")
        # the browser's own record of the 400 is expected here
        p.watches[0].errors = [e for e in p.watches[0].errors
                               if not e.startswith("POST ") or "/audit-console/search" not in e]

    with r.step("checkpoints: an older one is consistent with the latest (checked in the browser)"):
        p.goto(page, "/audit-console")
        submit(page, page.locator("#checkpoints a[href='/audit-console/checkpoints']"))
        expect(page.locator("#checkpoints pre.entry").first).to_contain_text("\n")
        page.locator("#cp-from").fill(str(rel))
        res = submit(page, page.locator("#checkpoints form button[type=submit]"))
        check(res.status == 200, f"{page.url}: {res.status}")
        check(urlsplit(page.url).query == f"from={rel}", f"consistency form went to {page.url}")
        expect(page.locator("#consistency-status")).to_have_text(T["vi"]["verified"],
                                                                 timeout=20_000)
        pres = page.locator("#checkpoints pre.entry").all_inner_texts()
        check(len(pres) == 2, f"{len(pres)} checkpoints shown, expected 2")
        older, latest = int(pres[1].splitlines()[1]), int(pres[0].splitlines()[1])
        print(f"   asked from={rel}: checkpoint {older} -> {latest}")
        check(older <= rel and older <= latest, f"sizes {older} -> {latest} for from={rel}")

    with r.step("review the break-glass grant as unjustified, with a note"):
        p.goto(page, "/audit-console")
        card = page.locator("#break-glass article", has_text="CC-1")
        expect(card).to_have_count(1)
        expect(card.locator(f'a[href="/audit-console/entries/{rel}"]')).to_have_count(1)
        expect(card).to_contain_text("bac-si-01")
        card.locator('select[name="outcome"]').select_option("unjustified")
        card.locator('textarea[name="note"]').fill(REVIEW_NOTE)
        res = submit(page, card.get_by_role("button", name="Ghi nhận xem xét", exact=True))
        check(res.status == 200 and urlsplit(page.url).query == "done=review",
              f"after the review: {res.status} at {page.url}")
        expect(page.locator("[role=status]")).to_have_text("Đã ghi nhận xem xét.")
        expect(page.locator("#break-glass article", has_text="CC-1")).to_have_count(0)

    with r.step("the review is in the auditor API and in the citizen's notifications"):
        st, _, done = s["audit"]("GET", "/v1/audit/break-glass?status=reviewed")
        item = next((i for i in done or [] if i.get("grant_id") == s["grant"]), None)
        check(st == 200 and item, f"reviewed queue: {st} {done}")
        review = item.get("review") or {}
        check(review.get("outcome") == "unjustified" and review.get("note") == REVIEW_NOTE
              and review.get("auditor") == AUDITOR, f"review: {review}")
        st, _, n = s["me"]("GET", "/v1/me/notifications")
        kinds = [i for i in (n or {}).get("items", []) if i.get("kind") == "break_glass_reviewed"]
        check(st == 200 and kinds and kinds[0].get("outcome") == "unjustified",
              f"citizen notifications: {st} {n}")

    with r.step("answer the complaint; the citizen sees the answer"):
        p.goto(page, "/audit-console")
        card = page.locator("#complaints article", has_text=COMPLAINT)
        expect(card).to_have_count(1)
        expect(card.locator(f'a[href="/audit-console/entries/{rel}"]')).to_have_count(1)
        card.locator('select[name="outcome"]').select_option("upheld")
        card.locator('textarea[name="text"]').fill(ANSWER)
        submit(page, card.get_by_role("button", name="Gửi trả lời", exact=True))
        expect(page.locator("[role=status]")).to_have_text("Đã gửi trả lời.")
        expect(page.locator("#complaints article", has_text=COMPLAINT)).to_have_count(0)
        st, _, mine = s["me"]("GET", "/v1/me/complaints")
        items = mine.get("items", mine) if isinstance(mine, dict) else mine
        c = next((i for i in items or [] if i.get("id") == s["complaint"]), None)
        check(st == 200 and c, f"GET /v1/me/complaints: {st} {mine}")
        check(c["status"] == "answered" and c["answer"] == ANSWER and c["outcome"] == "upheld",
              f"the citizen's complaint: {c}")

    with r.step("acknowledge the data-subject request; the citizen sees the status"):
        p.goto(page, "/audit-console")
        cards = page.locator("#requests article")
        expect(cards).to_have_count(1)
        card = cards.first
        expect(card).to_contain_text("Yêu cầu cung cấp dữ liệu")
        card.locator('select[name="status"]').select_option("acknowledged")
        card.locator('textarea[name="note"]').fill(REQUEST_NOTE)
        submit(page, card.get_by_role("button", name="Cập nhật", exact=True))
        expect(page.locator("[role=status]")).to_have_text("Đã cập nhật yêu cầu.")
        card = page.locator("#requests article").first
        expect(card.locator("dt:text-is('Trạng thái') + dd")).to_contain_text("Đã xác nhận")
        st, _, mine = s["me"]("GET", "/v1/me/requests")
        q = next((i for i in mine.get("items", []) if i.get("id") == s["request"]), None)
        check(st == 200 and q and q["status"] == "acknowledged"
              and any(h.get("note") == REQUEST_NOTE for h in q["history"]),
              f"the citizen's request: {st} {q}")

    with r.step("the breach report for the hospital counts one citizen"):
        p.goto(page, "/audit-console")
        form = page.locator('#reports form[action="/audit-console/reports/breach"]')
        form.locator('input[name="agency"]').fill(HOSPITAL)
        res = submit(page, form.get_by_role("button", name=T["vi"]["open_report"], exact=True))
        check(res.status == 200 and urlsplit(page.url).path == "/audit-console/reports/breach",
              f"breach report: {res.status} at {page.url}")
        expect(page.locator("#affected-citizens")).to_have_text("1")
        expect(page.locator("main")).to_contain_text("Bệnh viện Chợ Rẫy")
        expect(page.locator(f'main a[href="/audit-console/entries/{rel}"]')).to_have_count(1)

    with r.step("the declare-once ledger and the record of processing"):
        p.goto(page, "/audit-console")
        submit(page, page.locator('#reports a[href="/audit-console/reports/reuse"]'))
        row = page.locator("main tbody tr", has_text="Bệnh viện Chợ Rẫy")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Cấp cứu (truy cập khẩn cấp)")
        cells = row.locator("td").all_inner_texts()
        print(f"   ledger row: {cells}")
        check(cells[2].strip() == "1", f"the hospital's releases in the ledger: {cells}")
        p.goto(page, "/audit-console")
        submit(page, page.locator('#reports a[href="/audit-console/reports/inventory"]'))
        row = page.locator("main tbody tr", has_text="Cấp cứu (truy cập khẩn cấp)")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Bệnh viện Chợ Rẫy")
        expect(page.locator("main")).to_contain_text("SHA-256")

    wrong_key(p, page, rel)
    citizen_cannot_sign_in(p, cid)
    more_cases(p, s, hospital)
    pages_axe_screenshots(p, page, rel)
    logout(p, page)


def wrong_key(p: Console, page, rel: int):
    """The in-browser checks are not vacuous: with another log key (its key hash recomputed,
    so that only the signature can fail), or with one proof hash changed, they fail."""
    with p.r.step("with a wrong log key or a changed proof hash the checks read failed"):
        st, _, key = https(p.base, "GET", "/v1/audit/pubkey", ca=p.ca)
        check(st == 200 and isinstance(key, str) and key.count("+") >= 2,
              f"GET /v1/audit/pubkey: {st} {key!r}")
        name, _, pk = key.strip().split("+", 2)
        raw = bytearray(base64.b64decode(pk))
        raw[-1] ^= 0x01
        khash = hashlib.sha256(name.encode() + b"\n" + bytes(raw)).digest()[:4].hex()
        forged = f"{name}+{khash}+{base64.b64encode(bytes(raw)).decode()}"
        served = []

        def swap_key(route):
            served.append(route.request.url)
            route.fulfill(status=200, content_type="text/plain; charset=utf-8", body=forged)

        def change_hash(route):
            # The page as the server sends it (fetched here: Playwright's own fetch does not
            # trust the dev CA), with the first hash of its proof changed.
            u = urlsplit(route.request.url)
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
            try:
                st, hdrs, body = https(p.base, "GET", u.path + (f"?{u.query}" if u.query else ""),
                                      ca=p.ca, headers={"cookie": cookie})
            except OSError as e:  # never leave the browser waiting for an answer
                print(f"   GET {u.path}: {e}")
                route.abort()
                return
            at = body.find('"hashes":["') if isinstance(body, str) else -1
            if at >= 0:
                i = at + len('"hashes":["')
                body = body[:i] + ("0" if body[i] != "0" else "1") + body[i + 1:]
                served.append(route.request.url)
            keep = ("content-type", "content-security-policy", "cache-control")
            route.fulfill(status=st, headers={k: v for k, v in hdrs.items() if k in keep},
                          body=body if isinstance(body, str) else "")

        pages = ((f"/audit-console/entries/{rel}", "proof"),
                 (f"/audit-console/checkpoints?from={rel}", "consistency"))
        for what, pattern, handler in (
            ("another log key", "**/v1/audit/pubkey", swap_key),
            ("one proof hash changed", re.compile(r"/audit-console/(entries|checkpoints)"),
             change_hash),
        ):
            served.clear()
            page.route(pattern, handler)
            try:
                for path, sid in pages:
                    p.goto(page, path)
                    status = page.locator(f"#{sid}-status")
                    failed = status.get_attribute("data-failed")
                    check(failed and failed != T["vi"]["verified"], f"data-failed is {failed!r}")
                    expect(status).to_have_text(failed, timeout=20_000)
                    reason = page.locator(f"#{sid}-reason").inner_text()
                    print(f"   {what}: {path}: {failed!r} ({reason})")
                    check(reason, f"{path}: no reason shown for the failed check")
            finally:
                page.unroute(pattern)
            check(len(served) >= 2, f"{what}: served {len(served)} times")
        p.goto(page, f"/audit-console/entries/{rel}")
        expect(page.locator("#proof-status")).to_have_text(T["vi"]["verified"], timeout=20_000)


def citizen_cannot_sign_in(p: Console, cid: str):
    with p.r.step("a citizen's id cannot sign in to the console"):
        page = p.new_page()
        watch = p.watches[-1]
        p.goto(page, "/audit-console/login", status=200)
        check("/dev-issuer/authorize" in page.url, f"login went to {page.url}")
        page.get_by_label("Mã kiểm toán viên").fill(cid)
        res = submit(page, page.get_by_role("button", name="Đăng nhập", exact=True))
        alert = page.locator("[role=alert]")
        said = alert.first.inner_text() if alert.count() else page.inner_text("body")[:300]
        print(f"   answered {res.status} at {urlsplit(page.url).path}: {said!r}")
        check(res.status in (400, 403), f"sign-in with a citizen id answered {res.status}")
        check(NOT_AUDITOR in said or DEV_ISSUER_BAD_ID in said,
              f"the refusal says {said!r}")
        if NOT_AUDITOR not in said:
            print(f"   note: the refusal is the dev issuer's ({DEV_ISSUER_BAD_ID}…), "
                  f"not the console's {NOT_AUDITOR!r}")
        check(SESSION_COOKIE not in {c["name"] for c in page.context.cookies()},
              "a console session cookie was set")
        p.goto(page, "/audit-console")
        check(not p.signed_in(page), "the console is signed in after the refusal")
        watch.errors = [e for e in watch.errors if "/dev-issuer/authorize" not in e]

        # Signed in to the portal as that citizen, the console still asks for a sign-in.
        p.goto(page, "/portal/login")
        page.get_by_label("Số định danh cá nhân").fill(cid)
        submit(page, page.get_by_role("button", name="Đăng nhập", exact=True))
        check(page.locator("#accesses").count() == 1, f"portal sign-in: at {page.url}")
        p.goto(page, "/audit-console")
        check(not p.signed_in(page), "a citizen's portal session opens the console")
        res = page.goto(p.base + "/audit-console/checkpoints")
        check(urlsplit(page.url).path == "/audit-console/login" or
              "/dev-issuer/authorize" in page.url,
              f"/audit-console/checkpoints with a portal session: {res.status} at {page.url}")
        page.context.close()


def more_cases(p: Console, s: dict, hospital: Agency):
    """A second break-glass release and an open complaint about it, so that the home page
    checked by axe-core and shown in the screenshots has a card in each queue."""
    with p.r.step("a second break-glass release and complaint for the screenshots"):
        cid = s["cid"]
        st, _, g = hospital.grant(cid, "emergency_care", ["blood_type", "health_notes"], "CC-2",
                                  official="bac-si-02")
        check(st == 201, f"second break-glass grant: {st} {g}")
        st, _, rel = hospital.read(cid, g["access_token"], ["blood_type"])
        check(st == 200, f"second release: {st} {rel}")
        text = "Tôi không biết vì sao bệnh viện đọc nhóm máu của tôi lần thứ hai."
        st, _, c = s["me"]("POST", "/v1/me/complaints",
                           {"audit_index": rel["audit"]["index"], "text": text})
        check(st == 201, f"second complaint: {st} {c}")


PAGES = ("home", "results", "entry", "checkpoints", "breach", "ledger", "inventory")


def pages_axe_screenshots(p: Console, page, rel: int):
    """axe-core on every console page in both languages at both widths (one step each, so
    that every page is checked whatever another shows); full-page screenshots of each."""
    r = p.r
    anon = p.new_page()
    for lang in ("vi", "en"):
        t = T[lang]
        for width in WIDTHS:
            tag = f"{lang}, {width} px"
            suffix = f"-{width}" if lang == "vi" else f"-{lang}-{width}"
            with r.step(f"axe + screenshot: landing, {tag}"):
                anon.set_viewport_size({"width": width, "height": 900})
                p.goto(anon, f"/audit-console?lang={lang}")
                check(p.html_lang(anon) == lang, f"landing <html lang> {p.html_lang(anon)!r}")
                p.shot(anon, f"console-landing{suffix}")
                axe_and_width(r, anon, width, f"landing {tag}")
            with r.step(f"axe + screenshot: dev issuer's login page (auditor), {tag}"):
                anon.get_by_role("link", name=t["sign_in"], exact=True).click()
                anon.wait_for_url(re.compile(r"/dev-issuer/authorize"))
                expect(anon.get_by_label("Mã kiểm toán viên")).to_be_visible()
                p.shot(anon, f"console-login{suffix}")
                axe_and_width(r, anon, width, f"login {tag}")
            page.set_viewport_size({"width": width, "height": 900})
            if width == WIDTHS[0]:
                with r.step(f"switch the console to {lang} (one click, then remembered)"):
                    p.goto(page, "/audit-console")
                    if p.html_lang(page) != lang:
                        other = T["vi" if lang == "en" else "en"]["other_lang"]
                        submit(page, page.get_by_role("link", name=other, exact=True))
                    check(p.html_lang(page) == lang, f"<html lang> {p.html_lang(page)!r}")
                    check(p.signed_in(page), f"the language switch signed out: {page.url}")
            for name in PAGES:
                with r.step(f"axe + screenshot: {name}, {tag}"):
                    open_page(p, page, name, lang, rel)
                    check(p.html_lang(page) == lang,
                          f"{page.url}: <html lang> {p.html_lang(page)!r}, expected {lang}")
                    p.shot(page, f"console-{name}{suffix}")
                    axe_and_width(r, page, width, f"{name} {tag}")
    p.goto(page, "/audit-console?lang=vi")
    anon.context.close()


def open_page(p: Console, page, name: str, lang: str, rel: int):
    t = T[lang]
    if name == "home":
        p.goto(page, "/audit-console")
        expect(page.locator("#break-glass article")).to_have_count(1)
        expect(page.locator("#complaints article")).to_have_count(1)
    elif name == "results":
        p.goto(page, "/audit-console")
        res = p.search_citizen(page, p.cid, lang)
        check(res.status == 200, f"search: {res.status}")
        expect(page.locator(f'#entries a[href="/audit-console/entries/{rel}"]')).to_have_count(1)
    elif name == "entry":
        res = p.goto(page, f"/audit-console/entries/{rel}")
        check(f'aria-live="polite">{t["checking"]}</strong>' in res.text(),
              "the entry page is not served with #proof-status reading " + t["checking"])
        expect(page.locator("#proof-status")).to_have_text(t["verified"], timeout=20_000)
    elif name == "checkpoints":
        res = p.goto(page, f"/audit-console/checkpoints?from={rel}")
        check(f'aria-live="polite">{t["checking"]}</strong>' in res.text(),
              "the checkpoints page is not served with #consistency-status reading "
              + t["checking"])
        expect(page.locator("#consistency-status")).to_have_text(t["verified"], timeout=20_000)
    elif name == "breach":
        p.goto(page, f"/audit-console/reports/breach?agency={HOSPITAL}")
        expect(page.locator("#affected-citizens")).to_have_text("1")
    elif name == "ledger":
        p.goto(page, "/audit-console/reports/reuse")
        expect(page.locator("main tbody tr").first).to_be_visible()
    elif name == "inventory":
        p.goto(page, "/audit-console/reports/inventory")
        expect(page.locator("main tbody tr").first).to_be_visible()


def axe_and_width(r: Runner, page, width: int, label: str):
    """axe-core, then the page's width: both run, and the step fails on either."""
    problems = []
    for test in (lambda: axe_check(r, page, label), lambda: page_fits(page, width)):
        try:
            test()
        except TestFailure as e:
            problems.append(str(e))
    check(not problems, "; ".join(problems))


def page_fits(page, width: int):
    """No horizontal scrolling of the whole page (wide tables scroll in their own box)."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    check(wide <= width, f"{page.url} at {width} px: the page is {wide} px wide")


def logout(p: Console, page):
    with p.r.step("sign out ends the session on the server"):
        p.goto(page, "/audit-console")
        old = page.context.cookies()
        submit(page, page.get_by_role("button", name=T["vi"]["sign_out"], exact=True))
        check(not p.signed_in(page), f"still signed in after Đăng xuất at {page.url}")
        expect(page.get_by_role("link", name=T["vi"]["sign_in"], exact=True)).to_be_visible()
        other = p.new_page()
        other.context.add_cookies(old)
        p.goto(other, "/audit-console")
        check(not p.signed_in(other), "the old session cookie still opens the console")
        res = other.goto(p.base + "/audit-console/reports/inventory")
        check("/audit-console/reports/inventory" not in other.url,
              f"the old session cookie opens the inventory: {res.status} at {other.url}")
        other.context.close()


if __name__ == "__main__":
    try:
        exit_with(main())
    except TestFailure as e:
        print(f"FAILED: {e}")
        exit_with(1)
