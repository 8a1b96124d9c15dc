"""The multipart part-size rule: 10 000 parts always reach 5 TiB, memory follows the expected size."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tako_backups.core.format_v2 import archive_size_bound
from tako_backups.storage import s3_multipart
from tako_backups.storage.s3 import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from tako_backups.storage.s3_multipart import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    S3Writer,
    next_part_size,
    part_size_for,
)

MIB, GIB, TIB = 1 << 20, 1 << 30, 1 << 40
BASE = DEFAULT_PART_SIZE


def parts_for(total: int, expected: int | None, base: int = BASE) -> list[int]:
    """The part sizes an upload of ``total`` bytes takes, told to expect ``expected`` (the
    writer's own rule, without the bytes)."""
    size = part_size_for(expected, base)
    bound = expected if expected is not None else size * s3_multipart.PLANNED_PARTS
    parts: list[int] = []
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        parts.append(part)
        sent += part
        size = next_part_size(size, sent, len(parts) + 1, bound)
    return parts


@pytest.mark.parametrize(("size", "part"), [
    (1_000_000, 16 * MIB),          # 1 MB: one PUT, never a part of more than the default
    (64 * GIB, 16 * MIB),           # format 1's ceiling: still today's parts (5 120 of them)
    (5 * TIB, 590 * MIB),           # S3's largest object
])
def test_the_first_part_size_follows_the_expected_size(size: int, part: int) -> None:
    assert part_size_for(size, BASE) == part
    assert part * MAX_PARTS >= size
    assert part_size_for(None, BASE) == BASE


@pytest.mark.parametrize("total", [1_000_000, 64 * GIB, 5 * TIB])
def test_ten_thousand_parts_reach_every_size_up_to_5_tib_with_bounded_memory(total: int) -> None:
    bound = archive_size_bound(total, 1000)  # what a backup passes: above the archive's size
    for expected in (bound, total):
        parts = parts_for(total, expected)
        assert sum(parts) == total and len(parts) <= MAX_PARTS
        assert all(MIN_PART_SIZE <= p <= MAX_PART_SIZE for p in parts[:-1])
        held = max(parts) * (DEFAULT_CONCURRENCY + 1)  # one part filling, the others in flight
        assert held <= max(3 * BASE, 2 * GIB)


@pytest.mark.parametrize(("total", "expected"), [
    (5 * TIB, None),                # no estimate at all
    (5 * TIB, 64 * GIB),            # an estimate far too low (files that grew)
    (5 * TIB, 1_000_000),
    (MAX_OBJECT_SIZE, MAX_OBJECT_SIZE - 1),
])
def test_an_estimate_passed_grows_the_parts_so_5_tib_still_fits(total: int, expected: int | None) -> None:
    parts = parts_for(total, expected)
    assert sum(parts) == total and len(parts) <= MAX_PARTS
    assert all(MIN_PART_SIZE <= p <= MAX_PART_SIZE for p in parts[:-1])
    assert parts == sorted(parts[:-1]) + parts[-1:]  # parts only grow


class FakeRequests:
    """Records the size of each part; every request succeeds."""

    def __init__(self) -> None:
        self.parts: dict[int, int] = {}
        self.lock = threading.Lock()

    def call(self, operation: str, action: str, key: str | None, **params: Any) -> Any:
        if operation == "create_multipart_upload":
            return {"UploadId": "u1"}
        if operation == "upload_part":
            with self.lock:
                self.parts[params["PartNumber"]] = len(params["Body"])
            return {"ETag": f"e{params['PartNumber']}"}
        return {}


def test_the_writer_grows_its_parts_once_the_expected_size_is_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule at a small scale (10 parts, 100 MiB objects): parts of 5 MiB until the 10 MiB
    expected are passed, then parts that let the 8 parts left hold 100 MiB in all."""
    monkeypatch.setattr(s3_multipart, "MAX_PARTS", 10)
    monkeypatch.setattr(s3_multipart, "PLANNED_PARTS", 6)
    monkeypatch.setattr(s3_multipart, "MAX_OBJECT_SIZE", 100 * MIB)
    requests = FakeRequests()
    writer = S3Writer(requests, "k", 5 * MIB, 2, expected_size=10 * MIB)  # type: ignore[arg-type]
    assert writer.part_size == 5 * MIB
    block = bytes(MIB)
    with writer:
        for _ in range(60):
            writer.write(block)
        assert writer.commit() == 60 * MIB
    sizes = [requests.parts[n] // MIB for n in sorted(requests.parts)]
    assert sizes == [5, 5, 12, 12, 12, 12, 2]  # ceil((100 - 10) / 8) = 12 MiB
