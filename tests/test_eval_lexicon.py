"""`python -m eval lexicon` end to end on tiny long-tail worlds built here: its JSON equals a
brute-force recount (Dice of every English phrase's pictures against each concept's source name's
pictures, the argmax with its tie order — a template word at either end last, then the longest —,
the ceilings, the hashed seen set and the log2 frequency bins); the teacher rankings of a micro run equal a recount with the run's CLIP; bad input is one
line and exit code 2, and the output never replaces an input or a file the command did not write."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from itertools import chain

import datasets
import pytest
import torch

import training
from concept_oracle import frequency_label, hashed_split
from data_prep.concepts import load_concepts
from data_prep.longtail.build import build_longtail
from data_prep.longtail.pictures import twemoji_folder
from data_prep.words import words as segmented
from eval.__main__ import main
from models.clip_loading import load_clip
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
P, SEED, K, TIE, MAX_WORDS = 0.1, 0, 20, 0.05, 6
# 30 pictographs: fruit, animals, vehicles, a house, a tree, a star
PICTURES = ("1f34e", "1f436", "1f431", "1f697", "2b50", "1f355", "1f3e0", "1f333", "1f680", "1f41f",
            "1f34a", "1f34c", "1f352", "1f353", "1f347", "1f349", "1f34d", "1f95d", "1f955", "1f33d",
            "1f418", "1f42d", "1f430", "1f98a", "1f43b", "1f427", "1f422", "1f40d", "1f6b2", "1f68c")


@pytest.fixture(scope="module", params=["es", "zh"])
def world(request, tmp_path_factory):
    """160 pictures of 30 concepts, Zipf-weighted, every caption translated (~2 s to build)."""
    root = tmp_path_factory.mktemp(f"lexicon-world-{request.param}")
    (root / "pictures").mkdir()
    for cid in PICTURES:
        shutil.copy(twemoji_folder() / f"{cid}.png", root / "pictures")
    build_longtail(root / "data", lang=request.param, images=160, parallel_fraction=1.0, image_size=32,
                   pictures=root / "pictures", show_progress=False)
    return root / "data"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`python -m eval lexicon ARGV` in this process: exit code, stdout, stderr."""
    try:
        code = main(["lexicon", *argv])
    except SystemExit as exc:  # argument errors end in the parser
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits (every other character separates)."""
    return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


def contains(caption: str, form: str, spaced: bool) -> bool:
    """`form` in `caption`: as a run of whole words where the language writes spaces, else as text."""
    have, want = words(caption), words(form)
    if not spaced:
        return " ".join(want) in " ".join(have)
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def recount(world) -> dict:
    """Everything the JSON's cooccurrence side should say, counted the slow way."""
    train = datasets.load_from_disk(str(world))["train"]
    inventory = load_concepts(world)
    spaced = inventory.lang != "zh"
    english = {}  # phrase -> pictures
    for i, row in enumerate(train):
        for caption in row["english"]:
            w = words(caption)
            for n in range(1, MAX_WORDS + 1):
                for start in range(len(w) - n + 1):
                    english.setdefault(" ".join(w[start:start + n]), set()).add(i)
    template = {w for w, e in english.items() if " " not in w and len(e) > 0.05 * len(train)}
    english_of = [{p for p, e in english.items() if i in e} for i in range(len(train))]

    def padded(phrase: str) -> bool:  # a template word at either end: "a joker", "button and"
        return phrase.split()[0] in template or phrase.split()[-1] in template

    _, seen, _ = hashed_split(train, P, SEED)
    frequency = Counter(c for r in train for source, ids in zip(r["source"], r["source_concepts"]) if source.strip()
                        for c in set(ids))
    tallies = {name: {"all": [0, 0], "seen": [0, 0], "unseen": [0, 0], "bins": {}}
               for name in ("cooccurrence", "explained", "top_k", "within_tie")}

    def ranked_by(counts: dict[str, int], pictures: set[int]) -> list[tuple[float, str, set[int]]]:
        dice = ((2 * n / (len(english[p]) + len(pictures)), p, english[p]) for p, n in counts.items() if n)
        return sorted(dice, key=lambda t: (-t[0], padded(t[1]), -len(t[1].split()), len(t[2]), t[1]))

    # explaining away: a source word of 4 or more pictures (at most 5% of them) claims the words of its
    # best phrase (Dice at least 0.5, no template word at either end) that are no template words, unless
    # another such word has a higher Dice for that phrase
    picture_words = [{w.lower() for s in row["source"] for w in segmented(s, inventory.lang) if w.isalnum()}
                     for row in train]
    best = {}
    for word in set().union(*picture_words):
        where = {i for i, mine in enumerate(picture_words) if word in mine}
        if 4 <= len(where) <= 0.05 * len(train):
            top = ranked_by({p: len(e & where) for p, e in english.items()}, where)
            if top and top[0][0] >= 0.5 and not padded(top[0][1]):
                best[word] = top[0][:2]
    claims = {word: {w for w in phrase.split() if w not in template} for word, (dice, phrase) in best.items()
              if dice == max(d for d, p in best.values() if p == phrase)}

    def another_word(word: str, own: set[str]) -> bool:  # unspaced: a word inside the name or holding it is the name
        text = "".join(own)
        return word not in own and (spaced or not (word in text or text in word))
    concepts = {}
    for concept in inventory.concepts:
        pictures = {i for i, row in enumerate(train) for form in concept.source
                    if any(contains(s, form, spaced) for s in row["source"])}
        if not frequency[concept.id] or not pictures:
            continue
        dice = ((2 * len(e & pictures) / (len(e) + len(pictures)), phrase, e) for phrase, e in english.items())
        ranked = sorted(dice, key=lambda t: (-t[0], padded(t[1]), -len(t[1].split()), len(t[2]), t[1]))[:K]
        own = {w.lower() for form in concept.source for w in segmented(form, inventory.lang)}
        unexplained = Counter(p for i in pictures for p in english_of[i] if not set(p.split()) & set().union(
            *(claims.get(w, ()) for w in picture_words[i] if another_word(w, own))))
        explained = ranked_by(unexplained, pictures)
        gold = {" ".join(words(form)) for form in concept.english}
        kind = "seen" if concept.id in seen else "unseen"
        hits = {"cooccurrence": ranked[0][1] in gold, "explained": bool(explained) and explained[0][1] in gold,
                "top_k": any(p in gold for _, p, _ in ranked),
                "within_tie": any(p in gold for d, p, _ in ranked if d >= ranked[0][0] - TIE)}
        for name, hit in hits.items():
            for key in ("all", kind):
                tallies[name][key][0] += hit
                tallies[name][key][1] += 1
            cell = tallies[name]["bins"].setdefault(frequency_label(frequency[concept.id]), [0, 0])
            cell[0] += hit
            cell[1] += 1
        concepts[concept.id] = {"pick": ranked[0][1], "explained": explained[0][1] if explained else None,
                                "pictures": sorted(pictures),
                                "ranked": [(p, d) for d, p, _ in ranked]}
    return {"tallies": tallies, "concepts": concepts, "seen": len(seen), "named": len(frequency)}


