"""Zero-shot concept recognition of a CLIP: picture -> concept name, R@1 over every concept.

Each picture is a query; the gallery is one prompt per concept ("a picture of a red apple"); a
picture is recognised when its own concept's prompt scores highest. Ranks and ties come from
`eval.retrieval` (pictures play the texts, prompts the images of its text -> image ranking, so a
concept may have several pictures), so a collapsed model scores chance, not 1. R@1 is reported
over all pictures and over the pictures of `rare_ids` (e.g. the rarest third of the concepts by
frequency), each with a seeded bootstrap interval (`eval.stats`).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch
from PIL import Image

from eval.retrieval import clip_embeddings, hits, ranks
from eval.stats import DEFAULT_SEED, Statistic, bootstrap_ci


def concept_recognition(
    clip: torch.nn.Module,
    preprocess,
    tokenizer,
    pictures: Sequence[tuple[str, Image.Image]],
    prompts: Mapping[str, str],
    rare_ids: Collection[str] = (),
    *,
    batch_size: int = 256,
    bootstrap: int = 1000,
    seed: int = DEFAULT_SEED,
) -> dict:
    """R@1 of `pictures` (`(concept id, picture)`) against the prompts of every concept in `prompts`
    (id -> text). Returns {"concepts", "chance", "all": {"pictures", "score", "low", "high", ...},
    "rare": {...} (only when some picture's concept is in `rare_ids`), "hits": per picture, in order
    (expected hits under ties: for paired comparisons of two models)}; the model's train/eval mode
    is restored afterwards, no gradient is taken."""
    ids = list(prompts)
    column = {c: i for i, c in enumerate(ids)}
    missing = sorted({c for c, _ in pictures if c not in column})
    if missing:
        raise ValueError(f"{len(missing)} pictures' concepts have no prompt (e.g. {missing[:3]})")
    if not pictures:
        raise ValueError("no pictures to recognise")
    was_training = clip.training
    device = next(clip.parameters()).device
    picture_emb, prompt_emb = clip_embeddings(clip, preprocess, tokenizer, images=[im for _, im in pictures],
                                              texts=[prompts[c] for c in ids], batch_size=batch_size, device=device)
    clip.train(was_training)
    owner = torch.tensor([column[c] for c, _ in pictures])
    r = ranks(prompt_emb, picture_emb, owner)  # gallery = prompts, queries = pictures
    hit = hits(r["t2i"], r["t2i_ties"], 1).numpy()
    rare = torch.tensor([c in rare_ids for c, _ in pictures]).numpy()
    out = {"concepts": len(ids), "chance": 1.0 / len(ids), "hits": hit.tolist()}
    for name, mask in (("all", slice(None)), ("rare", rare)):
        if hit[mask].size:
            out[name] = {"pictures": int(hit[mask].size),
                         **bootstrap_ci(Statistic.mean(hit[mask]), n_samples=bootstrap, seed=seed)}
    return out
