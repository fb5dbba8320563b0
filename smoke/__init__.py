"""Smoke tests for a running API: ``make smoke API_URL=https://…/prod/`` (or the local server)."""
