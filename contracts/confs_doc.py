"""`python -m contracts.confs_doc`: a Markdown table of every confs.json key, made from the schema itself."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

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


BEGIN, END = "<!-- confs:begin -->", "<!-- confs:end -->"


def with_table(text: str) -> str:
    """text with the generated table placed between the confs markers."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"no {BEGIN} … {END} markers found")
    return pattern.sub(lambda _: f"{BEGIN}\n{markdown()}{END}", text)


def main(argv: list[str]) -> int:
    """Print the table, or with `--update FILE` rewrite the table inside FILE."""
    if len(argv) == 2 and argv[0] == "--update":
        path = Path(argv[1])
        path.write_text(with_table(path.read_text()))
        return 0
    if argv:
        print("usage: python -m contracts.confs_doc [--update README.md]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
