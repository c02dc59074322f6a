"""Splices: straight-through Gumbel against the soft path, chunked memory discipline, the linear
composition, and gradients from CLIP features back into the student in every decoding mode."""
import open_clip
import pytest
import torch
import torch.nn.functional as F

import models.splice
from models.decoding import splice_decode
from models.splice import Splice, TemperatureSchedule, gumbel_noise, gumbel_softmax_st, project_tokens
from models.student import build_scratch_student
from models.text_tower import DistributionTextTower
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

B, S, D, V, W = 3, 5, 6, 40, 4


@pytest.fixture
def head():
    torch.manual_seed(0)
    hidden = torch.randn(B, S, D, dtype=torch.float64).float().requires_grad_()
    weight = torch.randn(V, D).requires_grad_()
    bias = torch.randn(V).requires_grad_()
    embedding = torch.randn(V, W).requires_grad_()
    return hidden, weight, bias, embedding


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def test_straight_through_gumbel_is_one_hot_with_the_soft_gradient():
    torch.manual_seed(0)
    logits = torch.randn(4, 9, requires_grad=True)
    noise = gumbel_noise((4, 9))
    y, index = gumbel_softmax_st(logits, 0.5, noise=noise)
    assert torch.equal(y.detach(), F.one_hot((logits.detach() + noise).argmax(-1), 9).float())  # exactly one-hot
    assert torch.equal(index, (logits.detach() + noise).argmax(-1))
    probe = torch.randn(4, 9)
    (got,) = _grads((y * probe).sum(), [logits])
    (expected,) = _grads((((logits + noise) / 0.5).softmax(-1) * probe).sum(), [logits])
    assert torch.allclose(got, expected, atol=1e-6) and got.abs().sum() > 0


def test_gumbel_splice_is_chunked_straight_through(head):
    """Chunked, recomputed splice == unchunked reference with the same noise: forward = E[sampled
    token] exactly, gradient = the soft path's gradient (checked by autograd on the soft path)."""
    hidden, weight, bias, embedding = head
    splice = Splice("gumbel", tau=0.8, chunk_size=2)  # chunks of 2, 2, 1 positions
    torch.manual_seed(7)
    out = splice(hidden, weight, bias, embedding, eot_id=3)
    torch.manual_seed(7)  # the splice draws one noise tensor per chunk, in order
    noise = torch.cat([gumbel_noise((B, c, V)) for c in (2, 2, 1)], 1)

    logits = F.linear(hidden, weight, bias)
    sampled = (logits.detach() + noise).argmax(-1)
    assert torch.equal(out.tokens, sampled)
    assert torch.equal(out.embeddings.detach(), embedding.detach()[sampled])
    assert torch.allclose(out.eot_prob, logits.detach().softmax(-1)[..., 3])

    probe = torch.randn(B, S, W)
    got = _grads((out.embeddings * probe).sum(), [hidden, weight, bias])
    soft = ((logits + noise) / 0.8).softmax(-1)
    expected = _grads(((soft @ embedding.detach()) * probe).sum(), [hidden, weight, bias])
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-5) and g.abs().sum() > 0


def test_soft_splice_matches_reference(head):
    hidden, weight, bias, embedding = head
    out = Splice("soft", tau=2.0, chunk_size=2)(hidden, weight, bias, embedding, eot_id=0)
    expected = (F.linear(hidden, weight, bias) / 2.0).softmax(-1) @ embedding
    assert torch.allclose(out.embeddings, expected, atol=1e-6)
    got = _grads(out.embeddings.sum(), [hidden, embedding])
    ref = _grads(expected.sum(), [hidden, embedding])
    assert all(torch.allclose(g, r, atol=1e-5) for g, r in zip(got, ref))


def test_argmax_splice_is_a_lookup_without_gradient(head):
    hidden, weight, bias, embedding = head
    out = Splice("argmax")(hidden, weight, bias, embedding, eot_id=0)
    tokens = F.linear(hidden, weight, bias).argmax(-1)
    assert torch.equal(out.tokens, tokens) and torch.equal(out.embeddings, embedding.detach()[tokens])
    assert not out.embeddings.requires_grad


def test_suppressed_tokens_are_never_chosen(head):
    hidden, weight, bias, embedding = head
    suppress = torch.zeros(V, dtype=torch.bool)
    suppress[F.linear(hidden, weight, bias).argmax(-1).flatten()] = True
    for kind in ("gumbel", "soft", "argmax"):
        out = Splice(kind)(hidden, weight, bias, embedding, eot_id=0, suppress=suppress)
        assert not suppress[out.tokens].any()