def as_tally(section: dict) -> dict:
    return {**{key: [section[key]["correct"], section[key]["concepts"]] for key in ("all", "seen", "unseen")},
            "bins": {b["train_captions"]: [b["correct"], b["concepts"]] for b in section["by_frequency"]}}


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return list(chain(value, *(strings(v) for v in value.values())))
    if isinstance(value, list):
        return list(chain(*(strings(v) for v in value)))
    return [value] if isinstance(value, str) else []


def test_the_json_equals_a_brute_force_recount(world, tmp_path, capsys):
    out = tmp_path / "lexicon.json"
    code, printed, _ = cli(capsys, "--data-dir", str(world), "--fraction", str(P), "--seed", str(SEED), "--out",
                           str(out))
    assert code == 0
    report, oracle = json.loads(out.read_text()), recount(world)
    assert set(report["rankings"]) == {"cooccurrence", "explained"} and report["teacher"] is None
    for name in ("cooccurrence", "explained"):
        assert as_tally(report["rankings"][name]) == oracle["tallies"][name], name
    for name in ("top_k", "within_tie"):
        assert as_tally(report["ceilings"][name]) == oracle["tallies"][name], name
    assert {e["id"]: e["picks"]["cooccurrence"] for e in report["concepts"]} == \
        {cid: c["pick"] for cid, c in oracle["concepts"].items()}
    assert {e["id"]: e["picks"]["explained"] for e in report["concepts"]} == \
        {cid: c["explained"] for cid, c in oracle["concepts"].items()}
    assert report["training"]["seen_concepts"] == oracle["seen"]
    assert report["training"]["concepts_named"] == oracle["named"]
    assert report["rankings"]["cooccurrence"]["all"]["concepts"] >= 10  # a real test: many concepts queried
    assert 0 < report["ceilings"]["top_k"]["all"]["correct"] and report["rankings"]["cooccurrence"]["all"]["correct"]
    total = report["rankings"]["cooccurrence"]["all"]
    assert f"{total['precision_at_1']:.3f} ({total['correct']}/{total['concepts']})" in printed
    assert not [s for s in strings(report) if s.startswith("/") or str(tmp_path) in s]  # no local path
    assert report["data"] == "data" and report["lang"] == load_concepts(world).lang


