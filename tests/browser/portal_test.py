#!/usr/bin/env python3
"""Browser test of the citizen portal (/portal) in Debian's Chromium.

Starts one `vault-server dev` in a temporary directory, acts as agencies over mutual TLS, and
drives the portal as a citizen: sign-in at the dev issuer, history, a receipt checked in the
browser, consent, request codes, complaint, correction (and the disputed mark on the next
release), data-subject request, server-side logout; plus script injection through a name
and notes, an open redirect in the login's return address, and forms posted without the
right CSRF token. axe-core runs on every page in Vietnamese and English at 360 and 1280
pixels; full-page screenshots go to $PORTAL_ARTIFACTS (default: a temporary directory).

Run from the workspace after building the binaries: `python3 tests/browser/portal_test.py`.
Exits non-zero on any failure.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
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

XSS_CITIZEN = "079999000001"
XSS_NAME = "<script>alert(1)</script>"
XSS_NOTE = '"><img src=x onerror=alert(4)>'
XSS_REQUEST = "</textarea><script>alert(5)</script>"
XSS_COMPLAINT = "</textarea><svg onload=alert(6)>"
WIDTHS = (360, 1280)
PORTAL = re.compile(r"^https://127\.0\.0\.1:\d+/portal/?(#.*)?$")

# Strings of the catalogs (vault-server/i18n) the test reads or clicks.
T = {
    "vi": {
        "sign_in": "Đăng nhập",
        "sign_out": "Đăng xuất",
        "verified": "Đã xác minh",
        "other_lang": "English",
    },
    "en": {
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "verified": "Verified",
        "other_lang": "Tiếng Việt",
    },
}


def submit(page, button):
    """Clicks a button or link and waits for the page it leads to."""
    with page.expect_navigation():
        button.click()


class Portal:
    """The state the steps share."""

    def __init__(self, runner: Runner, browser, base: str, data: Path, shots: Path):
        self.r = runner
        self.browser = browser
        self.base = base
        self.data = data
        self.shots = shots
        self.ca = data / "dev" / "ca.pem"
        self.watches: list[PageWatch] = []

    # -- browser helpers ------------------------------------------------------------------

    def new_page(self, width=1280):
        ctx = self.browser.new_context(viewport={"width": width, "height": 900}, locale="vi-VN")
        ctx.set_default_timeout(15_000)
        page = ctx.new_page()
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

    def sign_in(self, page, citizen_id: str, path="/portal"):
        """From a signed-out page: the sign-in link, the dev issuer's form, back signed in."""
        self.goto(page, path)
        page.get_by_role("link", name=T["vi"]["sign_in"], exact=True).click()
        page.wait_for_url(re.compile(r"/dev-issuer/authorize"))
        self.dev_login(page, citizen_id)

    def dev_login(self, page, citizen_id: str):
        page.get_by_label("Số định danh cá nhân").fill(citizen_id)
        submit(page, page.get_by_role("button", name="Đăng nhập", exact=True))

    def html_lang(self, page) -> str:
        return page.evaluate("document.documentElement.lang")

    def signed_in(self, page) -> bool:
        return page.locator("#accesses").count() > 0

    def shot(self, page, name: str):
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def main() -> int:
    runner = Runner("portal_test")
    tmp = Path(tempfile.mkdtemp(prefix="portal-test-"))
    shots = artifacts_dir("portal-artifacts-")
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
    ids = {c["citizen_id"] for c in citizens}
    check(XSS_CITIZEN not in ids, f"{XSS_CITIZEN} is a demo citizen already")
    citizen = citizens[1]
    cid = citizen["citizen_id"]
    csgt = Agency(base, data, "csgt-cong-an-tphcm")
    bhxh = Agency(base, data, "bhxh-tphcm")
    writer = Agency(base, data, "cong-an-tphcm-cu-tru")
    s: dict = {}

    with runner.step("agencies act before the citizen signs in", required=True):
        rel = csgt.grant_and_read(
            cid, "driver_licence_renewal", ["full_name", "date_of_birth"], "HS-2026-0101"
        )
        s["release"] = rel["audit"]["index"]
        check("disputed" not in rel, f"first release already disputed: {rel}")
        for key, dossier in (("consent", "BH-2026-0201"), ("csrf_grant", "BH-2026-0202")):
            st, _, g = bhxh.grant(
                cid, "social_insurance_lookup", ["full_name", "annual_income"], dossier
            )
            check(st == 202 and g.get("status") == "pending_consent", f"bhxh grant: {st} {g}")
            s[key] = g
        st, _, w = writer.call(
            "PUT",
            f"/v1/citizens/{XSS_CITIZEN}",
            {
                "fields": {
                    "full_name": XSS_NAME,
                    "residence_ward": "phuong-sai-gon",
                    "date_of_birth": "1990-01-01",
                },
                "source": "test",
            },
        )
        check(st == 200, f"PUT /v1/citizens/{XSS_CITIZEN}: {st} {w}")

    with sync_playwright() as pw:
        browser = launch_chromium(pw, [data / "dev" / "server.pem"])
        p = Portal(runner, browser, base, data, shots)
        try:
            flows(p, s, cid, csgt, bhxh)
        finally:
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


