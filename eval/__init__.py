"""GroundMT evaluation: probe head, sacreBLEU, BERTScore, LiSAScore, retrieval, statistics.

`from eval import score` (never `import eval`: it shadows the builtin). Everything returns
plain dicts. Only `score` is imported eagerly (no torch); the other entry points below load
on first use. Functions named like their module are imported from the module, because the
package attribute of a loaded submodule would shadow them:
`from eval.bertscore import bertscore`, `from eval.lisascore import lisascore`,
`from eval.probe import probe`.
"""
from __future__ import annotations

import importlib

from eval.score import score

_LAZY = {
    "LiSAScorer": "eval.lisascore",
    "corpus_score": "eval.mt_metrics", "sentence_scores": "eval.mt_metrics",
    "translate": "models.generation", "nbest": "models.generation",
    "recall_at_k": "eval.retrieval", "grounding_scores": "eval.retrieval",
    "in_batch_recall_at_1": "eval.retrieval", "retrieval_report": "eval.retrieval",
    "clip_embeddings": "eval.retrieval",
    "bootstrap_ci": "eval.stats", "paired_bootstrap": "eval.stats", "Statistic": "eval.stats",
    "linear_cka": "eval.cka", "LinearCKA": "eval.cka",
    "health_report": "eval.health", "embedding_stats": "eval.health",
    "anchor_stats": "eval.health", "collapse_warnings": "eval.health", "expert_uniqueness": "eval.health",
}

__all__ = ["score", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eval' has no attribute {name!r}")
