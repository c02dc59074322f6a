"""The image as a judge of translations (models.grounded_selection) and the target table
(data_prep.targets): brute-force oracles for reranking and image ranks; nested, hashed
parallel fractions; pseudo targets never replace human ones."""
from __future__ import annotations

import math

import datasets
import pytest
import torch
import torch.nn.functional as F

from data_prep.targets import Target, TargetTable
from models.grounded_selection import image_groups, rerank, select


def brute_force_rerank(logprobs, text, image, beta, scale):
    best = []
    for n in range(logprobs.shape[0]):
        scores = [float(logprobs[n, k]) + beta * scale * float(F.cosine_similarity(text[n, k], image[n], dim=0))
                  for k in range(logprobs.shape[1])]
        best.append(max(range(len(scores)), key=scores.__getitem__))
    return best


def test_rerank_equals_brute_force_and_beta_zero_keeps_the_student_order():
    g = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(50, 5, generator=g)
    text, image = torch.randn(50, 5, 8, generator=g), torch.randn(50, 8, generator=g)
    for beta in (0.0, 0.3, 3.0):
        assert rerank(logprobs, text, image, beta=beta, scale=10.0).tolist() == \
            brute_force_rerank(logprobs, text, image, beta, 10.0)
    assert rerank(logprobs, text, image, beta=0.0, scale=10.0).tolist() == logprobs.argmax(1).tolist()


def test_the_image_decides_between_equally_likely_candidates():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    logprobs = torch.zeros(2, 2)
    assert rerank(logprobs, text, image, beta=1.0, scale=1.0).tolist() == [1, 0]


def test_image_rank_and_probability_equal_brute_force():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(20, 6, generator=g)
    own = torch.randint(0, 20, (30,), generator=g)
    text = images[own].unsqueeze(1) + 0.8 * torch.randn(30, 3, 6, generator=g)
    logprobs = -torch.rand(30, 3, generator=g)
    sel = select(logprobs, text, own, images, beta=1.0, scale=5.0, group=8, seed=3)
    generator = torch.Generator().manual_seed(3)  # the draw image_groups makes: 8 distinct images per caption
    draws = [torch.randperm(20, generator=generator)[:8].tolist() for _ in range(30)]
    for n in range(30):
        chosen = F.normalize(text[n, sel.choice[n]], dim=0)
        others = [i for i in draws[n] if i != int(own[n])][:7]
        assert image_groups(own, 20, 8, seed=3)[n].tolist() == [int(own[n]), *others]
        own_sim = float(chosen @ F.normalize(images[own[n]], dim=0))
        sims = [float(chosen @ F.normalize(images[i], dim=0)) for i in others]
        assert int(sel.image_rank[n]) == sum(s >= own_sim for s in sims)
        expected = math.exp(5 * own_sim) / (math.exp(5 * own_sim) + sum(math.exp(5 * s) for s in sims))
        assert float(sel.image_prob[n]) == pytest.approx(expected, rel=1e-5)
    assert sel.kept().tolist() == (sel.image_rank == 0).tolist()


def test_a_translation_that_cannot_tell_its_image_apart_is_not_kept():
    images = torch.ones(10, 4)  # every image identical: every tie counts against the caption
    sel = select(torch.zeros(3, 1), torch.ones(3, 1, 4), torch.tensor([0, 1, 2]), images, beta=1.0, scale=1.0,
                 group=5, seed=0)
    assert not sel.kept().any()


def _dataset(n_rows: int = 40) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "image_id": [f"img{i}" for i in range(n_rows)],
        "source": [[f"s{i}a", f"s{i}b", ""] for i in range(n_rows)],
        "parallel": [[f"t{i}a", f"t{i}b", ""] for i in range(n_rows)],
    })


def test_parallel_fraction_keeps_a_nested_hashed_subset():
    ds = _dataset()
    rows = list(range(40))
    full = TargetTable.from_dataset(ds, rows)
    assert len(full) == 80 and full.get((3, 1)) == Target("t3b")
    tables = {p: TargetTable.from_dataset(ds, rows, fraction=p, seed=7) for p in (0.0, 0.1, 0.25, 0.5)}
    assert [len(t) for t in tables.values()] == [0, 8, 20, 40]
    assert set(tables[0.1].targets) <= set(tables[0.25].targets) <= set(tables[0.5].targets)
    shuffled = TargetTable.from_dataset(ds, list(reversed(rows)), fraction=0.25, seed=7)
    assert shuffled.targets == tables[0.25].targets  # independent of row order
    assert TargetTable.from_dataset(ds, rows, fraction=0.25, seed=8).targets != tables[0.25].targets


