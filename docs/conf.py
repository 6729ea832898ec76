"""Sphinx settings for the brim documentation (built by the test suite with -W)."""

project = "brim"
author = "The brim developers"
copyright = "2026, The brim developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False
