"""MobileNetV2 image recognition on AWS Lambda: one road from any event to labels.

Three rooms (docs/architecture.md): ``recognition`` (bytes -> pixels -> model -> ranked labels),
``http`` (API Gateway events -> answers), ``records`` (stored objects -> result records). The
entry points are ``handler.app``'s. Importing this package, or ``handler.contract``, changes
nothing: no environment variable, no logger, no model.
"""