@pytest.fixture(scope="module")
def lexicon_run(tmp_path_factory, cache, concept_world):
    """A micro run on the shared concept world: its stage-0 teacher is saved in RUN/model/clip."""
    out = tmp_path_factory.mktemp("lexicon-run") / "run"
    assert training.main(tiny(cache, out, "--data-dir", str(concept_world), "--steps", "2", "--no-evaluate",
                              "--checkpoint-every", "1000", "--eval-every", "1000")) == 0
    return out


def teacher_scores(run, world):
    """`score(pictures, phrases)`: the teacher's mean cosine of each phrase (read as "a picture of a
    {phrase}") to the pictures minus its mean cosine to all training pictures, with the run's CLIP."""
    spec = json.loads((run / "model" / "system.json").read_text())
    clip, preprocess, tokenizer = load_clip(spec["clip"], run / "model" / "clip" / "open_clip_model.pt")
    train = datasets.load_from_disk(str(world))["train"]
    with torch.no_grad():
        images = torch.nn.functional.normalize(
            clip.encode_image(torch.stack([preprocess(im.convert("RGB")) for im in train["image"]])), dim=-1)

    def score(pictures: list[int], phrases: list[str]) -> list[float]:
        with torch.no_grad():
            texts = torch.nn.functional.normalize(clip.encode_text(tokenizer([f"a picture of a {p}" for p in phrases])),
                                                  dim=-1)
        sims = images @ texts.T
        return (sims[pictures].mean(0) - sims.mean(0)).tolist()

    return score


def test_the_teacher_rankings_equal_a_recount_with_the_runs_clip(lexicon_run, concept_world, tmp_path, capsys):
    out = tmp_path / "lexicon.json"
    code, printed, err = cli(capsys, "--data-dir", str(concept_world), "--run", str(lexicon_run), "--out", str(out),
                             "--device", "cpu")
    assert code == 0, err
    report, oracle = json.loads(out.read_text()), recount(concept_world)
    assert set(report["rankings"]) == {"cooccurrence", "explained", "teacher", "both"}
    assert report["teacher"]["run"] == "run" and report["teacher"]["clip"] == "groundmt-micro"
    assert report["rankings"]["teacher"]["all"]["concepts"] == len(oracle["concepts"]) >= 5
    score = teacher_scores(lexicon_run, concept_world)
    for entry in report["concepts"]:
        truth = oracle["concepts"][entry["id"]]
        phrases = [p for p, _ in truth["ranked"]]
        scores = dict(zip(phrases, score(truth["pictures"], phrases)))
        near = [p for p, d in truth["ranked"] if d >= truth["ranked"][0][1] - TIE]
        assert scores[entry["picks"]["teacher"]] == pytest.approx(max(scores.values()), abs=1e-5), entry["id"]
        assert entry["picks"]["both"] in near
        assert scores[entry["picks"]["both"]] == pytest.approx(max(scores[p] for p in near), abs=1e-5), entry["id"]
    header = printed.splitlines()[1]
    assert "teacher" in header and "both" in header


