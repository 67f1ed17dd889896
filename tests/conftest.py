"""Test-wide settings: float64 JAX (the library itself never flips this) and no network."""

import functools
import os
import shutil
import tempfile

import jax
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
jax.config.update("jax_enable_x64", True)
_CACHE = None


def pytest_configure(config):
    """The CLI's persistent compilation cache goes to a directory of this run, not the user's ~/.cache."""
    global _CACHE
    if "LAIMCO_COMPILATION_CACHE" not in os.environ:
        _CACHE = tempfile.mkdtemp(prefix="laimco-test-jax-cache-")
        os.environ["LAIMCO_COMPILATION_CACHE"] = _CACHE


def pytest_unconfigure(config):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


def run_cli(capsys, monkeypatch, *args):
    """Run ``laimco ARGS`` in-process: ``(exit code, stdout, stderr)`` (tests import it from conftest)."""
    import sys

    from laimco_jax import cli

    monkeypatch.setattr(sys, "argv", ["laimco", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)`` runs ``laimco ARGS`` in-process and returns ``(exit code, stdout, stderr)``."""
    return functools.partial(run_cli, capsys, monkeypatch)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. XLA's CPU backend maps memory regions per
    compiled program (over a thousand for a cell solver), and a single pytest process compiling
    hundreds of programs ran into the kernel's limit on memory maps (vm.max_map_count, 65530 here) and
    crashed inside the compiler."""
    yield
    jax.clear_caches()
