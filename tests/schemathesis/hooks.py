"""Schemathesis hooks for the vault: a check that no response carries a citizen's value.

VAULT_CITIZENS names the demo citizens file the server loaded (JSONL). Every citizen id and
every field value of 6 or more characters held by at most 3 citizens (so not a shared value
such as a nationality) is a needle, found as a whole token (not inside a hash or a
timestamp). The one citizen the bearer token names (VAULT_SELF) may
see their own values on GET /v1/me/record, and nowhere else. The failure message names the
route, never the value.
"""

import json
import os

import schemathesis

_NEEDLES = None


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        yield str(v)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)


def _fields(row):
    """(field name, value) pairs of a row, the citizen id first."""
    yield "citizen_id", row["citizen_id"]
    for name, v in row["fields"].items():
        for s in _strings(v):
            yield name, s


def _needles():
    global _NEEDLES
    if _NEEDLES is None:
        holders = {}
        me = os.environ.get("VAULT_SELF", "")
        own = set()
        with open(os.environ["VAULT_CITIZENS"], encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                cid = row["citizen_id"]
                for name, s in _fields(row):
                    if len(s) >= 6:
                        holders.setdefault(s, (set(), name))[0].add(cid)
                        if cid == me:
                            own.add(s)
        _NEEDLES = (
            [(s, name) for s, (who, name) in holders.items() if len(who) <= 3],
            own,
        )
    return _NEEDLES


def _occurs(needle, body):
    """`needle` in `body` as a whole token: not inside a longer run of letters and digits (a
    hash, a nonce, a timestamp that starts with a date)."""
    start = body.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = body[start - 1] if start > 0 else " "
        after = body[end] if end < len(body) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = body.find(needle, start + 1)
    return False


@schemathesis.check
def no_citizen_value(ctx, response, case):
    needles, own = _needles()
    body = response.content.decode("utf-8", "replace")
    if case.method.upper() == "GET" and case.path == "/v1/me/record":
        # The citizen's own values, longest first (another's value may be a substring).
        for v in sorted(own, key=len, reverse=True):
            body = body.replace(v, "")
    for n, name in needles:
        if _occurs(n, body):
            raise AssertionError(
                f"{case.method} {case.path}: the response body contains a citizen's "
                f"`{name}` value"
            )
