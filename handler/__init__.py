"""MobileNetV2 image recognition on AWS Lambda: one road from any event to ImageNet labels."""

from handler import config

# Before any module creates its Logger/Metrics, so every door (Lambda, CLI, tests) uses one name.
config.apply_powertools_defaults()
