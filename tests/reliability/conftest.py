"""Fixtures for the reliability suite: a SeaweedFS bucket, a fault proxy in front of it, stores."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tako_backups.storage.s3 import MIN_PART_SIZE, S3Store
from tests.reliability.checks import (
    FAULTS,
    FIGURES,
    INDEX_CHECKED,
    MODULE_FIGURES,
    RESTORED,
    SLOWDOWNS,
    VERIFIED,
    make_tree,
)
from tests.reliability.faultproxy import FaultProxy
from tests.support.s3_servers import SeaweedFS

PART = MIN_PART_SIZE


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """An empty SeaweedFS bucket for one test."""
    name = seaweedfs.lease_bucket()
    yield name
    with contextlib.suppress(Exception):
        seaweedfs.release_bucket(name)


@pytest.fixture(autouse=True)
def figures(request: pytest.FixtureRequest) -> Iterator[Counter[str]]:
    """This test's figures (``checks.FIGURES``), added to its module's when it ends."""
    FIGURES.clear()
    yield FIGURES
    MODULE_FIGURES[request.node.path.name].update(FIGURES)
    FIGURES.clear()


@pytest.fixture
def proxy(seaweedfs: SeaweedFS, figures: Counter[str]) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's SeaweedFS, with no rules yet. What it fired counts
    in the test's figures: faults (failed requests) and slowdowns (delayed or held ones) apart."""
    running = FaultProxy(seaweedfs.endpoint).start()
    yield running
    running.stop()
    figures[FAULTS] += running.faults_injected
    figures[SLOWDOWNS] += running.slowdowns


@pytest.fixture
def s3(seaweedfs: SeaweedFS) -> Any:
    """A plain boto3 client straight to SeaweedFS (not through the proxy), to check results."""
    return seaweedfs.client()


@pytest.fixture
def proxied_store(seaweedfs: SeaweedFS, proxy: FaultProxy, bucket: str) -> Callable[..., Any]:
    """``proxied_store(**kw)``: an S3Store on ``bucket`` through the proxy; 5 MiB parts, 2 in flight."""

    def make(**kw: Any) -> S3Store:
        kw.setdefault("part_size", PART)
        kw.setdefault("max_concurrency", 2)
        return S3Store(bucket, proxy.endpoint, "us-east-1", seaweedfs.access_key, seaweedfs.secret_key,
                       force_path_style=True, **kw)

    return make


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root of about 12 MiB (three 5 MiB parts once encrypted) plus two SQLite databases."""
    return make_tree(tmp_path_factory.mktemp("big") / "data", 2 * PART + 1_500_000)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root small enough for one PUT."""
    return make_tree(tmp_path_factory.mktemp("small") / "data", 50_000, rows=20)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per module: what its tests did (docs/RELIABILITY.md quotes these figures). "data
    lost" is the restores whose checks did not pass: restored minus verified."""
    order = [FAULTS, SLOWDOWNS, "kill -9 crashes", INDEX_CHECKED, RESTORED, VERIFIED]
    for module, counts in sorted(MODULE_FIGURES.items()):
        figures = [f"{what}: {counts[what]}" for what in order + sorted(set(counts) - set(order))
                   if counts[what]]
        if counts[RESTORED]:
            figures.append(f"data lost: {counts[RESTORED] - counts[VERIFIED]}")
        if figures:
            terminalreporter.write_line(f"reliability figures, {module}: {', '.join(figures)}")
