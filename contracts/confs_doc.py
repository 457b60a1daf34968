"""`python -m contracts.confs_doc`: a Markdown table of every confs.json key, made from the schema itself."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from pydantic import BaseModel

from contracts.confs import Confs


def _default(field_info: object) -> str:
    """The field's default as JSON text, or 'required'."""
    if field_info.is_required():  # type: ignore[attr-defined]
        return "required"
    factory = getattr(field_info, "default_factory", None)
    value = factory() if factory else getattr(field_info, "default", None)
    if isinstance(value, BaseModel):
        return "(section)"
    return json.dumps(value)


def rows(model: type[BaseModel] = Confs, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf key, sections expanded in place."""
    for name, field_info in model.model_fields.items():
        key = prefix + name
        annotation = field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from rows(annotation, key + ".")
            continue
        description = field_info.description or ""
        yield key, _default(field_info), description


def markdown() -> str:
    """The table as Markdown."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | `{default}` | {text} |" for key, default, text in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
