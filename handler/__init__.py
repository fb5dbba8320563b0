"""MobileNetV2 image recognition on AWS Lambda: one road from any event to labels.

Rooms (docs/architecture.md), each importing only the ones below it:

- ``app`` (the entry points, built at import) → ``function`` (Powertools around each entry point)
  → ``runtime`` (what one instance is built from);
- the doors: ``http`` (API Gateway events -> answers) and ``records`` (stored objects -> result
  records);
- ``answers``: every answer's id, uncertainty, capture and model-health signals;
- ``recognition`` (bytes -> pixels -> model -> ranked labels) and ``s3`` (the client and what its
  errors mean);
- the vocabulary: ``config`` (settings), ``errors`` (refusals and codes), ``contract`` (names and
  event kinds shared with infra and the tools).

Importing this package, or ``handler.contract``, changes nothing: no environment variable, no
logger, no model.
"""
