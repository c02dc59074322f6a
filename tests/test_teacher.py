"""Stage 0's teacher: the picture table gives exactly what CLIP's preprocessing and tokenizer give,
and the training learns concepts from (picture, caption) pairs — zero-shot recognition of held-out
pictures far above chance — while the same run with the text tower's gradient cut, or with every
caption paired with another picture, stays at chance."""
import datasets
import pytest
import torch
from accelerate import Accelerator
from PIL import Image, ImageDraw

from data_prep import memory
from data_prep.errors import InputError
from data_prep.longtail import build as B
from data_prep.longtail.held_out import concept_prompts, held_out_pictures
from data_prep.sampling import StepSampler
from eval.stats import Statistic, paired_bootstrap
from eval.zero_shot import concept_recognition
from models.clip_loading import load_clip
from training.stage0 import PictureTable, train_teacher

MICRO = "groundmt-micro-rn"  # a ModifiedResNet: learns this in 250 steps, where the micro ViT does not (docs/teacher.md)
# eight pictographs (real code points, so they have CLDR names) drawn as coloured shapes
SHAPES = {"1f34e": ((220, 30, 30), "disc"), "1f42c": ((30, 60, 220), "disc"), "1f680": ((30, 160, 40), "square"),
          "2693": ((200, 30, 200), "square"), "1f4da": ((20, 180, 200), "bar"), "1f308": ((240, 150, 20), "bar"),
          "1f514": ((90, 40, 10), "cross"), "1f511": ((250, 240, 40), "cross")}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    folder = root / "pictures"
    folder.mkdir()
    for cid, (rgb, shape) in SHAPES.items():
        im = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
        draw, fill = ImageDraw.Draw(im), rgb + (255,)
        if shape == "disc":
            draw.ellipse((1, 1, 22, 22), fill=fill)
        for box in {"square": [(3, 3, 20, 20)], "bar": [(0, 8, 23, 15)], "cross": [(9, 0, 14, 23), (0, 9, 23, 14)]}.get(
                shape, []):
            draw.rectangle(box, fill=fill)
        im.save(folder / f"{cid}.png")
    B.build_longtail(root / "pool", lang="es", images=240, seed=0, image_size=32, pictures=folder, english_only=True,
                     single_share=0.8, show_progress=False)
    world = B.World("es", pictures=folder, image_size=32)
    return datasets.load_from_disk(str(root / "pool"))["train"], world


def test_picture_table_equals_preprocess_and_tokenizer(pool):
    train, _ = pool
    _, preprocess, tokenizer = load_clip("groundmt-micro")
    table = PictureTable(train, preprocess, tokenizer)
    rows = [5, 0, 17, 5]
    images, ids = table.batch(rows, seed=3, step=7)
    expected = torch.stack([preprocess(train[r]["image"].convert("RGB")) for r in rows])
    assert torch.allclose(images, expected, atol=1e-6)
    for k, r in enumerate(rows):
        assert any(torch.equal(ids[k], tokenizer([c])[0]) for c in train[r]["english"])
    again = PictureTable(train, preprocess, tokenizer).batch(rows, seed=3, step=7)[1]
    assert torch.equal(ids, again)  # the caption a row gets at a step is a pure function of (seed, step, row)


def test_a_picture_table_that_cannot_fit_is_refused_before_it_is_filled(pool, monkeypatch):
    train, _ = pool
    _, preprocess, tokenizer = load_clip("groundmt-micro")
    need = 3 * 32 * 32 * len(train)  # groundmt-micro reads 32 x 32 pictures
    monkeypatch.setattr(memory, "available_memory", lambda: need - 1)
    with pytest.raises(InputError, match=rf"picture table \({len(train)} teacher pictures at 32x32\)"):
        PictureTable(train, preprocess, tokenizer)
    monkeypatch.setattr(memory, "available_memory", lambda: need)
    PictureTable(train, preprocess, tokenizer)


def teach(train, *, cut_text=False, shuffle_captions=False, steps=250):
    torch.manual_seed(0)
    clip, preprocess, tokenizer = load_clip(MICRO)
    if cut_text:
        for name, p in clip.named_parameters():
            if not name.startswith("visual.") and name != "logit_scale":
                p.requires_grad_(False)
    if shuffle_captions:  # every picture paired with another picture's captions
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1)).tolist()
        train = train.remove_columns("english").add_column("english", [train[i]["english"] for i in order])
    sampler = StepSampler(list(range(len(train))), 32, seed=0)
    train_teacher(clip, preprocess, tokenizer, train, sampler.indices, Accelerator(cpu=True), steps=steps, lr=2e-3,
                  seed=0, show_progress=False)
    return clip, preprocess, tokenizer


def recognition(clip, preprocess, tokenizer, world):
    return concept_recognition(clip, preprocess, tokenizer, held_out_pictures(world, copies=12), concept_prompts(world),
                               bootstrap=200)


def test_the_teacher_learns_concepts_through_both_towers(pool):
    """Learnt: R@1 of 96 held-out pictures far above chance (1/8). Captions paired with the wrong
    pictures: chance. Text tower frozen at its random initialisation: the picture tower alone still
    learns something (it can map pictures onto the random but distinct features of their captions,
    as LiT maps them onto a locked tower's), but significantly less than both towers together."""
    train, world = pool
    learnt = recognition(*teach(train), world)
    cut = recognition(*teach(train, cut_text=True), world)
    shuffled = recognition(*teach(train, shuffle_captions=True), world)["all"]
    chance = 1 / len(SHAPES)
    assert learnt["all"]["low"] > 4 * chance
    assert shuffled["low"] <= chance <= shuffled["high"]
    paired = paired_bootstrap(Statistic.mean(learnt["hits"]), Statistic.mean(cut["hits"]), n_samples=500)
    assert paired["delta_low"] > 0, paired
