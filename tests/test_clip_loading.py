"""load_clip: tiny names offline, real weights from a local open_clip checkpoint, hub names fail fast."""
import open_clip
import pytest
import torch
from PIL import Image

from models.clip_loading import CLIP_PRETRAINED_OPTION, load_clip
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(model, tokenizer, preprocess):
    image = preprocess(Image.new("RGB", (40, 30), (200, 30, 90))).unsqueeze(0)
    ids = tokenizer(["a red circle left of a blue square", "two small triangles"])
    with torch.no_grad():
        return model.encode_image(image), model.encode_text(ids)


@pytest.mark.parametrize("wrapped", [True, False], ids=["state_dict-key", "bare-state-dict"])
def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path, wrapped):
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_clip("groundmt-micro")
    assert tokenizer.context_length == 16  # the tiny config's, not the default 77
    path = tmp_path / "open_clip_model.pt"
    state = model.state_dict()
    torch.save({"state_dict": state, "epoch": 3} if wrapped else state, path)

    torch.manual_seed(1)  # a different random init that loading must overwrite
    loaded, preprocess2, tokenizer2 = load_clip("groundmt-micro", pretrained=path)
    fresh, _, _ = load_clip("groundmt-micro")

    for a, b in zip(_features(model, tokenizer, preprocess), _features(loaded, tokenizer2, preprocess2)):
        assert torch.equal(a, b)
    assert not torch.allclose(_features(fresh, tokenizer, preprocess)[1], _features(model, tokenizer, preprocess)[1])


def test_pretrained_tag_fails_fast_offline():
    with pytest.raises(RuntimeError, match=CLIP_PRETRAINED_OPTION):
        load_clip("ViT-B-32", pretrained="openai")


def test_hf_hub_name_fails_fast_offline():
    with pytest.raises(RuntimeError, match=CLIP_PRETRAINED_OPTION):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")


def test_missing_checkpoint_file_names_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match=CLIP_PRETRAINED_OPTION):
        load_clip("groundmt-micro", pretrained=tmp_path / "nope.pt")


def test_unknown_architecture_lists_tiny_configs():
    with pytest.raises(ValueError, match="groundmt-micro"):
        load_clip("no-such-clip")


def test_tiny_names_are_registered_by_load_clip_itself():
    model, _, _ = load_clip("groundmt-tiny")
    assert isinstance(model, open_clip.CLIP)
    assert model.positional_embedding.shape[0] == 32
