"""Student flavours, the vocabulary bridge, and decoding against transformers' own generate/loss."""
import io
import json
import warnings

import open_clip
import pytest
import sentencepiece as spm
import torch
from transformers import MarianConfig, MarianMTModel, MarianTokenizer

import torch.nn.functional as F

from models.decoding import splice_decode
from models.splice import Splice
from models.student import CLIP_EOT_ID, CLIP_SOT_ID, STUDENT_OPTION, build_scratch_student, load_pretrained_student
from models.target_vocab import BridgedVocab, ClipVocab
from models.text_tower import DistributionTextTower
from models.tiny_configs import marian_preset
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = [
    f"{n} {size} {colour} {shape} {where}"
    for n, size in (("a", "small"), ("one", "big"), ("two", "tiny"), ("three", "large"))
    for colour in ("red", "blue", "green", "yellow")
    for shape, where in (("circle", "on the left"), ("square", "near the top"), ("triangle", "by the corner"))
] + ["a photograph of a kaleidoscopic zigzag", "the zigzag is kaleidoscopic"] * 8
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model = open_clip.create_model("groundmt-micro")
    return DistributionTextTower(model), open_clip.get_tokenizer("groundmt-micro")


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    """A tiny opus-mt-style Marian: own SentencePiece vocabulary, `</s>`=0, `<unk>`=1, pad last,
    shared embeddings, pad as decoder start and as bad word — saved with save_pretrained."""
    out = tmp_path_factory.mktemp("opus-mt-tiny")
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS), model_writer=model_bytes, vocab_size=100, model_type="bpe",
        eos_id=0, unk_id=1, bos_id=-1, pad_id=-1, hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )
    for name in ("source.spm", "target.spm"):
        (out / name).write_bytes(model_bytes.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model_bytes.getvalue())
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    pad = vocab["<pad>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        MarianTokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json")).save_pretrained(out)

    torch.manual_seed(0)
    config = MarianConfig(vocab_size=pad + 1, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
                          forced_eos_token_id=0, scale_embedding=True, init_std=0.2, **marian_preset("micro"))
    model = MarianMTModel(config)
    model.generation_config.bad_words_ids = [[pad]]
    with torch.no_grad():
        model.final_logits_bias[0, 0] = 3.0  # some sequences end early, some run to max length
    model.save_pretrained(out)
    return out


