"""The demo page (``GET /``): one self-contained HTML file, served under a strict CSP.

No CDN, no external request: the page works offline. Its only inline script and style are
allowed by their sha256 in the Content-Security-Policy, so nothing injected could run.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

HTML = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")


def _csp_hashes(tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", HTML, flags=re.DOTALL)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'" for block in blocks
    )


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
