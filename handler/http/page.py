"""The demo page (``GET /``): one self-contained HTML file, served under a strict CSP.

No CDN, no external request: the page works offline. Its only inline script and style are
allowed by their sha256 in the Content-Security-Policy, so nothing injected could run.

``render`` says in a meta tag who may send a correction (``FEEDBACK_AUTH``): with ``iam`` the page
cannot sign a request, so its feedback control says a reviewer's signed request is needed; with
``none`` it sends corrections (anonymous). The local dev server adds a local credential to the page
it serves (``localaws.server``); the function never does.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from handler.contract import FEEDBACK_AUTH_MODES

HTML = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")


def _csp_hashes(tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", HTML, flags=re.DOTALL)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'" for block in blocks
    )


FEEDBACK_AUTH_META = '<meta name="feedback-auth" content="iam">'
assert FEEDBACK_AUTH_META in HTML


def render(feedback_auth: str) -> str:
    """The page for a function whose POST /feedback takes ``feedback_auth`` (``iam`` or ``none``)."""
    if feedback_auth not in FEEDBACK_AUTH_MODES:
        raise ValueError(f"feedback_auth must be one of {FEEDBACK_AUTH_MODES}, got {feedback_auth!r}")
    return HTML.replace(FEEDBACK_AUTH_META, f'<meta name="feedback-auth" content="{feedback_auth}">', 1)


SCRIPT_HASHES = _csp_hashes("script")
STYLE_HASHES = _csp_hashes("style")


def content_security_policy(upload_origin: str | None = None) -> str:
    """The page may talk to its own API and, when uploads are on, to the bucket's POST endpoint."""
    connect = "'self'" + (f" {upload_origin}" if upload_origin else "")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {SCRIPT_HASHES}",
            f"style-src {STYLE_HASHES}",
            "img-src 'self' blob: data:",
            f"connect-src {connect}",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def headers(upload_origin: str | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(upload_origin),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }
