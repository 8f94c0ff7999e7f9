"""The README's quickstart runs as written (with fewer epochs)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def test_readme_starts_with_install_demo_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert 'pip install -e ".[dev]"' in blocks[0] and "skunet demo" in blocks[0]
    assert "python -m pytest" in blocks[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "python -m pytest" in ci


@pytest.mark.slow
def test_quickstart_runs(monkeypatch, tmp_path):
    code = re.search(r"## Quickstart\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "max_epochs=30" in code
    code = code.replace("max_epochs=30", "max_epochs=1")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    assert 0 <= namespace["grid"].best_score_ <= 1
    assert [m.shape for m in namespace["masks"]] == [x.shape for x in namespace["X"][9:]]


def test_pretrained_example_runs_offline(monkeypatch, tmp_path):
    """The README's first Python example: the shipped model, no network, no training."""
    code = re.search(r"## Pretrained models\n.*?```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.setenv("SKUNET_HOME", str(tmp_path))  # an empty cache: the shipped file
    namespace = {}
    exec(compile(code.group(1), "README pretrained", "exec"), namespace)
    from skunet.metrics import match_dataset

    found = match_dataset(namespace["y"][:3], list(namespace["nuclei"]))
    assert found.accuracy > 0.7, found  # (images of its training set: a sanity check)


def test_readme_is_a_front_page_whose_links_exist():
    """The README stays a front page; the documentation pages it links to exist."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)]+)\)", text)
    assert len(links) > 15
    missing = [link for link in links if not (README.parent / link).is_file()]
    assert not missing
    index = (README.parent / "docs" / "index.md").read_text()
    for page in (README.parent / "docs").rglob("*.md"):
        name = page.relative_to(README.parent / "docs").with_suffix("").as_posix()
        assert name == "index" or f"\n{name}\n" in index, f"{name} is not in the toctree"
