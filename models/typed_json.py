"""Reading JSON back against a declared schema: the one check for every file a command reads
back (a run's `config.json` and `model/system.json`, `eval/scores.json`, a corpus's
`progress.json` and records, checkpoint manifests, metadata rows).

A schema is a `TypedDict` (from `typing_extensions`, as pydantic requires on Python 3.11) declared
next to the code that writes the file; `pydantic` checks it in strict mode (no coercion: `"3"` is
not a number, `true` is not an integer) and keys a schema does not name are allowed, so a newer
writer's extra fields do not break an older reader. The first problem becomes one line naming
the file and the field: `RUN/model/system.json: field "tau": expected a number, found a JSON string`.
`models/` imports this module, so it depends on nothing of the project; `data_prep.errors.run_command`
prints a `ReadBackError` as one `error:` line with exit code 2, like an input error.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

# pydantic error type -> what the field should have held
_EXPECTED = {"string_type": "a string", "float_type": "a number", "int_type": "an integer",
             "int_from_float": "an integer", "bool_type": "true or false", "dict_type": "a JSON object",
             "list_type": "a JSON array", "finite_number": "a finite number", "none_required": "null",
             "typed_dict_type": "a JSON object", "greater_than_equal": "a number >= 0",
             "greater_than": "a number > 0", "too_short": "a non-empty JSON array"}
_SHOW_VALUE = {"finite_number", "greater_than_equal", "greater_than", "literal_error"}  # the kind alone says too little


class ReadBackError(ValueError):
    """A file the program wrote earlier (or was given) does not hold what its schema declares."""


def json_kind(value: Any) -> str:
    """`a JSON string`, `a JSON array`, ... for messages."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    return ("an empty JSON array" if value == [] else f"a JSON {kinds.get(type(value), type(value).__name__)}")


@functools.cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def problem(data: Any, schema: Any) -> str | None:
    """What is wrong with decoded JSON `data` under `schema` (one phrase naming the field), or None."""
    try:
        _adapter(schema).validate_python(data, strict=True)
    except ValidationError as exc:
        return _describe(data, exc.errors(include_url=False))
    return None


def check(data: Any, schema: Any, where: str | Path) -> Any:
    """`data` unchanged when it fits `schema`; else `ReadBackError` "`where`: problem"."""
    why = problem(data, schema)
    if why is not None:
        raise ReadBackError(f"{where}: {why}")
    return data


def parse(text: str | bytes, schema: Any, where: str | Path) -> Any:
    """JSON `text` (from `where`, e.g. a file or `file:line`) decoded and checked against `schema`;
    text that is not UTF-8 or not JSON (a truncated write) is a `ReadBackError` too."""
    try:
        data = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as exc:
        raise ReadBackError(f"{where}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                            "it is damaged") from None
    except json.JSONDecodeError as exc:
        raise ReadBackError(f"{where}: not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}); it is "
                            "truncated or damaged") from None
    return check(data, schema, where)


def read_json(path: str | Path, schema: Any) -> Any:
    """The JSON file at `path`, checked against `schema` (`parse`); an `OSError` when it cannot be read."""
    return parse(Path(path).read_bytes(), schema, path)


def _describe(data: Any, errors: list[dict]) -> str:
    """The deepest error, its location resolved in `data` (pydantic's union branch names skipped);
    the value itself is named only where its kind says too little (a number out of range, a word
    not among the allowed ones); otherwise the kind keeps reasons countable."""
    located = [(*_locate(data, e["loc"]), e) for e in errors]
    depth = max(len(path) for path, _, _ in located)
    path, value, _ = next(x for x in located if len(x[0]) == depth)
    same = [e for p, _, e in located if p == path]
    missing = [e for e in same if e["type"] == "missing"]
    if missing:
        return f'field "{_field(path + (missing[0]["loc"][-1],))}" is missing'
    expected = " or ".join(dict.fromkeys(_EXPECTED.get(e["type"], e["msg"].removeprefix("Input should be "))
                                         for e in same))
    shown = any(e["type"] in _SHOW_VALUE for e in same)
    return (f'field "{_field(path)}": ' if path else "") + f"expected {expected}, found {json_kind(value)}" \
        + (f" ({value!r})" if shown else "")


def _field(path: tuple) -> str:
    """`metrics.bleu.score`, `sentences[3].hypothesis`."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def _locate(data: Any, loc: tuple) -> tuple[tuple, Any]:
    """(path of keys and indices that exist in `data`, the value there) along pydantic's `loc`; the
    last key of a missing field is left out (reported separately), union branch tags are skipped."""
    path, value = [], data
    for part in loc:
        if isinstance(value, dict) and part in value:
            path.append(part)
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            path.append(part)
            value = value[part]
    return tuple(path), value