def _source(vocab_size, batch=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab_size - 1, (batch, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # one padded source sentence
    return ids, mask


def _greedy_matches_generate(student, tower, source, mask, embedding):
    student.eval()
    expected = student.generate(input_ids=source, attention_mask=mask, num_beams=1, do_sample=False,
                                max_length=MAX_LENGTH)
    with torch.no_grad():
        got = splice_decode(student, Splice("argmax"), tower, source, mask, mode="free-running", embedding=embedding,
                     max_length=MAX_LENGTH)
    assert torch.equal(got.tokens, expected)
    return got


def test_scratch_student_speaks_clip_bpe():
    student = build_scratch_student(123, "micro", decoder_layers=2)
    config = student.config
    assert (config.vocab_size, config.decoder_vocab_size) == (123, 49408)
    assert not config.share_encoder_decoder_embeddings
    assert student.model.encoder.embed_tokens.weight.shape[0] == 123
    assert (config.decoder_start_token_id, config.eos_token_id, config.pad_token_id) == (CLIP_SOT_ID, CLIP_EOT_ID, 0)
    assert config.decoder_layers == 2 and config.activation_function == "swish"
    assert build_scratch_student(10, "micro", decoder_start_token_id=CLIP_EOT_ID).config.decoder_start_token_id == CLIP_EOT_ID
    with pytest.raises(ValueError, match="decoder_layer"):
        build_scratch_student(10, "micro", decoder_layer=2)


def test_scratch_greedy_free_running_equals_generate(clip):
    tower, tokenizer = clip
    torch.manual_seed(0)
    student = build_scratch_student(50, "micro", init_std=0.2)
    with torch.no_grad():
        student.final_logits_bias[0, CLIP_EOT_ID] = 4.0  # mixed lengths: early ends and forced ends
    source, mask = _source(50, batch=8)
    got = _greedy_matches_generate(student, tower, source, mask, tower.token_embedding.weight)
    assert got.eot_index.min() < MAX_LENGTH - 1 and got.eot_index.max() == MAX_LENGTH - 1  # the test discriminates
    assert torch.equal(got.tokens[torch.arange(8), got.eot_index], torch.full((8,), CLIP_EOT_ID))

    # CLIP-ready: scratch hard tokens are open_clip ids, and encoding them equals encoding the embeddings
    assert torch.equal(got.embeddings, tower.token_embedding.weight.detach()[got.tokens])
    with torch.no_grad():
        features = tower.encode_embeddings(got.embeddings, eot="ids", **got.eot_evidence())
        assert torch.allclose(features, tower.encode_ids(got.tokens), atol=1e-6)
    texts = ClipVocab(tokenizer).decode(got.tokens.tolist())
    for row, text in zip(got.tokens.tolist(), texts):  # open_clip's decode of the ids before EOT, pad (0) left out
        assert text == tokenizer.decode([i for i in row[1:row.index(CLIP_EOT_ID)] if i != 0]).strip()


def test_decoder_start_token_is_configurable_but_clip_still_sees_sot(clip):
    tower, _ = clip
    torch.manual_seed(0)
    student = build_scratch_student(50, "micro", decoder_start_token_id=CLIP_EOT_ID).eval()
    source, mask = _source(50, batch=2)
    got = _greedy_matches_generate(student, tower, source, mask, tower.token_embedding.weight)
    assert (got.tokens[:, 0] == CLIP_EOT_ID).all()
    assert torch.equal(got.embeddings[:, 0], tower.token_embedding.weight.detach()[[CLIP_SOT_ID] * 2])


def test_open_clip_text_roundtrips_through_the_clip_vocabulary(clip):
    _, tokenizer = clip
    text = "two small red circles near a big blue square"
    assert ClipVocab(tokenizer).decode(tokenizer([text]).tolist()) == [text]


def test_teacher_forced_logits_and_loss_equal_transformers(clip):
    tower, tokenizer = clip
    torch.manual_seed(0)
    student = build_scratch_student(50, "micro").eval()
    source, mask = _source(50, batch=3)
    clip_ids = tokenizer(["a red circle", "two blue squares near the top", "one"])
    decoded = splice_decode(student, Splice("soft"), tower, source, mask, mode="teacher-forced", labels=clip_ids[:, 1:],
                     embedding=tower.token_embedding.weight)
    reference = student(input_ids=source, attention_mask=mask, labels=decoded.labels)
    assert torch.allclose(F.linear(decoded.hidden, *decoded.head), reference.logits, atol=1e-5)
    assert torch.allclose(decoded.token_cross_entropy(), reference.loss, atol=1e-5)
    params = [student.lm_head.weight, student.model.encoder.layers[0].fc1.weight]
    ours = torch.autograd.grad(decoded.token_cross_entropy(chunk_size=2), params)
    for got, expected in zip(ours, torch.autograd.grad(reference.loss, params)):
        assert torch.allclose(got, expected, atol=1e-6) and got.abs().sum() > 0
    assert torch.equal(decoded.eot_index, clip_ids.argmax(-1))  # pooled where open_clip pools the reference
    assert torch.equal(decoded.tokens[:, 1:][decoded.labels == -100], torch.zeros_like(decoded.labels)[decoded.labels == -100])


def test_pretrained_student_loads_from_its_directory(marian_dir):
    model, tokenizer = load_pretrained_student(marian_dir)
    reference = MarianMTModel(model.config)
    assert isinstance(tokenizer, MarianTokenizer) and len(tokenizer) == model.config.vocab_size
    saved = MarianMTModel.from_pretrained(marian_dir).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in saved.items())
    assert not all(torch.equal(v, reference.state_dict()[k]) for k, v in saved.items())
    assert model.generation_config.bad_words_ids == [[tokenizer.pad_token_id]]
    assert tokenizer("a red circle")["input_ids"][-1] == tokenizer.eos_token_id


def test_pretrained_greedy_free_running_equals_generate(marian_dir, clip):
    tower, _ = clip
    student, tokenizer = load_pretrained_student(marian_dir)
    bridge = BridgedVocab.from_tokenizers(tokenizer, clip[1], tower.token_embedding.weight,
                                          vocab_size=student.config.decoder_vocab_size)
    source, mask = _source(student.config.vocab_size, batch=8, seed=1)
    got = _greedy_matches_generate(student, tower, source, mask, bridge.weight)
    assert got.eot_index.min() < MAX_LENGTH - 1 and got.eot_index.max() == MAX_LENGTH - 1
    expected = student.generate(input_ids=source, attention_mask=mask, num_beams=1, do_sample=False,
                                max_length=MAX_LENGTH)
    assert bridge.decode(got.tokens.tolist()) == tokenizer.batch_decode(expected, skip_special_tokens=True)
    valid = got.candidates[:, 1:]
    assert torch.equal(got.embeddings[:, 1:][valid], bridge.weight.detach()[got.tokens[:, 1:][valid]])


def test_bridge_is_the_mean_clip_embedding_of_each_pieces_bpe(marian_dir, clip):
    tower, clip_tokenizer = clip
    _, tokenizer = load_pretrained_student(marian_dir)
    embedding = tower.token_embedding.weight.detach()
    bridge = BridgedVocab.from_tokenizers(tokenizer, clip_tokenizer, embedding)
    vocab = tokenizer.get_vocab()

    def manual(word: str) -> torch.Tensor:  # open_clip BPE by hand: its pieces, looked up in its encoder
        ids = [clip_tokenizer.encoder[piece] for piece in clip_tokenizer.bpe(word).split(" ")]
        return embedding[ids].mean(0)

    assert torch.allclose(bridge.weight[vocab["\u2581circle"]], manual("circle"))  # 'circle</w>'
    multi = [p for p in vocab if p[:1] == "\u2581" and p[1:] and len(clip_tokenizer.bpe(p[1:]).split(" ")) > 1]
    assert multi, "the test vocabulary should hold a piece that CLIP splits"
    for piece in multi[:3]:
        assert torch.allclose(bridge.weight[vocab[piece]], manual(piece[1:]), atol=1e-7)
    assert torch.equal(bridge.weight[tokenizer.eos_token_id], embedding[CLIP_EOT_ID])
    assert torch.equal(bridge.weight[tokenizer.pad_token_id], embedding[0])
    for no_clip_tokens in (tokenizer.unk_token_id, vocab["\u2581"]):
        assert torch.allclose(bridge.weight[no_clip_tokens], embedding.mean(0))
    assert bridge.weight.requires_grad


@pytest.mark.parametrize("kind", ["gumbel", "linear"])
def test_gradient_reaches_pretrained_student_and_bridge(marian_dir, clip, kind):
    tower, clip_tokenizer = clip
    student, tokenizer = load_pretrained_student(marian_dir)
    bridge = BridgedVocab.from_tokenizers(tokenizer, clip_tokenizer, tower.token_embedding.weight)
    splice = Splice.for_student(kind, student.train(), bridge.weight)
    source, mask = _source(student.config.vocab_size, batch=3)
    decoded = splice_decode(student, splice, tower, source, mask, mode="free-running", embedding=bridge.weight, max_length=6)
    tower.encode_embeddings(decoded.embeddings, eot="gumbel", **decoded.eot_evidence()).sum().backward()
    assert student.model.encoder.layers[0].fc1.weight.grad.abs().sum() > 0
    if kind == "gumbel":  # the linear splice replaces the bridge by its own map
        assert bridge.weight.grad.abs().sum() > 0


def test_pretrained_decoding_needs_the_bridge(marian_dir, clip):
    tower, _ = clip
    student, _ = load_pretrained_student(marian_dir)
    source, mask = _source(student.config.vocab_size, batch=2)
    with pytest.raises(ValueError, match="target vocabulary"):
        splice_decode(student, Splice("argmax"), tower, source, mask, mode="free-running", embedding=tower.token_embedding.weight,
               max_length=4)


def test_hub_name_fails_fast_naming_the_local_option():
    with pytest.raises(FileNotFoundError, match=STUDENT_OPTION):
        load_pretrained_student("Helsinki-NLP/opus-mt-es-en")


def test_directory_without_a_model_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained_student(tmp_path)
