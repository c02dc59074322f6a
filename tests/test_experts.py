"""Frozen text experts: MiniLM sentence embeddings equal sentence-transformers' own; any local
encoder directory works; an AlignedExpert's centred Procrustes map lands in the CLIP text space."""
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from models.clip_loading import load_clip
from models.experts import AlignedExpert, TextExpert, minilm_path
from models.procrustes import ProcrustesMap
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = ["a red circle", "two blue squares and a green star", "there is a large yellow triangle",
            "a picture of three black crosses", "a small purple star is left of a red square",
            "two green circles", "a blue cross above a yellow circle", "there are four red stars"]


@pytest.fixture(scope="module")
def minilm():
    return TextExpert()


def test_minilm_embeddings_equal_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    oracle = SentenceTransformer(str(minilm_path()), device="cpu").encode(CAPTIONS, convert_to_tensor=True)
    ours = minilm.encode(CAPTIONS, batch_size=3)
    assert ours.shape == (len(CAPTIONS), 384) and minilm.dim == 384
    assert torch.allclose(ours, oracle.float(), atol=1e-5)


def test_frozen_and_stays_in_eval_mode(minilm):
    holder = torch.nn.ModuleDict({"expert": minilm})
    holder.train()
    assert not minilm.training and not minilm.model.training
    assert not any(p.requires_grad for p in minilm.parameters())


def test_any_local_encoder_directory(tmp_path):
    directory = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(directory)
    expert = TextExpert(directory, normalize=False)
    batch = expert.encode(CAPTIONS)
    alone = torch.cat([expert.encode([c]) for c in CAPTIONS])  # no padding: pooling ignores pad positions
    assert batch.shape == (len(CAPTIONS), 16)
    assert torch.allclose(batch, alone, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TextExpert(tmp_path / "missing")


def test_aligned_expert_recovers_a_rotated_target_and_round_trips(minilm, tmp_path):
    x = minilm.encode(CAPTIONS)
    q, _ = torch.linalg.qr(torch.randn(512, 512, generator=torch.Generator().manual_seed(1)))
    target = x @ q[:384] + 0.5  # a 512-d "CLIP space" (ViT-B-32's width): an isometry and an offset
    aligned = AlignedExpert.fit(minilm, CAPTIONS, target)
    assert torch.allclose(aligned.encode(CAPTIONS), target, atol=1e-4)
    path = aligned.save(tmp_path / "expert.pt")
    again = AlignedExpert.load(path)
    assert torch.equal(again.encode(CAPTIONS), aligned.encode(CAPTIONS))


def test_fit_against_clip_text_features_centred_beats_uncentred(minilm):
    torch.manual_seed(0)
    clip, _, tokenizer = load_clip("groundmt-micro")
    with torch.no_grad():
        clip_features = torch.nn.functional.normalize(clip.encode_text(tokenizer(CAPTIONS)), dim=-1)
    centred = AlignedExpert.fit(minilm, CAPTIONS, clip_features)
    uncentred = AlignedExpert.fit(minilm, CAPTIONS, clip_features, center=False)
    assert centred.encode(CAPTIONS).shape == clip_features.shape
    x = minilm.encode(CAPTIONS)
    assert centred.alignment.residual(x, clip_features) < uncentred.alignment.residual(x, clip_features)
    with pytest.raises(ValueError, match="CLIP feature rows"):
        AlignedExpert.fit(minilm, CAPTIONS[:3], clip_features)
    with pytest.raises(ValueError, match="384-d"):
        AlignedExpert(minilm, ProcrustesMap.fit(clip_features, clip_features))