def fake_run(folder, lexicon_run, **config) -> str:
    """`folder` holding the micro run's config.json with `config` changed (and nothing else of it)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**json.loads((lexicon_run / "config.json").read_text()),
                                                    **config}))
    return str(folder)


def test_bad_input_is_one_line_and_exit_2(concept_world, lexicon_run, tmp_path, capsys):
    no_concepts = tmp_path / "no-concepts"
    shutil.copytree(concept_world, no_concepts)
    (no_concepts / "concepts.json").unlink()
    (tmp_path / "empty").mkdir()
    other = tmp_path / "other-world"  # the same world with one training caption changed
    dsd = datasets.load_from_disk(str(concept_world))
    dsd["train"] = dsd["train"].map(lambda row, i: {"english": [row["english"][0] + " again", *row["english"][1:]]}
                                    if i == 0 else {}, with_indices=True)
    dsd.save_to_disk(str(other))
    shutil.copy(concept_world / "concepts.json", other)
    world = ["--data-dir", str(concept_world)]
    inputs = {name: (concept_world / name).read_bytes() for name in ("concepts.json", "dataset_dict.json")}
    cases = [
        (["--data-dir", str(no_concepts)], "concepts.json"),
        (["--data-dir", str(tmp_path / "empty")], "no dataset"),
        (["--data-dir", str(tmp_path / "missing")], "no dataset"),
        ([*world, "--fraction", "1.5"], "--fraction"),
        ([*world, "--fraction", "-0.1"], "--fraction"),
        ([*world, "--fraction", "half"], "--fraction"),
        ([*world, "--run", fake_run(tmp_path / "zh-run", lexicon_run, lang="zh")], "'zh'"),
        ([*world, "--run", str(tmp_path / "empty")], "not a run directory"),
        (["--data-dir", str(other), "--run", str(lexicon_run)], "differ"),
        ([*world, "--run", fake_run(tmp_path / "moved-run", lexicon_run, data_path=str(tmp_path / "gone"))],
         "not on this machine"),
        ([*world, "--run", fake_run(tmp_path / "no-model", lexicon_run)], "no saved CLIP teacher"),
        ([*world, "--out", str(concept_world / "concepts.json")], "input"),
        ([*world, "--out", str(concept_world / "dataset_dict.json")], "already exists"),
    ]
    for argv, needle in cases:
        code, out, err = cli(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, (argv, err)
    assert inputs == {name: (concept_world / name).read_bytes() for name in inputs}  # named as --out, untouched


def test_out_replaces_only_its_own_file(concept_world, tmp_path, capsys):
    out = tmp_path / "lexicon.json"
    out.write_text("my notes\n")
    assert cli(capsys, "--data-dir", str(concept_world), "--out", str(out))[0] == 2
    assert out.read_text() == "my notes\n"
    assert cli(capsys, "--data-dir", str(concept_world), "--out", str(out), "--overwrite")[0] == 0
    first = json.loads(out.read_text())
    code, _, _ = cli(capsys, "--data-dir", str(concept_world), "--out", str(out), "--fraction", "0.5")
    assert code == 0 and json.loads(out.read_text())["fraction"] == 0.5 and first["fraction"] == 0.05
