"""Token alignments of one hypothesis–reference pair: the content-token cosine matrix of
LiSAScore/BERTScore, the one-to-one (LSA) matching and BERTScore's greedy matching.

Everything comes from `eval.lisascore.LiSAScorer` (`pair_batches` encodes the pair,
`assignment_match` solves the assignment, `greedy_match` gives the library's BERTScore P/R),
so the heatmap shows exactly what the scores used. The greedy matching drawn is each token's
best partner among content tokens: hypothesis → reference (the precision side) and
reference → hypothesis (the recall side); the library also lets [CLS]/[SEP] be partners,
which the P/R printed from `greedy_match` include.
"""
from __future__ import annotations

from eval.lisascore import LiSAScorer, assignment_match, f_score, greedy_match

_SCORERS: dict[tuple, LiSAScorer] = {}


def scorer_settings(scores: dict) -> dict:
    """LiSAScorer settings a scores.json was produced with: model, layer, idf (from its
    BERTScore entry, which shares the encoder, else the LiSAScore signature) and matching."""
    metrics = scores.get("metrics") or {}
    b, ls = metrics.get("bertscore") or {}, metrics.get("lisascore") or {}
    fields = dict(part.split(":", 1) for part in str(ls.get("signature", "")).split("|") if ":" in part)
    return {"model_type": b.get("model_type") or fields.get("model"),
            "num_layers": b.get("num_layers") or (int(fields["layer"]) if "layer" in fields else None),
            "idf": bool(b["idf"]) if "idf" in b else fields.get("idf") == "yes",
            "matching": ls.get("matching", "lsa")}


def get_scorer(model_type: str | None, num_layers: int | None, idf: bool) -> LiSAScorer:
    """One LiSAScorer per encoder setting for the whole report (model loads are the slow part)."""
    key = (model_type, num_layers, idf)
    if key not in _SCORERS:
        _SCORERS[key] = LiSAScorer(model_type, num_layers, idf=idf, batch_size=8)
    return _SCORERS[key]


def content_tokens(scorer: LiSAScorer, sentence: str) -> list[str]:
    """The word pieces LiSAScore assigns: the encoder's tokens without [CLS]/[SEP]."""
    tok = scorer.tokenizer
    ids = [i for i in scorer._token_ids(sentence) if i not in (tok.cls_token_id, tok.sep_token_id)]
    return tok.convert_ids_to_tokens(ids)


def alignment(scorer: LiSAScorer, hypothesis: str, reference: str, matching: str = "lsa") -> dict:
    """{"hyp_tokens", "ref_tokens", "sim" [h][w], "lsa" (ref index per hyp token, -1 =
    unassigned), "greedy_hyp" (best ref per hyp token), "greedy_ref" (best hyp per ref
    token), "scores": {"lsa"|"greedy": {"P","R","F"}}}. With idf weighting, document
    frequencies are over this one reference (the heatmap's P/R may then differ slightly from
    the corpus-weighted scores)."""
    (_, batch), = scorer.pair_batches([hypothesis], [reference])
    method = "exact" if matching in ("lsa", "greedy") else matching
    P, R, row_to_col = assignment_match(batch, method)
    gP, gR = greedy_match(batch)
    h, w = int(batch.content_hyp_len[0]), int(batch.content_ref_len[0])
    sim = batch.content_sim[0, :h, :w].float().cpu()
    hyp_tokens, ref_tokens = content_tokens(scorer, hypothesis), content_tokens(scorer, reference)
    if (len(hyp_tokens), len(ref_tokens)) != (h, w):
        raise RuntimeError(f"token labels {len(hyp_tokens)}x{len(ref_tokens)} do not match the "
                           f"similarity matrix {h}x{w}")
    prf = {name: {"P": float(p[0]), "R": float(r[0]), "F": float(f_score(p, r)[0])}
           for name, p, r in (("lsa", P, R), ("greedy", gP, gR))}
    return {"hyp_tokens": hyp_tokens, "ref_tokens": ref_tokens,
            "sim": [[round(float(v), 4) for v in row] for row in sim],
            "lsa": row_to_col[0, :h].tolist(),
            "greedy_hyp": sim.argmax(1).tolist() if w else [-1] * h,
            "greedy_ref": sim.argmax(0).tolist() if h else [-1] * w,
            "matching": method, "scores": prf}
