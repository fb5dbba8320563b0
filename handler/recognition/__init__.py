"""Recognition: image bytes -> pixels -> one batched model call -> ranked labels.

Knows nothing of events, HTTP or S3. ``recognizer.Recognizer`` is the one road every image takes;
``sandbox`` decodes each image in a worker process under OS limits, where ``imaging`` and
``formats`` decode and refuse; ``model`` and ``manifest`` load and verify the model directory.
"""
