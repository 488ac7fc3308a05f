"""The one secrets scrubber: what removes keys from every URL and error text before it reaches the terminal, a
log or a record (a manifest's `reason`, `error.txt`, a notebook's error line, the CLI's error line).

Secrets reach such text four ways, and each has its rule here:

- a URL's user-info (`http://user:SECRET@host/`) — dropped;
- a URL's query string (`...?api-key=SECRET`; some gateways take the key there) — dropped;
- a key header echoed in an error body (`Authorization: Bearer SECRET`, `api-key: SECRET`, `x-api-key`, ...) —
  its value replaced by `***`;
- the value of a key variable of the environment (`OPENAI_API_KEY`, ...) anywhere in the text — replaced by
  `***`, whatever the server did to echo it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Environment variables whose values are keys (and variables named like one: *_API_KEY, *_TOKEN, *_SECRET).
KEY_ENV = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_KEY_ENV_NAME = re.compile(r"(API_KEY|_TOKEN|_SECRET|_PASSWORD)$")
# Header or parameter names that carry a key, as a server may echo them: `name: value`, `name=value`,
# `'name': 'value'` or `"name": "value"`.
KEY_NAMES = ("authorization", "proxy-authorization", "api-key", "api_key", "apikey", "x-api-key", "x-goog-api-key",
             "ocp-apim-subscription-key", "access_token", "client_secret", "password")
_NAMES = "|".join(re.escape(n) for n in KEY_NAMES)
_KEY_FIELD = re.compile(
    rf"""(?P<name>["']?\b(?:{_NAMES})\b["']?)(?P<sep>\s*[:=]\s*)(?P<q>["']?)(?:bearer\s+|basic\s+)?[^\s"',;&}}]+""",
    re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+""")
_MIN_SECRET = 4  # shorter values (e.g. a placeholder key "none") would mask ordinary words


def public_url(url: str) -> str:
    """The endpoint as it may be printed or recorded: scheme, host, port and path; user-info, query and fragment
    dropped (some gateways take a key in them)."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        if ":" in host:  # IPv6
            host = f"[{host}]"
        if u.port:
            host = f"{host}:{u.port}"
    except ValueError:  # a malformed URL (e.g. a bad port): keep what cannot hold a secret
        return url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    return urlunsplit((u.scheme, host, u.path, "", ""))


def secret_values() -> list[str]:
    """The values of the key variables set in this process's environment, longest first."""
    names = {n for n in os.environ if _KEY_ENV_NAME.search(n)} | set(KEY_ENV)
    values = {os.environ.get(n, "") for n in names}
    return sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True)


def scrub(text: object) -> str:
    """`text` (an exception, a URL, a log line) with every secret removed: URLs reduced to `public_url`, key
    headers and parameters masked, and the environment's key values masked wherever they occur."""
    out = str(text)
    for value in secret_values():
        out = out.replace(value, MASK)
    out = _URL.sub(lambda m: public_url(m.group(0)), out)
    out = _KEY_FIELD.sub(lambda m: f"{m['name']}{m['sep']}{m['q']}{MASK}", out)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
