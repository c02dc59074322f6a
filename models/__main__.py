"""`python -m models`: what the model room offers, and what a saved system is made of.

    python -m models list            # similarities, label schemes, splices, EOT finders, ...
    python -m models info RUN/model  # a saved GroundedSystem: CLIP, student, splice, sizes
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _list() -> int:
    from models.assignment import METHODS
    from models.decoding import DECODING_MODES
    from models.eot import EOT_MODES
    from models.ndim_loss import LABELS
    from models.similarities import CHOICES as SIMILARITIES
    from models.splice import SPLICES
    from models.tiny_configs import MARIAN_PRESETS, register_tiny_clip_configs

    rows = {
        "similarities (--similarity)": SIMILARITIES,
        "label schemes (--labels)": LABELS,
        "splices (--splice)": SPLICES,
        "EOT finders (--eot-finder)": EOT_MODES,
        "decoding modes (--decoding)": DECODING_MODES,
        "assignment methods (models.assignment.solve)": METHODS,
        "tiny CLIP configs (--clip)": register_tiny_clip_configs(),
        "student presets (--student-preset)": tuple(MARIAN_PRESETS),
    }
    for title, names in rows.items():
        print(f"{title}:\n  {', '.join(names)}")
    return 0


def _info(path: str) -> int:
    from models.grounded import SYSTEM_FILE, GroundedSystem

    system = GroundedSystem.load(path)
    spec = json.loads((Path(path) / SYSTEM_FILE).read_text())

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    config = system.student.config
    print(f"CLIP {spec['clip']}: {count(system.clip):,} parameters, context length {system.context_length}")
    print(f"student: Marian d_model {config.d_model}, {config.encoder_layers}+{config.decoder_layers} layers, "
          f"source vocabulary {config.vocab_size}, target vocabulary {config.decoder_vocab_size} "
          f"({system.vocab.describe()}), "
          f"{count(system.student):,} parameters")
    print(f"splice {spec['splice']} (tau {spec['tau']}), EOT finder {spec['eot_finder']}, decoding {spec['decoding']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="the registered similarities, label schemes, splices, EOT finders, solvers, presets")
    info = sub.add_parser("info", help="describe a saved system (a run's model/ directory)")
    info.add_argument("path", help="RUN/model directory written by train.py")
    args = parser.parse_args(argv)
    try:
        return _list() if args.command == "list" else _info(args.path)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
