"""docs/reliability.md stays true: every test it names exists."""
import re

from .conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)+)`")


def test_every_test_named_in_the_reliability_doc_exists():
    references = REFERENCE.findall(DOC.read_text())
    assert len(references) > 50, f"expected the doc's tables to name their tests; found {len(references)}"
    missing = []
    for path, names in references:
        source = (REPO_ROOT / path).read_text() if (REPO_ROOT / path).is_file() else None
        for name in names.strip(":").split("::"):
            if source is None or not re.search(rf"^\s*(?:def|class) {name}\b", source, re.MULTILINE):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
