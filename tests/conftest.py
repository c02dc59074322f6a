"""Shared test setup: offline hub, tiny model configs registered, deterministic torch; the
session-wide `cache` of built datasets and CLIP teachers for tests that train a tiny run."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from models.tiny_configs import register_tiny_clip_configs  # noqa: E402

register_tiny_clip_configs()


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One cache (built datasets, CLIP teachers) shared by every run of the session."""
    return tmp_path_factory.mktemp("groundmt-cache")
