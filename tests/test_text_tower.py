"""DistributionTextTower and the EOT finders, against open_clip's own encode_text."""
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import TextTransformer

from models.eot import EOTFinder, eot_index_from_ids, eot_index_from_prob, first_true
from models.splice import gumbel_noise
from models.text_tower import DistributionTextTower
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [
    "a red circle left of a big blue square",
    "two small green triangles",
    "",
    "a caption far longer than any context length, truncated by the tokenizer: " + "one more word " * 40,
]


@pytest.fixture(scope="module", params=["groundmt-tiny", "ViT-B-32"])
def clip_and_ids(request):
    """Random-weight towers (no pretrained weights): the tiny config and a default-size ViT-B-32."""
    torch.manual_seed(0)
    model = open_clip.create_model(request.param).eval()
    return model, open_clip.get_tokenizer(request.param)(SENTENCES)


@pytest.mark.parametrize("eot", ["ids", "prob"])
def test_one_hot_distribution_equals_open_clip(clip_and_ids, eot):
    model, ids = clip_and_ids
    tower = DistributionTextTower(model)
    with torch.no_grad():
        expected = model.encode_text(ids)
        got = tower.encode_distribution(F.one_hot(ids, tower.vocab_size).float(), eot=eot, eot_index=ids.argmax(-1))
        assert (got - expected).abs().max() < 1e-5
        assert torch.allclose(tower.encode_ids(ids, normalize=True), model.encode_text(ids, normalize=True), atol=1e-5)


def test_one_hot_gradient_reaches_the_distribution(clip_and_ids):
    model, ids = clip_and_ids
    tower = DistributionTextTower(model)
    p = F.one_hot(ids[:2], tower.vocab_size).float().requires_grad_()
    tower.encode_distribution(p, eot="prob").sum().backward()
    assert p.grad.abs().sum() > 0


def test_shorter_sequences_pool_like_full_context(clip_and_ids):
    """Causal attention: trailing padding never changes the EOT state, so S < context is exact."""
    model, ids = clip_and_ids
    tower = DistributionTextTower(model)
    short = ids[:3, :12]  # the first three sentences end before position 12
    with torch.no_grad():
        assert torch.allclose(tower.encode_ids(short), model.encode_text(ids[:3]), atol=1e-5)


def test_ids_and_prob_finders_pick_open_clips_positions(clip_and_ids):
    _, ids = clip_and_ids
    one_hot = F.one_hot(ids, 49408).float()
    expected = ids.argmax(-1)
    assert torch.equal(EOTFinder("ids").select(eot_index=eot_index_from_ids(ids)), expected)
    assert torch.equal(EOTFinder("prob").select(eot_prob=one_hot[..., 49407]), expected)
    assert expected[-1] == ids.shape[1] - 1  # the truncated sentence ends at the last position


def test_prob_finder_first_above_threshold_else_highest():
    prob = torch.tensor([[0.0, 0.2, 0.6, 0.9, 0.1], [0.0, 0.3, 0.1, 0.45, 0.2], [0.0, 0.7, 0.2, 0.9, 0.0]])
    assert eot_index_from_prob(prob).tolist() == [2, 3, 1]
    only_late = torch.tensor([[False, False, True, True, True]] * 3)
    assert eot_index_from_prob(prob, candidates=only_late).tolist() == [2, 3, 3]


def test_first_true_falls_back_to_last_position():
    mask = torch.tensor([[False, True, True], [False, False, False]])
    assert first_true(mask).tolist() == [1, 2]


def test_argmax_finder_scores_input_embeddings_not_final_states():
    """The chosen position is where the *input* embedding aligns with e_eot, whatever the hidden states."""
    torch.manual_seed(0)
    e_eot = torch.randn(8)
    x = torch.randn(2, 5, 8) * 0.1
    x[0, 3], x[1, 1] = e_eot, e_eot
    hidden = torch.randn(2, 5, 8)
    hidden[:, :, :] += 10 * e_eot  # final states that all align with e_eot must not matter
    pooled = EOTFinder("argmax").pool(hidden, embeddings=x, eot_embedding=e_eot)
    assert torch.equal(pooled, torch.stack([hidden[0, 3], hidden[1, 1]]))


def test_gumbel_finder_forward_is_the_hard_choice_and_scores_get_gradient():
    torch.manual_seed(0)
    e_eot = torch.randn(8)
    x = torch.randn(3, 6, 8, requires_grad=True)
    hidden = torch.randn(3, 6, 8, requires_grad=True)
    finder = EOTFinder("gumbel", tau=0.7)

    torch.manual_seed(5)
    pooled = finder.pool(hidden, embeddings=x, eot_embedding=e_eot)
    torch.manual_seed(5)
    choice = ((x.detach() @ e_eot + gumbel_noise((3, 6))) / 0.7).argmax(-1)
    assert torch.equal(pooled, hidden.detach()[torch.arange(3), choice])  # exact, not approximately

    pooled.pow(2).sum().backward()
    assert x.grad.abs().sum() > 0  # the position choice is trained through the scores x · e_eot
    assert hidden.grad[torch.arange(3), choice].abs().sum() > 0


def test_gumbel_finder_weights_are_one_hot_and_pass_gradient_to_scores():
    torch.manual_seed(1)
    scores_in = torch.randn(4, 7, 8, requires_grad=True)
    e_eot = torch.ones(8)
    weights = EOTFinder("gumbel").select(embeddings=scores_in, eot_embedding=e_eot)
    assert set(weights.detach().unique().tolist()) <= {0.0, 1.0} and torch.equal(weights.detach().sum(-1), torch.ones(4))
    (weights * torch.arange(7.0)).sum().backward()
    assert scores_in.grad.abs().sum() > 0


def test_finders_need_their_evidence():
    with pytest.raises(ValueError, match="eot_index"):
        EOTFinder("ids").select(eot_prob=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unknown EOT finder"):
        EOTFinder("gumble")


def test_custom_text_clip_matches_open_clip():
    torch.manual_seed(0)
    model = open_clip.create_model("groundmt-micro", force_custom_text=True).eval()
    ids = open_clip.get_tokenizer("groundmt-micro")(SENTENCES[:2])
    tower = DistributionTextTower(model)
    with torch.no_grad():
        got = tower.encode_distribution(F.one_hot(ids, 49408).float(), eot="prob")
        assert torch.allclose(got, model.encode_text(ids), atol=1e-5)
    assert not list(tower.parameters()) and tower.token_embedding is model.text.token_embedding  # read, not copied


def test_unsupported_towers_fail_clearly():
    with pytest.raises(NotImplementedError, match="pool_type 'last'"):
        DistributionTextTower(TextTransformer(context_length=8, vocab_size=50, width=16, heads=2, layers=1,
                                              pool_type="last"))
    with pytest.raises(NotImplementedError, match="class token"):
        DistributionTextTower(TextTransformer(context_length=8, vocab_size=50, width=16, heads=2, layers=1,
                                              embed_cls=True))
    with pytest.raises(TypeError, match="open_clip"):
        DistributionTextTower(torch.nn.Linear(3, 3))


def test_bad_shapes_are_rejected():
    tower = DistributionTextTower(open_clip.create_model("groundmt-micro"))
    with pytest.raises(ValueError, match="49408"):
        tower.encode_distribution(torch.zeros(1, 4, 100), eot="prob")
    with pytest.raises(ValueError, match="context length"):
        tower.encode_embeddings(torch.zeros(1, 17, 32), eot="argmax")