def test_parallel_fraction_beyond_the_data_is_refused():
    ds = _dataset(10).map(lambda r, i: {"parallel": r["parallel"] if i < 2 else ["", "", ""]}, with_indices=True)
    with pytest.raises(ValueError, match="asks for 10 translated training captions, but the dataset has 4 of 20"):
        TargetTable.from_dataset(ds, list(range(10)), fraction=0.5)


def test_pseudo_targets_never_replace_human_ones_and_round_trip(tmp_path):
    table = TargetTable({(0, 0): Target("human a"), (1, 0): Target("old pivot", 0.5, "pivot")})
    pseudo = {(0, 0): Target("self a", 1.0, "self"), (2, 1): Target("self c", 0.7, "self")}
    merged = table.with_pseudo(pseudo)
    assert merged.get((0, 0)) == Target("human a")
    assert merged.get((2, 1)) == Target("self c", 0.7, "self")
    assert (1, 0) not in merged  # pseudo targets of an earlier kind are replaced by the new round's
    assert table.with_pseudo(pseudo, replace=("self",)).get((1, 0)).origin == "pivot"
    merged.save(tmp_path / "t.jsonl")
    assert TargetTable.load(tmp_path / "t.jsonl").targets == merged.targets


def test_lexicon_npmi_equals_brute_force_and_finds_the_colour_words():
    from data_prep.pivot import english_words, induce_lexicon

    colours = [("rojo", "red"), ("azul", "blue"), ("verde", "green")]
    shapes = [("circulo", "circle"), ("cuadrado", "square")]
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(60):
        (cs, ce), (ss, se) = colours[i % 3], shapes[int(torch.randint(0, 2, (1,), generator=g))]
        rows.append({"image_id": str(i), "source": [f"un {ss} {cs}"], "english": [f"a {ce} {se}"],
                     "parallel": [""]})
    ds = datasets.Dataset.from_list(rows)
    lexicon = induce_lexicon(ds, list(range(60)), str.split, min_images=1)
    for s_word, e_word in colours + shapes:
        assert lexicon.best_english(s_word, 1)[0][0] == e_word
    # brute force NPMI of one pair over images
    n = 60
    s_sets = [set(r["source"][0].split()) for r in rows]
    e_sets = [set(english_words(r["english"][0])) for r in rows]
    p_s = sum("rojo" in s for s in s_sets) / n
    p_e = sum("blue" in e for e in e_sets) / n
    p_se = sum("rojo" in s and "blue" in e for s, e in zip(s_sets, e_sets)) / n
    expected = -1.0 if p_se == 0 else math.log(p_se / (p_s * p_e)) / -math.log(p_se)
    got = lexicon.npmi[lexicon.source_vocab["rojo"], lexicon.english_vocab["blue"]]
    assert got == pytest.approx(expected)
    p_se = sum("rojo" in s and "red" in e for s, e in zip(s_sets, e_sets)) / n
    got = lexicon.npmi[lexicon.source_vocab["rojo"], lexicon.english_vocab["red"]]
    assert got == pytest.approx(math.log(p_se / (p_s * p_s)) / -math.log(p_se))


def test_pivot_picks_the_agreeing_caption_and_skips_human_ones():
    from data_prep.pivot import induce_lexicon, pivot_targets

    words = [("rojo", "red"), ("azul", "blue"), ("verde", "green"), ("negro", "black")]
    rows = []
    for i in range(40):
        a, b = words[i % 4], words[(i + 1) % 4]
        rows.append({"image_id": str(i), "source": [f"hay {a[0]}", f"hay {b[0]}"],
                     "english": [f"there is {b[1]}", f"there is {a[1]}"], "parallel": ["", ""]})
    ds = datasets.Dataset.from_list(rows)
    lexicon = induce_lexicon(ds, list(range(40)), str.split, min_images=1)
    pivots = pivot_targets(ds, list(range(40)), lexicon, str.split, skip={(0, 0)}, threshold=0.1, weight=0.5)
    assert (0, 0) not in pivots
    assert pivots[(0, 1)].text == "there is blue" and pivots[(1, 0)].text == "there is blue"
    assert pivots[(5, 1)].origin == "pivot" and 0 < pivots[(5, 1)].weight <= 0.5
    assert not pivot_targets(ds, list(range(40)), lexicon, str.split, skip=set(), threshold=1.01)
