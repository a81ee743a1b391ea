"""Secrets in source specs: find them, hide them, keep them out of messages."""

from __future__ import annotations

import os
import re

MASK = "***"

# option / storage_options keys whose values are secrets (compared lower-case)
SECRET_KEYS = frozenset({
    "password", "passwd", "pwd", "secret", "key", "token", "access_token", "session_token",
    "aws_secret_access_key", "aws_session_token", "aws_access_key_id", "secret_key",
    "client_secret", "api_key", "apikey", "sas_token", "account_key", "credentials",
    "private_key", "refresh_token",
})

# scheme://user:password@host  (the password may be empty; stop at the last @ before the host)
_URL_PW = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
# libpq key=value DSN and URL query parameters: password=... / pwd=...
_KV_PW = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<pw>'[^']*'|[^\s&;]+)",
                    re.IGNORECASE)


def redact_text(text: str, secrets=()) -> str:
    """``text`` with URL passwords, ``password=`` pairs and the given ``secrets`` masked."""
    text = _URL_PW.sub(lambda m: m["head"] + (MASK if m["pw"] else ""), text)
    text = _KV_PW.sub(lambda m: m["head"] + MASK, text)
    for s in secrets:
        if s and len(s) >= 3:  # masking 1-2 chars would garble ordinary text
            text = text.replace(s, MASK)
    return text


def redact_value(key, value):
    """A JSON value with every secret inside it replaced by ``"***"`` (recursively)."""
    if isinstance(key, str) and key.lower() in SECRET_KEYS and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(None, v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def secret_values(options: dict, location: str = "", *, env: bool = True) -> list[str]:
    """Every secret string a spec carries (for scrubbing messages), longest first."""
    out: list[str] = []

    def walk(key, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k, x)
        elif isinstance(v, list):
            for x in v:
                walk(None, x)
        elif isinstance(key, str) and key.lower() in SECRET_KEYS and isinstance(v, str):
            out.append(v)

    walk(None, options)
    m = _URL_PW.search(location or "")
    if m and m["pw"]:
        out.append(m["pw"])
    name = options.get("password_env")
    if env and isinstance(name, str) and os.environ.get(name):
        out.append(os.environ[name])
    return sorted({s for s in out if s}, key=len, reverse=True)
