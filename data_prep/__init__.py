"""Datasets for GroundMT: builders for every source, the embedded synthetic world, the data
contract (docs/design.md §3), the source tokenizer and collation for training."""
from .build_report import BuildReport
from .concepts import load_concepts
from .load import load_dataset_dir
from .schema import COLUMNS, FEATURES, OPTIONAL_FEATURES, SPLITS, normalize_text, provenance
from .writer import write_dataset

__all__ = ["BuildReport", "COLUMNS", "FEATURES", "OPTIONAL_FEATURES", "SPLITS", "load_concepts", "load_dataset_dir",
           "normalize_text", "provenance", "write_dataset"]
