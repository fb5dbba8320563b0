"""HTTP: API Gateway events (REST v1, HTTP v2) -> routes -> JSON answers.

``api`` picks the resolver and maps refusals to answers; ``routes`` are small plain functions;
``payload`` reads the three body styles; ``schemas`` documents the shapes for ``openapi``;
``uploads`` hands out presigned forms; ``page`` is the demo page.
"""
