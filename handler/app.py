"""Lambda entry points: the function is built here, at import, so settings are read and the
model is loaded once per container during Lambda's init phase, never on a request."""

from __future__ import annotations

import warnings

from handler import config
from handler.recognition.sandbox import DecodeSandbox

settings = config.read_settings()
# First: the decode sandbox's zygote boots in its own interpreter while this one imports the rest.
sandbox = DecodeSandbox.for_settings(settings.decoding)

from handler.function import Function  # noqa: E402

# /health and rejected requests legitimately publish no application metric: not worth a warning each.
warnings.filterwarnings("ignore", message="No application metrics to publish")

function = Function.start(settings, sandbox=sandbox)
api_handler = function.api_handler
s3_handler = function.s3_handler
bulk_handler = function.bulk_handler
