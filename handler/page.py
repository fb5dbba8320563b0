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


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_csp_hashes('script')}",
        f"style-src {_csp_hashes('style')}",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
