"""Shared test setup: offline hub, tiny model configs registered, deterministic torch; the
session-wide `cache` of built datasets and CLIP teachers for tests that train a tiny run, and one
tiny trained run per session (`run`, with its dataset `data`, `translator` and `test_split`) for
the tests of `translate` and of the CLI probes; a tiny pretrained-style MarianMT directory
(`pretrained_student`) for `--student DIR`."""
import json
import os
from pathlib import Path

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


@pytest.fixture(scope="session")
def run(tmp_path_factory, cache) -> Path:
    """A real run directory from a few steps of the micro system (about 30 s)."""
    # imported here, not at the top: every test file loads conftest, only these fixtures need them
    import torch

    import training
    from tiny_run import tiny

    out = tmp_path_factory.mktemp("translate-run") / "run"
    torch.set_num_threads(1)
    assert training.main(tiny(cache, out, "--steps", "4", "--checkpoint-every", "100", "--no-evaluate")) == 0
    return out


@pytest.fixture(scope="session")
def data(run) -> Path:
    """The dataset directory the session's run was trained on."""
    return Path(json.loads((run / "config.json").read_text())["data_path"])


@pytest.fixture(scope="session")
def translator(run):
    from translate import Translator

    return Translator.from_run(run, device="cpu")


@pytest.fixture(scope="session")
def test_split(data):
    from data_prep.load import load_dataset_dir

    return load_dataset_dir(data)["test"]


@pytest.fixture(scope="session")
def pretrained_student(tmp_path_factory):
    """A tiny MarianMT directory with its own tokenizers, as `--student DIR` reads it."""
    from transformers import MarianConfig, MarianMTModel

    from data_prep.source_tokenizer import train_source_tokenizer

    root = tmp_path_factory.mktemp("marian")
    sentences = ["un círculo rojo", "dos cuadrados azules", "a red circle", "two blue squares"] * 20
    tokenizer = train_source_tokenizer(sentences, root, vocab_size=60)
    MarianMTModel(MarianConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                               decoder_ffn_dim=32, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                               max_length=16)).save_pretrained(root)
    return root