def test_token_splices_never_hold_a_full_vocabulary_tensor(head):
    """Memory discipline, checked structurally: autograd saves no tensor with B·S·V elements."""
    hidden, weight, bias, embedding = head
    largest = []

    def pack(t):
        largest.append(t.numel())
        return t

    for kind in ("gumbel", "soft"):
        largest.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            Splice(kind, chunk_size=1)(hidden, weight, bias, embedding, eot_id=0).embeddings.sum().backward()
        assert max(largest) < B * S * V
    largest.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # the unchunked path does
        gumbel_softmax_st(F.linear(hidden, weight, bias), 1.0)[0].sum().backward()
    assert max(largest) >= B * S * V


@pytest.mark.parametrize("budget", [B * V, 2 * B * V + 1, 3 * B * V])
def test_automatic_chunks_fit_the_budget(head, budget, monkeypatch):
    """With the chunk size left automatic, no activation autograd saves holds more elements than the
    budget (`CHUNK_ELEMENTS`, lowered here so that the 5 positions need 5, 3 or 2 chunks): the
    saved-tensor hooks see every tensor the (non-recomputed, small-vocabulary) path keeps, and the
    inputs (and views of them) are not activations. The result is the unchunked soft distribution
    times the embedding."""
    hidden, weight, bias, embedding = head
    monkeypatch.setattr(models.splice, "CHUNK_ELEMENTS", budget)
    inputs = {x.untyped_storage().data_ptr() for x in head}
    activations = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in inputs:
            activations.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs, tokens, eot_prob = project_tokens(hidden, weight, bias, (embedding,), kind="soft", eot_id=0)
    outs[0].sum().backward()
    assert B * V <= max(activations) <= budget  # a chunk's [B, c, V] distribution is kept, and fits
    logits = F.linear(hidden, weight, bias)
    torch.testing.assert_close(outs[0], logits.softmax(-1) @ embedding)
    assert torch.equal(tokens, logits.argmax(-1)) and eot_prob.shape == (B, S)


def test_temperature_schedule():
    exp = TemperatureSchedule(start=2.0, end=0.5, steps=100)
    assert exp(0) == 2.0 and abs(exp(100) - 0.5) < 1e-12 and exp(1000) == exp(100)
    assert abs(exp(50) - 1.0) < 1e-12  # geometric midpoint
    lin = TemperatureSchedule(start=2.0, end=0.5, steps=100, kind="linear")
    assert lin(50) == 1.25
    assert TemperatureSchedule(start=0.7, kind="constant")(10**6) == 0.7
    with pytest.raises(ValueError, match="schedule"):
        TemperatureSchedule(kind="cosine")


def test_unknown_splice_is_rejected():
    with pytest.raises(ValueError, match="linear"):
        Splice("sparsemax")


@pytest.fixture(scope="module")
def system():
    torch.manual_seed(0)
    clip = open_clip.create_model("groundmt-micro")
    tokenizer = open_clip.get_tokenizer("groundmt-micro")
    student = build_scratch_student(30, "micro")
    source = torch.randint(1, 30, (2, 6))
    labels = tokenizer(["a red circle", "two blue squares on the left"])[:, 1:].contiguous()
    return student, DistributionTextTower(clip), source, labels


def test_linear_splice_starts_as_lm_head_composed_with_clip_embedding(system):
    student, tower, source, labels = system
    embedding = tower.token_embedding.weight
    student.eval()
    with torch.no_grad():
        student.final_logits_bias.normal_()  # exercise the bias term of the composition
        splice = Splice.for_student("linear", student, embedding)
        out = student(input_ids=source, labels=labels, output_hidden_states=True)
        expected = out.logits.double() @ embedding.double()
        got = splice.linear(out.decoder_hidden_states[-1]).double()
        student.final_logits_bias.zero_()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("mode", ["teacher-forced", "free-running", "parallel-bos"])
@pytest.mark.parametrize("kind", ["linear", "gumbel", "soft", "argmax"])
def test_gradient_reaches_the_student_through_clip(system, kind, mode):
    student, tower, source, labels = system
    student.train()
    student.zero_grad(set_to_none=True)
    splice = Splice.for_student(kind, student, tower.token_embedding.weight)
    decoded = splice_decode(student, splice, tower, source, mode=mode, labels=labels, max_length=6,
                     embedding=tower.token_embedding.weight)
    features = tower.encode_embeddings(decoded.embeddings, eot="prob", **decoded.eot_evidence(), normalize=True)
    assert features.shape == (2, 32) and torch.isfinite(features).all()
    (features * torch.randn(2, 32)).sum().backward()
    reached = [p for p in student.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    if kind == "argmax":
        assert not reached  # no gradient crosses an argmax
    else:  # the first encoder layer is the farthest point: CLIP → splice → decoder → cross-attention → encoder
        assert any(p is student.model.encoder.layers[0].fc1.weight for p in reached)
