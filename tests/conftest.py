"""Shared fixtures: repo paths, the shared data folder, tiny-model configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
# tests/reference/ (reference scorers the tests compare against) imports as `reference.*`.
sys.path.insert(0, str(REPO / "tests"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def require_shared(path: Path) -> Path:
    """``path`` (inside ../shared/data) or a test FAILURE: data tests never skip silently in CI."""
    if not Path(path).exists():
        pytest.fail(
            f"shared data {path} is absent: mount ../shared/data (data tests fail, they do not skip)", pytrace=False
        )
    return Path(path)


def pytest_runtest_setup(item):
    # @pytest.mark.shared_data(path): the test reads that path; missing -> fail, not skip.
    for m in item.iter_markers("shared_data"):
        require_shared(Path(m.args[0]) if m.args else SHARED_DATA)


@pytest.fixture
def shared_data() -> Path:
    return require_shared(SHARED_DATA)


@pytest.fixture
def tiny_cfg(tmp_path):
    """A composed tiny demo config writing into tmp_path (small dataset, small budgets)."""
    from pipeline.config import compose

    def make(*overrides: str):
        return compose(
            [
                "experiment=demo_tiny",
                f"run_dir={tmp_path / 'run'}",
                "dataset.size=6",
                "generate.thought_budget=24",
                "generate.answer_budget=8",
                "transfer.answer_budget=8",
                "progress=false",
                *overrides,
            ]
        )

    return make


# Tests that reproduce the study's numbers need its released data: they fail without it.
@pytest.fixture
def study_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder {SHARED_DATA} is absent; these tests reproduce the study's numbers from it")
    return SHARED_DATA
