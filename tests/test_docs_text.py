"""The docs speak to users: no words from how brim was developed on the pages.

The API pages are built from docstrings, so the modules they include are
read too.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md"))]


def _api_modules() -> list[str]:
    names = []
    for page in sorted((ROOT / "docs" / "api").glob("*.rst")):
        names += re.findall(r"^\.\. automodule:: (\S+)", page.read_text(), re.M)
    return names


def _docstrings(module: object) -> str:
    out = [module.__doc__ or ""]
    for value in vars(module).values():
        if getattr(value, "__module__", None) == module.__name__:
            out.append(getattr(value, "__doc__", "") or "")
            for member in vars(value).values() if isinstance(value, type) else ():
                func = getattr(member, "__func__", member)
                out.append(getattr(func, "__doc__", "") or "")
    return "\n".join(out)


def test_no_seed_on_any_page_or_api_docstring():
    pages = {p.name: p.read_text() for p in (ROOT / "docs").rglob("*.rst")
             if "_build" not in p.parts}
    for name in _api_modules():
        pages[name] = _docstrings(importlib.import_module(name))
    found = [name for name, text in pages.items() if re.search(r"\bseed\b", text, re.I)]
    assert not found, f"'seed' (a development word) on {found}"


def test_readmes_carry_no_commit_hashes_and_no_development_log():
    for readme in READMES:
        text = readme.read_text()
        hashes = re.findall(r"\b(?:commit|at|before|after|between) ([0-9a-f]{7,12})\b", text)
        assert not hashes, f"{readme.relative_to(ROOT)} cites commits {hashes}"
        assert not re.search(r"\bjudged\b|\bone commit earlier\b", text), readme


def test_readmes_install_from_the_repo_or_wheels_never_from_an_index():
    """No package is on an index: every pip install names a folder, a wheel or a tool."""
    for readme in READMES:
        for line in re.findall(r"^(?:\$ )?pip install (.+)$", readme.read_text(), re.M):
            for word in line.split("&&")[0].partition("#")[0].split():
                word = word.strip("'\"")
                assert (word.startswith(("packages/", "dist/", "-"))
                        or word in ("hatch", "build", "twine")), (readme, line)
