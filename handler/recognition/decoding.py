"""Preprocessing a batch: every header read, the batch held to its decode memory budget, then
decoded (``imaging``), each image's failure kept in its slot.

Memory is budgeted before anything is decoded: each image's peak decode memory is estimated from
its header (``imaging.open_image``). A request whose images together exceed ``MAX_DECODE_BYTES``
is refused whole (413), or, for a worker batch, decoded in waves that each fit (``budget``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from handler.recognition import imaging, memory
from handler.recognition.budget import groups_within
from handler.recognition.errors import Code, PayloadTooLarge, Refusal

# After a request whose decodes held this much, hand freed memory back to the OS (costs ~1 ms).
RELEASE_AFTER_BYTES = 32 * 1024 * 1024


def open_each(
    images: Sequence[bytes | Refusal], bounds: imaging.DecodeLimits
) -> list[imaging.Opened | Refusal]:
    """Read and check each image's header (milliseconds); a refused image keeps its refusal."""
    return [_open(data, bounds) for data in images]


def _open(data: bytes | Refusal, bounds: imaging.DecodeLimits) -> imaging.Opened | Refusal:
    if isinstance(data, Refusal):  # already refused upstream (a bad item of a batch request)
        return data
    try:
        return imaging.open_image(data, bounds)
    except Refusal as error:
        return error


def _decode(item: imaging.Opened | Refusal) -> np.ndarray | Refusal:
    if isinstance(item, Refusal):
        return item
    try:
        return imaging.scale(imaging.decode(item))
    except Refusal as error:
        return error


def _over_budget(cost: int, budget: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The images decode to about {cost // 2**20} MB together; the limit is {budget // 2**20} MB "
        "per request: send fewer or smaller images.",
        Code.REQUEST_TOO_MANY_PIXELS,
    )


def waves(opened: list[imaging.Opened | Refusal], budget: int) -> list[list[int]]:
    """Indexes of the images to decode together, in order, each group within ``budget`` bytes."""
    return groups_within([item.cost if isinstance(item, imaging.Opened) else 0 for item in opened], budget)


def decode_within_budget(
    opened: list[imaging.Opened | Refusal],
    budget: int,
    queue_over_budget: bool,
    pool: ThreadPoolExecutor | None = None,
) -> list[np.ndarray | Refusal]:
    """Decode within the memory budget: refuse the request over it, or decode it in waves."""
    total = sum(item.cost for item in opened if isinstance(item, imaging.Opened))
    if total > budget and not queue_over_budget:
        for item in opened:
            if isinstance(item, imaging.Opened):
                item.image.close()
        raise _over_budget(total, budget)
    for index, item in enumerate(opened):  # an image over the budget alone fails alone
        if isinstance(item, imaging.Opened) and item.cost > budget:
            item.image.close()
            opened[index] = _over_budget(item.cost, budget)
    decoded: list[np.ndarray | Refusal] = [None] * len(opened)  # type: ignore[list-item]
    for group in waves(opened, budget):
        items = [opened[index] for index in group]
        results = list(pool.map(_decode, items)) if pool and len(items) > 1 else [_decode(i) for i in items]
        for index, result in zip(group, results, strict=True):
            decoded[index] = result
    if total > RELEASE_AFTER_BYTES:
        memory.release()
    return decoded
