"""The embedded synthetic world (docs/design.md §9): procedural scenes of coloured shapes, rendered with
PIL, described by independent English and source-language captions written by grammars, and
for a fraction of source captions an exact English translation."""
from .descriptions import Description, Mention, describe
from .scene import Scene, Shape, sample_scene

LANGUAGES = ("es", "zh")

__all__ = ["Description", "LANGUAGES", "Mention", "Scene", "Shape", "describe", "sample_scene"]
