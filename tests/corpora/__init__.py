"""Test corpora, built in memory and deterministic: hostile images (``hostile``), misbehaving
decoders (``decode_doubles``), the bad-request corpus (``corpus``) and generated labelled photos
(``synthetic_photos``). The tests and ``bench/`` (run from the checkout) use them; the shipped
packages (``handler``, ``devtools``, ``localaws``...) never import them."""
