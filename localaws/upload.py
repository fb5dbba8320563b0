"""``python -m handler upload PHOTO``: the large-photo flow against a deployed or local API.

Asks ``POST /uploads`` for a presigned form, posts the photo straight to S3, then polls the
result until it is ready, showing progress. Standard library only.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from localaws.events import multipart_body


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def upload(
    photo: Path, api: str, timeout_s: float, out: TextIO, progress: TextIO = sys.stderr
) -> dict[str, Any]:
    """Run the whole flow; return the result record (predictions or an error record)."""
    api = api if api.endswith("/") else api + "/"
    content_type = mimetypes.guess_type(photo.name)[0] or "image/jpeg"
    status, body = _request(
        f"{api}uploads",
        json.dumps({"content_type": content_type}).encode(),
        {"Content-Type": "application/json"},
    )
    if status != 201:
        raise SystemExit(f"POST {api}uploads answered {status}: {body.decode(errors='replace')}")
    form = json.loads(body)
    fields = [(name, None, value.encode(), None) for name, value in form["upload"]["fields"].items()]
    data, form_type = multipart_body([*fields, ("file", photo.name, photo.read_bytes(), content_type)])
    status, body = _request(form["upload"]["url"], data, {"Content-Type": form_type})
    if status not in (200, 201, 204):
        raise SystemExit(f"S3 refused the upload ({status}): {body.decode(errors='replace')}")
    progress.write(f"uploaded {photo.name} ({photo.stat().st_size / 1e6:.1f} MB) as {form['id']}; waiting")
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _request(form["result_url"])
        if status == 200:
            progress.write(" done\n")
            return json.loads(body)
        if status != 202 or time.monotonic() > deadline:
            progress.write("\n")
            raise SystemExit(f"GET {form['result_url']} answered {status}: {body.decode(errors='replace')}")
        progress.write(".")
        progress.flush()
        time.sleep(0.5)
