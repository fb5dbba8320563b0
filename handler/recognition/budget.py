"""Grouping work within a byte budget: the one rule for "how much may be held at once".

Used wherever a batch could otherwise hold too much: the bulk worker groups listed objects by size
(decoding needs no such budget: each image is held to its sandbox worker's memory cap).
"""

from __future__ import annotations

from collections.abc import Sequence


def groups_within(costs: Sequence[int], budget: int, max_items: int | None = None) -> list[list[int]]:
    """Indexes of consecutive items whose costs add up to at most ``budget`` (and, with
    ``max_items``, that many items at most), in order.

    An item that alone costs more than the budget gets a group of its own (the caller decides
    whether to refuse it); nothing is reordered or dropped.
    """
    groups: list[list[int]] = []
    used = 0
    for index, cost in enumerate(costs):
        full = max_items is not None and groups and len(groups[-1]) >= max_items
        if not groups or used + cost > budget or full:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += cost
    return groups
