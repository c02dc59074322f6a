"""Image ↔ translation retrieval and grounding in CLIP space.

Inputs are embeddings (any CLIP; `clip_embeddings` computes them with an open_clip model).
Several texts may describe one image (`text_image[t]` = index of text t's image); the
default is one text per image, aligned by index.

- R@k text→image: the text's image is among the k most similar images.
- R@k image→text: at least one of the image's texts is among the k most similar texts.
  Ranks count gallery items scoring strictly higher than the correct one, and ties are counted
  separately: a hit is the *expected* hit under a uniformly random order of tied items
  (`hits`), so a collapsed embedding (every score equal) scores chance, not 1. Computed in
  query chunks so memory stays O(chunk × gallery).
- Grounding score: CLIP cosine between each text and its own image.
- In-batch R@1: the same retrieval inside random batches of `batch_size` (default 32, as in
  training's acceptance criterion "R@1 ≥ 5× chance in batches of 32"); chance = 1/batch_size.
- `retrieval_report` gives a row for the translations and an *oracle* row for the references.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from models.clip_batches import encode_images, encode_texts

KS = (1, 5, 10)


def _unit(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"expected a [N, D] embedding matrix, got shape {tuple(x.shape)}")
    return F.normalize(x.float(), dim=-1, eps=1e-12)


def _text_image(text_image: torch.Tensor | None, n_images: int, n_texts: int) -> torch.Tensor:
    if text_image is None:
        if n_images != n_texts:
            raise ValueError(f"{n_images} images but {n_texts} texts: pass text_image (the "
                             "image index of every text) when they are not aligned one-to-one")
        return torch.arange(n_texts)
    text_image = torch.as_tensor(text_image, dtype=torch.long)
    if text_image.shape != (n_texts,) or text_image.min() < 0 or text_image.max() >= n_images:
        raise ValueError(f"text_image must be {n_texts} image indices in [0, {n_images})")
    return text_image


def ranks(image_emb: torch.Tensor, text_emb: torch.Tensor, text_image: torch.Tensor | None = None,
          *, chunk: int = 1024) -> dict[str, torch.Tensor]:
    """{"t2i": [T] rank of each text's image, "i2t": [I] rank of each image's best text}
    (0 = retrieved first: the number of competitors scoring strictly higher), and "t2i_ties",
    "i2t_ties": competitors scoring exactly as high. Images without any text get rank −1 and
    are left out of R@k."""
    img, txt = _unit(image_emb), _unit(text_emb)
    owner = _text_image(text_image, len(img), len(txt)).to(txt.device)
    t2i, t2i_ties = torch.empty(len(txt), dtype=torch.long), torch.empty(len(txt), dtype=torch.long)
    for s in range(0, len(txt), chunk):
        sim = txt[s:s + chunk] @ img.T  # [c, I]
        correct = sim.gather(1, owner[s:s + chunk, None])
        t2i[s:s + chunk] = (sim > correct).sum(1).cpu()
        t2i_ties[s:s + chunk] = ((sim == correct).sum(1) - 1).cpu()
    i2t = torch.full((len(img),), -1, dtype=torch.long)
    i2t_ties = torch.zeros(len(img), dtype=torch.long)
    for s in range(0, len(img), chunk):
        sim = img[s:s + chunk] @ txt.T  # [c, T]
        mine = owner[None, :] == torch.arange(s, s + len(sim), device=txt.device)[:, None]
        best = sim.masked_fill(~mine, -float("inf")).amax(1, keepdim=True)
        r = (sim > best).sum(1)
        i2t[s:s + chunk] = torch.where(mine.any(1), r, -1).cpu()
        i2t_ties[s:s + chunk] = ((sim == best) & ~mine).sum(1).cpu()
    return {"t2i": t2i, "i2t": i2t, "t2i_ties": t2i_ties, "i2t_ties": i2t_ties}


def hits(better: torch.Tensor, ties: torch.Tensor, k: int) -> torch.Tensor:
    """Expected hit@k of each query under a uniformly random order of the items tied with the
    correct one: the correct item lands at rank better + U{0..ties}, so P(rank < k) =
    clamp((k − better) / (ties + 1), 0, 1)."""
    return ((k - better).double() / (ties + 1).double()).clamp(0.0, 1.0)


def recall_at_k(image_emb: torch.Tensor, text_emb: torch.Tensor,
                text_image: torch.Tensor | None = None, ks: Sequence[int] = KS) -> dict:
    """{"t2i": {"R@1": ..}, "i2t": {..}, "chance": {"t2i": {..}}} as fractions in [0, 1]."""
    r = ranks(image_emb, text_emb, text_image)
    out = {}
    for d in ("t2i", "i2t"):
        scored = r[d] >= 0
        out[d] = {f"R@{k}": float(hits(r[d][scored], r[f"{d}_ties"][scored], k).mean()) for k in ks}
    out["chance"] = {"t2i": {f"R@{k}": min(1.0, k / len(image_emb)) for k in ks}}
    return out


def grounding_scores(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     text_image: torch.Tensor | None = None) -> torch.Tensor:
    """[T] CLIP cosine between each text and its own image."""
    img, txt = _unit(image_emb), _unit(text_emb)
    owner = _text_image(text_image, len(img), len(txt)).to(txt.device)
    return (txt * img[owner]).sum(-1)


def in_batch_recall_at_1(a: torch.Tensor, b: torch.Tensor, *, batch_size: int = 32,
                         seed: int = 0) -> dict:
    """R@1 of aligned rows a[i] ↔ b[i] inside seeded random batches of `batch_size` (the last
    incomplete batch is dropped unless it is the only one); ties count as expected hits (`hits`).
    {"a2b", "b2a", "chance", "batches", "a2b_hits", "b2a_hits"}: the hits are per query, batch by
    batch (the same queries in the same order for every system scored with the same seed, so two
    systems' hits pair up for a bootstrap)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"in-batch retrieval needs aligned rows: {a.shape[0]} vs {b.shape[0]}")
    n = a.shape[0]
    if n < 2:
        raise ValueError("in-batch retrieval needs at least 2 items")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(a.device)
    size = min(batch_size, n)
    batches = perm[: n - n % size].view(-1, size)
    ua, ub = _unit(a)[batches], _unit(b)[batches]  # [nb, size, D]
    sim = ua @ ub.transpose(1, 2)
    diag = sim.diagonal(dim1=1, dim2=2)[..., None]

    def r1(s: torch.Tensor) -> torch.Tensor:
        return hits((s > diag).sum(2), (s == diag).sum(2) - 1, 1).flatten()

    a2b, b2a = r1(sim), r1(sim.transpose(1, 2))
    return {"a2b": float(a2b.mean()), "b2a": float(b2a.mean()), "chance": 1.0 / size, "batches": len(batches),
            "a2b_hits": a2b.tolist(), "b2a_hits": b2a.tolist()}


def retrieval_report(image_emb: torch.Tensor, hyp_emb: torch.Tensor,
                     ref_emb: torch.Tensor | None = None, text_image: torch.Tensor | None = None,
                     *, ks: Sequence[int] = KS, batch_size: int = 32, seed: int = 0) -> dict:
    """Rows "translation" and (when references are given) "oracle": R@k both ways, mean
    grounding score, in-batch R@1 (image ↔ text, one text per image: the first)."""
    rows = {"translation": hyp_emb, **({"oracle": ref_emb} if ref_emb is not None else {})}
    owner = _text_image(text_image, len(image_emb), len(hyp_emb))
    first = torch.full((len(image_emb),), len(owner)).scatter_reduce(
        0, owner, torch.arange(len(owner)), "amin")  # each image's first text
    has_text = first < len(owner)
    out = {}
    for name, emb in rows.items():
        g = grounding_scores(image_emb, emb, owner)
        out[name] = {**recall_at_k(image_emb, emb, owner, ks), "grounding": float(g.mean()),
                     "grounding_per_sentence": g.tolist(),
                     "in_batch": in_batch_recall_at_1(image_emb[has_text], emb[first[has_text]],
                                                      batch_size=batch_size, seed=seed)}
    return out


def clip_embeddings(model, preprocess, tokenizer, *, images: Sequence = (), texts: Sequence[str] = (),
                    batch_size: int = 64, device: str | torch.device = "cpu"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(image embeddings [I, D], text embeddings [T, D]) from an open_clip model, its
    preprocess transform and tokenizer (`models.clip_batches`). Images are PIL images or file paths."""
    model = model.to(device).eval()
    return (encode_images(model.encode_image, preprocess, images, device=device, batch_size=batch_size).cpu(),
            encode_texts(model.encode_text, tokenizer, texts, device=device, batch_size=batch_size).cpu())
