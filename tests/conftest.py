"""Shared test setup: offline hub, tiny model configs registered, deterministic torch."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from models.tiny_configs import register_tiny_clip_configs  # noqa: E402

register_tiny_clip_configs()
