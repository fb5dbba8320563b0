"""The ``imgrec`` CLI's commands, never shipped in the function: serving and invoking locally (on
``localaws``'s stand-ins for AWS), training and evaluating, the ML-ops commands (backfill, dataset
export, compare, check sets), the rollout and backfill demos with their broken builds, and the
``events/`` fixtures generator."""
