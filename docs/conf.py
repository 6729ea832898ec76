"""Sphinx settings for the brim documentation (built by the test suite with -W).

Three pages are partly generated here at build time, from the code itself, so
the docs cannot drift from it: the conf reference (from the option tables in
brim.server.options) and the ``brimd --help`` and ``brimd serve --help`` texts
(from their argument parsers).
All land in docs/_generated/, which git ignores.
"""

import os
import pathlib

project = "brim"
author = "The brim developers"
copyright = "2026, The brim developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build", "_generated"]
html_theme = "alabaster"
nitpicky = False


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    """Rewrite a generated file only when its text changes (keeps rebuilds incremental)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _generate() -> None:
    from brim.server import options, serve
    from brim.server.cli import _parser

    out = pathlib.Path(__file__).resolve().parent / "_generated"
    out.mkdir(exist_ok=True)
    _write_if_changed(out / "options.rst", options.reference_rst())
    os.environ["COLUMNS"] = "80"  # argparse wraps its help to the terminal width
    _write_if_changed(out / "brimd-help.txt", _parser().format_help())
    _write_if_changed(out / "brimd-serve-help.txt", serve._parser().format_help())


_generate()
