"""Test-time linear LM head (probe) on constructed decoder states, and generate()-based
translation of a tiny Marian student against transformers' own generate()."""
import math

import pytest
import torch
from transformers import MarianConfig, MarianMTModel

from data_prep.source_tokenizer import train_source_tokenizer
from eval.probe import probe
from models.generation import generate_texts
from models.tiny_configs import marian_preset

V, D, S = 40, 32, 10


def states_and_labels(n, *, informative, seed, pad_id=None):
    """Decoder states [n, S, D] and reference ids [n, S] (last 3 positions -100, some pad).
    Informative states are the target token's (fixed random) embedding plus noise — a student
    whose decoder states encode the reference; otherwise states are independent noise."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V, D, generator=torch.Generator().manual_seed(123))
    labels = torch.randint(1, V, (n, S), generator=g)
    labels[:, -3:] = -100
    if pad_id is not None:
        labels[::4, -4] = pad_id
    noise = 0.3 * torch.randn(n, S, D, generator=g)
    states = table[labels.clamp_min(0)] + noise if informative else torch.randn(n, S, D, generator=g)
    return states, labels


def join_ids(rows, special=()):
    return [" ".join(str(i) for i in row if i not in special) for row in rows]


def test_heldout_reads_an_informative_student_almost_perfectly():
    fit = states_and_labels(256, informative=True, seed=0)
    test = states_and_labels(96, informative=True, seed=1)
    out = probe(*test, vocab_size=V, protocol="heldout", fit_states=fit[0], fit_labels=fit[1],
                epochs=10, lr=3e-2, seed=0)
    assert out["ce"] < 0.05 and out["token_accuracy"] > 0.99
    assert out["tokens"] == 96 * (S - 3)
    assert out["uniform_ce"] == pytest.approx(math.log(V))


def test_heldout_on_random_states_stays_at_chance():
    fit = states_and_labels(256, informative=False, seed=2)
    test = states_and_labels(96, informative=False, seed=3)
    out = probe(*test, vocab_size=V, protocol="heldout", fit_states=fit[0], fit_labels=fit[1],
                epochs=10, lr=3e-2, seed=0)
    assert out["ce"] > 0.9 * math.log(V)  # labels are uniform over V-1 ids: chance is ~log V
    assert out["token_accuracy"] < 3 / V
    assert out["fit_ce"] < out["ce"]  # it can only memorise the fit split


def test_online_protocol_is_prequential():
    states, labels = states_and_labels(128, informative=True, seed=4)
    out = probe(states, labels, vocab_size=V, protocol="online", batch_size=8, lr=3e-2,
                decode=join_ids)
    # the zero-initialised head predicts uniformly on the first batch
    assert out["batch_losses"][0] == pytest.approx(math.log(V), abs=1e-5)
    assert out["min_loss"] == min(out["batch_losses"]) < out["batch_losses"][0]
    assert out["max_loss"] == max(out["batch_losses"])
    assert out["mean_loss"] == pytest.approx(sum(out["batch_losses"]) / 16)
    assert out["batch_losses"][-1] < 0.1 * out["batch_losses"][0]
    # changing batch 3's labels cannot change predictions of batches 0..3 (predicted before
    # the head learns from them); the head that scores later batches did learn from them
    changed = labels.clone()
    changed[24:32, :5] = (changed[24:32, :5] % (V - 1)) + 1
    again = probe(states, changed, vocab_size=V, protocol="online", batch_size=8, lr=3e-2,
                  decode=join_ids)
    assert again["predictions"][:32] == out["predictions"][:32]
    assert again["batch_losses"][:3] == out["batch_losses"][:3]
    assert all(a != b for a, b in zip(again["batch_losses"][4:], out["batch_losses"][4:]))


def test_ignored_positions_and_special_tokens_in_predictions():
    pad = 0
    states, labels = states_and_labels(32, informative=True, seed=5, pad_id=pad)
    out = probe(states, labels, vocab_size=V, protocol="online", batch_size=8, pad_id=pad,
                decode=lambda rows: join_ids(rows, special={0}))
    valid = (labels >= 0) & (labels != pad)
    assert out["tokens"] == int(valid.sum())
    # first batch: the uniform head's argmax is id 0, a special id: stripped to empty strings
    assert out["predictions"][:8] == [""] * 8
    kept = probe(states, labels, vocab_size=V, protocol="online", batch_size=8, pad_id=pad,
                 decode=join_ids)
    assert [len(p.split()) for p in kept["predictions"]] == valid.sum(1).tolist()


def test_probe_rejects_bad_inputs():
    states, labels = states_and_labels(8, informative=True, seed=6)
    with pytest.raises(ValueError, match="needs fit_states"):
        probe(states, labels, vocab_size=V, protocol="heldout")
    with pytest.raises(ValueError, match="do not pass fit data"):
        probe(states, labels, vocab_size=V, protocol="online", fit_states=states, fit_labels=labels)
    with pytest.raises(ValueError, match="vocab_size"):
        probe(states, labels, vocab_size=5)
    with pytest.raises(ValueError, match=r"\[N, S, d\]"):
        probe(states[0], labels[0], vocab_size=V, protocol="online")
    with pytest.raises(ValueError, match="unknown protocol"):
        probe(states, labels, vocab_size=V, protocol="test-time")


SOURCES = ["una casa roja junto al mar", "un perro azul", "dos gatos verdes en la mesa",
           "el sol amarillo", "una mesa grande", "un coche rojo en la calle", "tres perros"]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    tok = train_source_tokenizer(SOURCES * 10, tmp_path_factory.mktemp("spm"), vocab_size=60)
    torch.manual_seed(0)
    config = MarianConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
                          max_position_embeddings=64, **marian_preset("micro"))
    return MarianMTModel(config).eval(), tok


def test_greedy_translation_equals_generate_sentence_by_sentence(student):
    model, tok = student
    ours = generate_texts(model, tok, SOURCES, lambda rows: tok.batch_decode(rows, skip_special_tokens=True),
                     max_new_tokens=8, batch_size=3)
    expected = []
    with torch.no_grad():
        for s in SOURCES:
            ids = model.generate(**tok([s], return_tensors="pt"), max_new_tokens=8, num_beams=1,
                                 do_sample=False)
            expected.append(tok.decode(ids[0], skip_special_tokens=True).strip())
    assert ours == expected
    assert not any("<pad>" in t or "</s>" in t for t in ours)


def test_beam_translation_equals_generate(student):
    model, tok = student
    ours = generate_texts(model, tok, SOURCES, lambda rows: tok.batch_decode(rows, skip_special_tokens=True),
                     num_beams=3, max_new_tokens=8)
    with torch.no_grad():
        ids = model.generate(**tok(SOURCES, return_tensors="pt", padding=True), num_beams=3,
                             max_new_tokens=8, do_sample=False)
    assert ours == [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    assert model.training is False