def flows(p: Portal, s: dict, cid: str, csgt: Agency, bhxh: Agency):
    r = p.r
    page = p.new_page()
    rel = s["release"]

    with r.step("sign in at the dev issuer and land on /portal", required=True):
        p.goto(page, "/portal")
        check(p.html_lang(page) == "vi", f"<html lang> is {p.html_lang(page)!r}, expected vi")
        check(not p.signed_in(page), "landing page shows #accesses before sign-in")
        p.sign_in(page, cid)
        check(PORTAL.match(page.url), f"after sign-in the browser is at {page.url}")
        expect(page.locator("#accesses")).to_be_visible()
        for sid in ("notifications", "pending", "accesses", "consents", "verify",
                    "complaints", "corrections", "requests", "record"):
            check(page.locator(f"#{sid}").count() == 1, f"home has no #{sid}")

    with r.step("the session cookie is __Host-, HttpOnly, Secure, SameSite=Lax"):
        cookies = page.context.cookies()
        host = [c for c in cookies if c["name"].startswith("__Host-")]
        check(host, f"no __Host- cookie among {[c['name'] for c in cookies]}")
        for c in host:
            check(c["httpOnly"] and c["secure"] and c["sameSite"] == "Lax" and c["path"] == "/",
                  f"session cookie {c}")

    with r.step("the agency's release is in #accesses with a link to its receipt"):
        row = page.locator(f'#accesses tr:has(a[href="/portal/receipt/{rel}"])')
        expect(row).to_have_count(1)
        for text in ("HS-2026-0101", "Cảnh sát giao thông", "Cấp đổi giấy phép lái xe",
                     "Họ, chữ đệm và tên"):
            expect(row).to_contain_text(text)

    with r.step("the receipt is verified in the browser (#receipt-status: Đã xác minh)"):
        page.locator(f'#accesses a[href="/portal/receipt/{rel}"]').click()
        page.wait_for_url(re.compile(rf"/portal/receipt/{rel}$"))
        expect(page.locator("#receipt-status")).to_have_text("Đã xác minh", timeout=20_000)

    with r.step("approve a pending consent; the agency's next GET returns the token once"):
        g = s["consent"]
        p.goto(page, "/portal")
        card = page.locator("#pending article", has_text=g["verification_code"])
        expect(card).to_have_count(1)
        expect(card).to_contain_text("Bảo hiểm xã hội")
        submit(page, card.get_by_role("button", name="Đồng ý", exact=True))
        expect(page.locator("#pending article", has_text=g["verification_code"])).to_have_count(0)
        st, _, body = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
        check(st == 200 and body.get("status") == "active" and body.get("access_token"),
              f"GET /v1/grants/{g['grant_id']} after approval: {st} {body}")
        st2, _, again = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
        check(st2 == 200 and "access_token" not in again, f"second GET returned the token: {again}")
        st, _, got = bhxh.read(cid, body["access_token"], ["full_name", "annual_income"])
        check(st == 200 and set(got["fields"]) == {"full_name", "annual_income"},
              f"release with the approved token: {st} {got}")

    with r.step("approve with remember_days keeps a standing consent; withdrawing it asks again"):
        fields = ["full_name", "annual_income"]
        st, _, g3 = bhxh.grant(cid, "social_insurance_lookup", fields, "BH-2026-0203")
        check(st == 202, f"bhxh grant: {st} {g3}")
        p.goto(page, "/portal")
        card = page.locator("#pending article", has_text=g3["verification_code"])
        card.locator('input[name="remember_days"]').fill("30")
        submit(page, card.get_by_role("button", name="Đồng ý", exact=True))
        p.goto(page, "/portal")
        consent = page.locator("#consents article", has_text="Bảo hiểm xã hội")
        expect(consent).to_have_count(1)
        st, _, g4 = bhxh.grant(cid, "social_insurance_lookup", fields, "BH-2026-0204")
        check(st == 201 and g4.get("access_token"), f"grant under a standing consent: {st} {g4}")
        st, _, g5 = bhxh.grant(cid, "social_insurance_lookup",
                               ["full_name", "annual_income", "occupation"], "BH-2026-0205")
        check(st == 202, f"a wider grant under a narrower standing consent: {st} {g5}")
        submit(page, consent.get_by_role("button", name="Rút lại sự đồng ý", exact=True))
        p.goto(page, "/portal")
        expect(page.locator("#consents article")).to_have_count(0)
        st, _, body = bhxh.read(cid, g4["access_token"], fields)
        check(st == 403, f"a token resting on a withdrawn consent still reads: {st} {body}")
        st, _, g6 = bhxh.grant(cid, "social_insurance_lookup", fields, "BH-2026-0206")
        check(st == 202, f"grant after the withdrawal: {st} {g6}")
        # leave no pending card from this step on the page
        for g in (g5, g6):
            card = page.locator("#pending article", has_text=g["verification_code"])
            submit(page, card.get_by_role("button", name="Từ chối", exact=True))
            p.goto(page, "/portal")
            st, _, body = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
            check(body.get("status") == "refused", f"refused grant: {body}")

    with r.step("verify a genuine request code and a fake one"):
        code = s["consent"]["verification_code"]
        for value, want, unwanted in ((code, "Mã hợp lệ", "không"),
                                      ("ABCDEFGH", "Mã không hợp lệ", None)):
            p.goto(page, "/portal")
            form = page.locator("#verify form")
            form.locator('input[name="verification_code"]').fill(value)
            submit(page, form.get_by_role("button", name="Kiểm tra", exact=True))
            answer = page.locator("#verify [role=status]")
            expect(answer).to_contain_text(want)
            text = answer.inner_text()
            if unwanted:
                check(unwanted not in text, f"genuine code {value} answered {text!r}")
                expect(page.locator("#verify")).to_contain_text("Bảo hiểm xã hội")

    with r.step("file a complaint about an access from its receipt page"):
        p.goto(page, f"/portal/receipt/{rel}")
        text = "Tôi không nộp hồ sơ HS-2026-0101; xin kiểm tra lần truy cập này."
        page.locator('#complaints textarea[name="text"]').fill(text)
        submit(page, page.get_by_role("button", name="Gửi khiếu nại", exact=True))
        check(page.locator("[role=alert]").count() == 0,
              f"complaint answered an error: {page.locator('[role=alert]').all_inner_texts()}")
        p.goto(page, "/portal")
        card = page.locator("#complaints article", has_text=text)
        expect(card).to_have_count(1)
        expect(card.locator(f'a[href="/portal/receipt/{rel}"]')).to_have_count(1)

    with r.step("file a correction of full_name; the next release answers disputed"):
        p.goto(page, "/portal")
        form = page.locator("#corrections form")
        form.locator('select[name="field"]').select_option("full_name")
        form.locator('input[name="proposed_value"]').fill("Nguyễn Văn Sửa")
        form.locator('textarea[name="note"]').fill("Sai dấu trong họ tên.")
        submit(page, form.get_by_role("button", name="Gửi yêu cầu chỉnh sửa", exact=True))
        expect(page.locator("#corrections article", has_text="Nguyễn Văn Sửa")).to_have_count(1)
        got = csgt.grant_and_read(
            cid, "driver_licence_renewal", ["full_name", "date_of_birth"], "HS-2026-0102"
        )
        check(got.get("disputed") == ["full_name"], f"release after the correction: {got}")
        p.goto(page, "/portal/record")
        name_row = page.locator("#record tr", has_text="Họ, chữ đệm và tên")
        expect(name_row).to_contain_text("đang có yêu cầu chỉnh sửa")
        dob_row = page.locator("#record tr", has_text="Ngày sinh")
        if dob_row.count():
            expect(dob_row.first).not_to_contain_text("đang có yêu cầu chỉnh sửa")

    with r.step("file a data-subject request and see its two deadlines"):
        p.goto(page, "/portal")
        before = page.locator("#requests article").count()
        form = page.locator("#requests form")
        form.locator('select[name="kind"]').select_option("access")
        form.locator('textarea[name="note"]').fill("Xin bản sao dữ liệu của tôi.")
        submit(page, form.get_by_role("button", name="Gửi yêu cầu", exact=True))
        p.goto(page, "/portal")
        cards = page.locator("#requests article")
        expect(cards).to_have_count(before + 1)
        card = cards.first
        for label in ("Hạn xác nhận", "Hạn hoàn thành"):
            dd = card.locator(f"dt:text-is('{label}') + dd")
            expect(dd).to_have_count(1)
            check(re.search(r"\d", dd.inner_text()), f"{label}: {dd.inner_text()!r}")

    csrf_checks(p, page, s, bhxh)
    open_redirect(p, cid)
    session_fixation(p, cid)
    script_injection(p, s, csgt, bhxh)
    pages_axe_screenshots(p, page, rel)
    logout(p, page)


