"""Native libraries' notices kept out of the output: LiteRT and the TFLite converter print to file
descriptor 2, past Python's logging, and no variable turns them off. Used where the model loads (the
function, the dev tools) and where it is converted (the export, training)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from handler.config import debug_logging


def litert_notice(line: str) -> bool:
    """LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` and its kind."""
    return line.startswith("INFO: ")


@contextlib.contextmanager
def native_notices_hidden(notice: Callable[[str], bool] = litert_notice) -> Iterator[None]:
    """Native libraries print to file descriptor 2 past Python's logging (LiteRT's XNNPACK line at
    every load, the TFLite converter's settings), and no variable turns it off: it would cut a
    progress bar or a table in two. The lines ``notice`` recognizes are dropped; anything else still
    reaches stderr, and ``LOG_LEVEL=DEBUG`` (or ``POWERTOOLS_LOG_LEVEL``) keeps everything."""
    if debug_logging():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:  # a file, not a pipe: native code never blocks on it
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not notice(line)))
