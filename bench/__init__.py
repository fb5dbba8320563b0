"""``make bench``: performance measured side by side with the tutorial's app (see run.py)."""