def csrf_checks(p: Portal, page, s: dict, bhxh: Agency):
    r = p.r
    g = s["csrf_grant"]
    with r.step("a form sent with a wrong csrf field changes nothing (approve)"):
        p.goto(page, "/portal")
        card = page.locator("#pending article", has_text=g["verification_code"])
        expect(card).to_have_count(1)
        card.locator('form[action$="/approve"] input[name="csrf"]').evaluate(
            "e => { e.value = 'AAAAwrongAAAA' }"
        )
        submit(page, card.get_by_role("button", name="Đồng ý", exact=True))
        st, _, body = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
        check(st == 200 and body.get("status") == "pending_consent" and "access_token" not in body,
              f"grant after an approve with a wrong csrf: {st} {body}")

    with r.step("form POSTs without the csrf field (or with a wrong one) change nothing"):
        p.goto(page, "/portal")
        counts = lambda: {  # noqa: E731
            k: page.locator(f"#{k} article").count()
            for k in ("complaints", "corrections", "requests", "pending")
        }
        before = counts()
        posts = [
            ("/portal/requests", {"kind": "erasure", "note": "csrf"}),
            ("/portal/corrections", {"field": "full_name", "proposed_value": "CSRF", "note": ""}),
            ("/portal/complaints", {"audit_index": str(s["release"]), "text": "csrf"}),
            (f"/portal/grants/{g['grant_id']}/refuse", {}),
            (f"/portal/grants/{g['grant_id']}/approve", {"remember_days": "30"}),
        ]
        session = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
        statuses = []
        for path, form in posts:
            for csrf in (None, "wrong-token"):
                f = dict(form, form_key=f"k-{len(statuses)}")
                if csrf:
                    f["csrf"] = csrf
                st, _, _ = https(p.base, "POST", path, ca=p.ca, form=f,
                                 headers={"cookie": session, "origin": p.base})
                statuses.append((path, csrf, st))
                check(st >= 400 or st in (302, 303), f"POST {path} csrf={csrf!r}: {st}")
        print(f"   statuses: {statuses}")
        p.goto(page, "/portal")
        after = counts()
        check(before == after, f"cases or pending consents changed: {before} -> {after}")
        st, _, body = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
        check(body.get("status") == "pending_consent", f"grant {g['grant_id']}: {body}")
        st, _, _ = https(p.base, "POST", "/portal/logout", ca=p.ca, form={},
                         headers={"cookie": session, "origin": p.base})
        p.goto(page, "/portal")
        check(p.signed_in(page), f"a logout without csrf ({st}) ended the session")


