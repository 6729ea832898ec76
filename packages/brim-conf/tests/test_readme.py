"""The program in the package README runs as written, with brim-conf alone.

It is run twice: by the test environment's Python and by a fresh virtualenv
holding brim-conf and nothing else, so the README's promise that any program
can use brim-conf on its own is checked, not just stated. Every mistake a
user can make in its conf is checked for the exact line the program prints.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import venv
from collections.abc import Iterator

import pytest

#: The fresh virtualenv is built once per worker that runs this module: keep it to one,
#: beside the other CPU-heavy checks (see the root conftest.py).
pytestmark = pytest.mark.xdist_group("cpu-heavy")

PACKAGE = pathlib.Path(__file__).resolve().parents[1]
README = (PACKAGE / "README.md").read_text()
PROGRAM = re.findall(r"```python\n(.*?)```", README, re.S)[0]
GOOD_CONF, BAD_CONF = re.findall(r"```ini\n(.*?)```", README, re.S)[:2]
GOOD_OUTPUT, BAD_OUTPUT = re.findall(r"```text\n(.*?)```", README, re.S)[:2]


@pytest.fixture(scope="module",
                params=["workspace", pytest.param("alone", marks=pytest.mark.slow)])
def python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Python that has brim-conf: the test environment's, or a new venv's with only it."""
    if request.param == "workspace":
        yield sys.executable
        return
    home = tmp_path_factory.mktemp("alone")
    venv.create(home / "venv", with_pip=True)
    exe = str(home / "venv" / "bin" / "python")
    install = subprocess.run(
        [exe, "-m", "pip", "install", "-q", str(PACKAGE)], capture_output=True, text=True,
        timeout=280, env=_clean_env(),
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [exe, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
        timeout=60, check=True, env=_clean_env(),
    ).stdout.split()
    assert {line.split("==")[0].lower() for line in listed} - {"pip", "setuptools"} == {"brim-conf"}
    yield exe


def _clean_env() -> dict[str, str]:
    """The environment without anything that would let a venv see the workspace."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def nightly(python: str, tmp_path: pathlib.Path, conf: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the README program on ``conf`` (written to tmp_path/m.conf) or on ``args``."""
    (tmp_path / "nightly.py").write_text(PROGRAM)
    (tmp_path / "m.conf").write_text(conf)
    return subprocess.run(
        [python, "nightly.py", *(args or ("m.conf",))], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env=_clean_env(),
    )


@pytest.mark.timeout(300)
def test_readme_conf_gives_the_readme_output(python, tmp_path):
    (tmp_path / "nightly.conf").write_text(GOOD_CONF)
    run = nightly(python, tmp_path, "", "nightly.conf")
    assert run.returncode == 0, run.stderr
    assert run.stdout == GOOD_OUTPUT


@pytest.mark.timeout(300)
def test_readme_bad_conf_reports_every_mistake_of_the_section_together(python, tmp_path):
    (tmp_path / "bad.conf").write_text(BAD_CONF)
    run = nightly(python, tmp_path, "", "bad.conf")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == BAD_OUTPUT
    assert len(run.stderr.splitlines()) == 4


# Each mistake, and the one line the program prints for it (m.conf is the file).
MISTAKES = [
    pytest.param(
        "[job]\nat = 01:00\n",
        "[job] command: required but not set (m.conf line 1)",
        id="required-missing",
    ),
    pytest.param(
        "[job]\ncommand =\n",
        "[job] command: required but empty (m.conf line 2)",
        id="required-empty",
    ),
    pytest.param(
        "[job]\ncommand = a\nat = 1:00\n",
        "[job] at: '1:00' is not a time of day (use HH:MM, 00:00 to 23:59) (m.conf line 3)",
        id="validator",
    ),
    pytest.param(
        "[settings]\nat = 7pm\n[job]\ncommand = a\n",
        "[settings] at: '7pm' is not a time of day (use HH:MM, 00:00 to 23:59) (m.conf line 2)",
        id="validator-on-an-inherited-value",
    ),
    pytest.param(
        "[job]\ncommand = a\nretries = 12\n",
        "[job] retries: 12 is too large (at most 9) (m.conf line 3)",
        id="bound",
    ),
    pytest.param(
        "[settings]\nretry = 2\n",
        "[settings] retry: unknown option (did you mean 'retries'?) (m.conf line 2)",
        id="unknown-in-defaults",
    ),
    pytest.param(
        "[settings]\nat = 01:00\n[job]\ncommand = a\n[settings]\nat = 02:00\n",
        "section [settings] appears twice (lines 1 and 5); only [job] may repeat (m.conf line 5)",
        id="defaults-section-twice",
    ),
    pytest.param(
        "[job#a]\ncommand = a\n[job#a]\ncommand = b\n",
        "section [job#a] appears twice (lines 1 and 3); only [job] may repeat (m.conf line 3)",
        id="named-job-twice",
    ),
    pytest.param(
        "[job]\ncommand = a\n[job]\ncommand = b\nretries = -1\n",
        "[job] retries: -1 is too small (at least 0) (m.conf line 5)",
        id="mistake-in-a-repeat",
    ),
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("conf", "problem"), MISTAKES)
def test_each_mistake_is_named_with_its_line(python, tmp_path, conf, problem):
    run = nightly(python, tmp_path, conf)
    assert run.returncode == 1
    assert run.stderr == f"nightly: {problem}\n"


@pytest.mark.timeout(300)
def test_a_missing_file_is_named(python, tmp_path):
    run = nightly(python, tmp_path, "", "nope.conf")
    assert run.returncode == 1
    assert run.stderr == "nightly: nope.conf: conf file not found\n"


@pytest.mark.timeout(300)
def test_a_conf_in_another_programs_words_is_refused(python, tmp_path):
    """brimd's repeatable [wsgi] means nothing to nightly: repeating it is an error."""
    run = nightly(python, tmp_path, "[wsgi]\n[wsgi]\n")
    assert run.returncode == 1
    assert run.stderr == "nightly: section [wsgi] appears twice (lines 1 and 2); only [job] may repeat (m.conf line 2)\n"
