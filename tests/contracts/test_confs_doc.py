"""The README's configuration reference is the schema's, and every key is described."""

from pathlib import Path

from contracts.confs_doc import rows, with_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_matches_the_schema() -> None:
    readme = (ROOT / "README.md").read_text()
    assert with_table(readme) == readme, "run: python -m contracts.confs_doc --update README.md"


def test_every_confs_key_has_a_description() -> None:
    undescribed = [key for key, _, text in rows() if not text.strip()]
    assert undescribed == []