def open_redirect(p: Portal, cid: str):
    with p.r.step("GET /portal/login?next=<another site> ends on /portal (no open redirect)"):
        page = p.new_page()
        evil = []
        page.context.route(
            lambda url: (urlsplit(url).hostname or "").endswith("evil.example"),
            lambda route: (evil.append(route.request.url), route.abort()),
        )
        for nxt in ("https://evil.example/", "//evil.example/", "/\\evil.example/",
                    "https:evil.example", "/portal/../\\evil.example"):
            page.context.clear_cookies()
            res = page.goto(p.base + "/portal/login?next=" + _q(nxt))
            check(res is not None and "/dev-issuer/authorize" in page.url,
                  f"next={nxt!r}: login went to {page.url}")
            p.dev_login(page, cid)
            u = urlsplit(page.url)
            check(f"{u.scheme}://{u.netloc}" == p.base and u.path in ("/portal", "/portal/"),
                  f"next={nxt!r}: after sign-in the browser is at {page.url}")
        check(not evil, f"the browser was sent to {evil}")
        # A path on the portal is honoured (the check above is not vacuous).
        page.context.clear_cookies()
        p.goto(page, "/portal/login?next=" + _q("/portal/record"))
        p.dev_login(page, cid)
        check(urlsplit(page.url).path == "/portal/record", f"next=/portal/record: at {page.url}")
        page.context.close()


def session_fixation(p: Portal, cid: str):
    with p.r.step("a session cookie set before sign-in is replaced (no session fixation)"):
        page = p.new_page()
        fixed = "F" * 43
        page.context.add_cookies([{"name": "__Host-vault-session", "value": fixed,
                                   "url": p.base + "/", "secure": True, "httpOnly": True,
                                   "sameSite": "Lax"}])
        p.sign_in(page, cid)
        check(p.signed_in(page), f"sign-in with a planted cookie failed: {page.url}")
        values = [c["value"] for c in page.context.cookies() if c["name"].startswith("__Host-")]
        check(values and fixed not in values, f"session cookies after sign-in: {values}")
        other = p.new_page()
        other.context.add_cookies([{"name": "__Host-vault-session", "value": fixed,
                                    "url": p.base + "/", "secure": True}])
        p.goto(other, "/portal")
        check(not p.signed_in(other), "the planted cookie value opens a session")
        other.context.close()
        page.context.close()


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def script_injection(p: Portal, s: dict, csgt: Agency, bhxh: Agency):
    r = p.r
    with r.step("a name, notes and a complaint that look like HTML are shown as text"):
        page = p.new_page(360)
        watch = p.watches[-1]
        csgt.grant_and_read(XSS_CITIZEN, "driver_licence_renewal", ["full_name"], "HS-2026-0666")
        p.sign_in(page, XSS_CITIZEN)
        check(PORTAL.match(page.url), f"sign-in as {XSS_CITIZEN}: at {page.url}")
        p.goto(page, "/portal/record")
        row = page.locator("#record tr", has_text="Họ, chữ đệm và tên")
        expect(row).to_contain_text(XSS_NAME)
        # cases whose texts are markup
        p.goto(page, "/portal")
        form = page.locator("#corrections form")
        form.locator('select[name="field"]').select_option("full_name")
        form.locator('input[name="proposed_value"]').fill(XSS_NAME)
        form.locator('textarea[name="note"]').fill(XSS_NOTE)
        submit(page, form.get_by_role("button", name="Gửi yêu cầu chỉnh sửa", exact=True))
        p.goto(page, "/portal")
        form = page.locator("#requests form")
        form.locator('textarea[name="note"]').fill(XSS_REQUEST)
        submit(page, form.get_by_role("button", name="Gửi yêu cầu", exact=True))
        idx = page.locator('#accesses a[href^="/portal/receipt/"]').first.get_attribute("href")
        p.goto(page, idx)
        page.locator('#complaints textarea[name="text"]').fill(XSS_COMPLAINT)
        submit(page, page.get_by_role("button", name="Gửi khiếu nại", exact=True))
        p.goto(page, "/portal")
        expect(page.locator("#corrections")).to_contain_text(XSS_NOTE)
        expect(page.locator("#corrections")).to_contain_text(XSS_NAME)
        expect(page.locator("#complaints")).to_contain_text(XSS_COMPLAINT)
        for sel in ("img[src=x]", "svg[onload]", "main script"):
            check(page.locator(sel).count() == 0, f"home has an injected {sel}")
        p.goto(page, "/portal/record")
        expect(page.locator("#record")).to_contain_text(XSS_NAME)
        check(page.locator("#record script").count() == 0, "record has a <script> element")
        page.wait_for_timeout(300)
        check(not watch.dialogs, f"dialogs: {watch.dialogs}")

    with r.step("another citizen's receipt and pending consent are out of reach"):
        rel, g = s["release"], s["csrf_grant"]
        res = page.goto(f"{p.base}/portal/receipt/{rel}")
        print(f"   /portal/receipt/{rel} of another citizen answered {res.status}")
        check(res.status in (403, 404), f"/portal/receipt/{rel} of another citizen: {res.status}")
        check("HS-2026-0101" not in page.content(), "another citizen's receipt is shown")
        watch.errors = [e for e in watch.errors if f"/portal/receipt/{rel}" not in e]
        p.goto(page, "/portal")
        csrf = page.locator('#verify input[name="csrf"]').get_attribute("value")
        session = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
        for action in ("approve", "refuse"):
            st, _, _ = https(p.base, "POST", f"/portal/grants/{g['grant_id']}/{action}", ca=p.ca,
                             form={"csrf": csrf, "form_key": f"x-{action}"},
                             headers={"cookie": session, "origin": p.base})
            st2, _, body = bhxh.call("GET", f"/v1/grants/{g['grant_id']}")
            print(f"   {action} of another citizen's grant answered {st}")
            check(body.get("status") == "pending_consent" and "access_token" not in body,
                  f"{action} of another citizen's grant ({st}) changed it: {body}")
    page.context.close()


def pages_axe_screenshots(p: Portal, page, rel: int):
    """axe-core on every page in both languages at both widths (one step each, so that every
    page is checked whatever another shows); full-page screenshots of each."""
    r = p.r
    anon = p.new_page()
    for lang in ("vi", "en"):
        for width in WIDTHS:
            tag = f"{lang}, {width} px"
            suffix = f"-{width}" if lang == "vi" else f"-{lang}-{width}"
            with r.step(f"axe + screenshot: landing, {tag}"):
                anon.set_viewport_size({"width": width, "height": 900})
                p.goto(anon, f"/portal?lang={lang}")
                check(p.html_lang(anon) == lang, f"landing <html lang> {p.html_lang(anon)!r}")
                p.shot(anon, f"portal-landing{suffix}")
                page_fits(anon, width)
                axe_check(r, anon, f"landing {tag}")
            with r.step(f"axe + screenshot: dev issuer's login page, {tag}"):
                anon.get_by_role("link", name=T[lang]["sign_in"], exact=True).click()
                anon.wait_for_url(re.compile(r"/dev-issuer/authorize"))
                expect(anon.get_by_label("Số định danh cá nhân")).to_be_visible()
                p.shot(anon, f"dev-login{suffix}")
                page_fits(anon, width)
                axe_check(r, anon, f"dev login {tag}")
            page.set_viewport_size({"width": width, "height": 900})
            if width == WIDTHS[0]:
                with r.step(f"switch the portal to {lang} (one click, then remembered)"):
                    p.goto(page, "/portal")
                    if p.html_lang(page) != lang:
                        submit(page, page.get_by_role(
                            "link", name=T["vi" if lang == "en" else "en"]["other_lang"],
                            exact=True))
                    check(p.html_lang(page) == lang, f"<html lang> {p.html_lang(page)!r}")
            for name, path in (("home", "/portal"), ("history", "/portal/accesses"),
                               ("receipt", f"/portal/receipt/{rel}"),
                               ("record", "/portal/record")):
                with r.step(f"axe + screenshot: {name} ({path}), {tag}"):
                    p.goto(page, path)
                    check(p.html_lang(page) == lang,
                          f"{path}: <html lang> {p.html_lang(page)!r}, expected {lang}")
                    if name == "receipt":
                        expect(page.locator("#receipt-status")).to_have_text(
                            T[lang]["verified"], timeout=20_000)
                    if name == "history":
                        expect(page.locator("#accesses")).to_be_visible()
                    p.shot(page, f"portal-{name}{suffix}")
                    page_fits(page, width)
                    axe_check(r, page, f"{name} {tag}")
    p.goto(page, "/portal?lang=vi")
    anon.context.close()


def page_fits(page, width: int):
    """No horizontal scrolling of the whole page (wide tables scroll in their own box)."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    check(wide <= width, f"{page.url} at {width} px: the page is {wide} px wide")


def logout(p: Portal, page):
    with p.r.step("sign out ends the session on the server"):
        p.goto(page, "/portal")
        old = page.context.cookies()
        submit(page, page.get_by_role("button", name="Đăng xuất", exact=True))
        check(not p.signed_in(page), f"still signed in after Đăng xuất at {page.url}")
        other = p.new_page()
        other.context.add_cookies(old)
        p.goto(other, "/portal")
        check(not p.signed_in(other), "the old session cookie still opens /portal signed in")
        expect(other.get_by_role("link", name="Đăng nhập", exact=True)).to_be_visible()
        other.context.close()


if __name__ == "__main__":
    try:
        exit_with(main())
    except TestFailure as e:
        print(f"FAILED: {e}")
        exit_with(1)
