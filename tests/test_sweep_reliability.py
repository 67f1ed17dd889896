"""Sweeps and ``laimco reproduce`` under interrupts, kills, concurrent runs, full or read-only disks and bad input.

Every in-process sweep here has the structure of ``SPEC`` at ``CHUNK`` (so they share one compilation);
the real-signal tests run ``laimco`` in subprocesses and are marked slow.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
import zarr

from laimco_jax import sweep
from laimco_jax.cli_sweep import run_sweep_from_cli
from laimco_jax.experiments import reproduce as reproduce_module
from laimco_jax.params import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SPEC = dict(points=[{"distance_m": 300.0}, {"distance_m": 800.0}], grid={"delay_s": "0.05:0.5:5"}, splits="0,6")
CHUNK = 6  # instances: 3 grid points x 2 splits -> blocks of (1, 3), 4 chunks
NUM_CHUNKS = 4
SPEC_TOML = 'split = "0,6"\n[[points]]\ndistance_m = 300.0\n[[points]]\ndistance_m = 800.0\n[grid]\ndelay_s = "0.05:0.5:5"\n'


def _spec_file(tmp_path: Path, extra: str = "") -> Path:
    """``SPEC`` as a spec file (top-level keys in ``extra``)."""
    path = tmp_path / "spec.toml"
    path.write_text(extra + SPEC_TOML)
    return path


def _stop_after(chunks: int):
    """An ``on_chunk`` that raises KeyboardInterrupt (a Ctrl-C) once ``chunks`` chunks are written."""
    written = []

    def on_chunk(chunk, instances):
        written.append(chunk)
        if len(written) == chunks:
            raise KeyboardInterrupt

    return on_chunk


def _complete(store: Path) -> bool:
    return zarr.open_group(store, mode="r", zarr_format=2).attrs["complete"]


def _one_line(err: str) -> str:
    assert err.strip() and "\n" not in err.strip() and "Traceback" not in err, err
    return err.strip()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> xr.Dataset:
    out = sweep.run_sweep(sweep.build_spec(**SPEC), tmp_path_factory.mktemp("ref") / "ref.zarr", chunk_size=CHUNK)
    return sweep.open_sweep(out).load()


# ----------------------------------------------------------------------------- 4: Ctrl-C


def test_interrupt_says_what_was_written_and_store_is_incomplete_until_resumed(tmp_path, reference):
    out = tmp_path / "s.zarr"
    spec = sweep.build_spec(**SPEC)
    with pytest.raises(sweep.Interrupted) as info:
        sweep.run_sweep(spec, out, chunk_size=CHUNK, on_chunk=_stop_after(1))
    done = int(zarr.open_array(out / "_progress" / "done", mode="r")[:].sum())
    assert 1 <= done < NUM_CHUNKS
    assert info.value.message == (f"interrupted: {done} of {NUM_CHUNKS} chunks written to {out}; "
                                  f"resume with: laimco sweep --resume --out {out}")
    assert isinstance(info.value, KeyboardInterrupt) and not (tmp_path / "s.zarr.lock").exists()
    assert _complete(out) is False
    with pytest.warns(UserWarning, match=f"incomplete sweep: {done} of {NUM_CHUNKS} chunks"):
        assert sweep.open_sweep(out).attrs["complete"] is False
    sweep.run_sweep(spec, out, resume=True)
    assert _complete(out) is True
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def test_cli_interrupt_exits_130_with_one_line(cli, tmp_path, monkeypatch, reference):
    """The CLI's side of an interrupt (the real SIGINT is the slow test below)."""
    writes = []
    original = sweep.driver.write_chunk

    def write_then_interrupt(*args):
        writes.append(original(*args))
        if len(writes) == 2:
            raise KeyboardInterrupt
        return writes[-1]

    monkeypatch.setattr(sweep.driver, "write_chunk", write_then_interrupt)
    out = tmp_path / "cli.zarr"
    code, _, err = cli("sweep", "--spec", _spec_file(tmp_path), "--chunk-size", CHUNK,
                           "--out", out)
    assert code == 130, err
    assert _one_line(err).startswith("interrupted: ") and f"laimco sweep --resume --out {out}" in err
    monkeypatch.setattr(sweep.driver, "write_chunk", original)
    code, _, err = cli("sweep", "--resume", "--out", out)
    assert code == 0 and _complete(out) is True
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _done_chunks(out: Path) -> int:
    try:
        return int(zarr.open_array(out / "_progress" / "done", mode="r")[:].sum())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigint_to_laimco_sweep_exits_130_and_resume_completes(cli, tmp_path):
    out = tmp_path / "big.zarr"
    args = ["sweep", "--grid", "delay_s=0.01:0.5:400", "--grid", "energy_j=0.004:0.03:50", "--chunk-size", "50",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "laimco_jax.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_for(lambda: _done_chunks(out) >= 3, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    line = _one_line(err)
    done = _done_chunks(out)
    assert line == f"interrupted: {done} of 400 chunks written to {out}; resume with: laimco sweep --resume --out {out}"
    assert done < 400 and _complete(out) is False, "the sweep finished before it was interrupted"
    code, _, err = cli("sweep", "--resume", "--out", out)
    assert code == 0 and _complete(out) is True and _done_chunks(out) == 400


def _fake_parts(calls: list[str], interrupt: str | None = None, pause: float = 0.0):
    """Parts ``a``, ``b`` writing one file each; ``interrupt`` raises KeyboardInterrupt, ``pause`` sleeps first."""

    def part(name):
        def run(config, out):
            calls.append(name)
            time.sleep(pause if name == "b" else 0.0)
            if name == interrupt:
                raise KeyboardInterrupt
            (out / f"{name}.csv").write_text("x\n1\n")
            return [f"{name}.csv"]

        return (f"part {name}", run)

    return {"a": part("a"), "b": part("b")}


def test_reproduce_interrupt_exits_130_naming_finished_parts(cli, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce_module, "PARTS", _fake_parts(calls, interrupt="b"))
    code, _, err = cli("reproduce", "--quick", "--out", tmp_path, "--parts", "a,b")
    assert code == 130
    assert _one_line(err) == (f"interrupted: parts finished in {tmp_path}: a (of a, b); "
                              f"resume with: laimco reproduce --out {tmp_path} --quick --parts a,b")
    monkeypatch.setattr(reproduce_module, "PARTS", _fake_parts(calls))
    code, _, err = cli("reproduce", "--quick", "--out", tmp_path, "--parts", "a,b")
    assert code == 0 and calls == ["a", "b", "b"]  # a was reused


def test_reproduce_bad_output_and_empty_parts_are_one_line_exit_2(cli, tmp_path):
    (tmp_path / "file").write_text("")
    cases = ((["--out", tmp_path / "file"], f"--out '{tmp_path / 'file'}': cannot create the directory"),
             (["--out", tmp_path, "--parts", ","], "parts=[] names no part; allowed: systems"))
    for args, expected in cases:
        code, _, err = cli("reproduce", *args)
        assert code == 2 and expected in _one_line(err)


REPRODUCE_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from test_sweep_reliability import _fake_parts
from laimco_jax import cli
from laimco_jax.experiments import reproduce
reproduce.PARTS = _fake_parts([], pause=600)
sys.argv = ["laimco", "reproduce", "--out", sys.argv[2], "--parts", "a,b"]
cli.main()
"""


@pytest.mark.slow
def test_sigint_to_laimco_reproduce_exits_130(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", REPRODUCE_SCRIPT, str(ROOT / "tests"), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_for(lambda: (tmp_path / "manifest.json").exists(), proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert _one_line(err) == (f"interrupted: parts finished in {tmp_path}: a (of a, b); "
                              f"resume with: laimco reproduce --out {tmp_path} --parts a,b")


# ----------------------------------------------------------------------------- 5: killed while creating the store


def test_store_killed_mid_creation_leaves_no_store_and_resume_starts_it(tmp_path, monkeypatch, reference):
    out = tmp_path / "k.zarr"
    spec = sweep.build_spec(**SPEC)
    layout = sweep.chunk_layout(spec.shape, CHUNK // 2)
    created = []
    original = zarr.Group.create_array

    def die_on_third(self, *args, **kwargs):
        created.append(args)
        if len(created) == 3:
            raise SystemExit("killed")  # stands in for SIGKILL: no cleanup in the creating code runs
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", die_on_third)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # nor any cleanup
    with pytest.raises(SystemExit):
        sweep.store.create_store(out, spec, layout, np.float64)
    monkeypatch.undo()
    assert not out.exists() and (tmp_path / ".k.zarr.partial").exists()
    sweep.run_sweep(spec, out, chunk_size=CHUNK, resume=True)
    assert not (tmp_path / ".k.zarr.partial").exists()
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def test_resume_of_a_half_created_store_says_so(tmp_path):
    """A skeleton left by an older version (attrs written, arrays missing): a clear error, not KeyError."""
    out = tmp_path / "old.zarr"
    spec = sweep.build_spec(**SPEC)
    sweep.run_sweep(spec, out, chunk_size=CHUNK)
    for name in ("f_device_hz", "_progress"):
        shutil.rmtree(out / name)
    (out / ".zmetadata").unlink()
    with pytest.raises(ConfigError, match=f"{out}.*lacks the array 'f_device_hz'.*remove it and start again"):
        sweep.run_sweep(spec, out, resume=True)


# ----------------------------------------------------------------------------- 6: two sweeps into one store


def test_second_sweep_into_a_locked_store_is_refused_naming_the_holder(cli, tmp_path):
    out = tmp_path / "l.zarr"
    lock = tmp_path / "l.zarr.lock"
    holder = os.getppid()  # alive, and not this process
    lock.write_text(json.dumps({"pid": holder, "host": socket.gethostname()}))
    code, _, err = cli("sweep", "--spec", _spec_file(tmp_path), "--out", out)
    assert code == 2
    assert f"process {holder} on host {socket.gethostname()}" in _one_line(err) and str(lock) in err
    assert lock.exists() and not out.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "stale.zarr"
    (tmp_path / "stale.zarr.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK)
    assert _complete(out) is True and not (tmp_path / "stale.zarr.lock").exists()


def test_lock_of_another_host_is_stale_only_when_its_heartbeat_stopped(tmp_path, monkeypatch):
    out = tmp_path / "h.zarr"
    lock = tmp_path / "h.zarr.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(ConfigError, match="process 1 on host elsewhere"):
        sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK)
    old = time.time() - sweep.LOCK_STALE_S - 1
    os.utime(lock, (old, old))
    monkeypatch.setattr(sweep.lock, "LOCK_HEARTBEAT_S", 0.01)
    touched = []

    def check_heartbeat(chunk, instances):  # while this sweep holds the lock, it keeps it fresh
        os.utime(lock, (old, old))
        time.sleep(0.2)
        touched.append(lock.stat().st_mtime > old + 1)

    sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK, on_chunk=check_heartbeat)
    assert touched and all(touched) and _complete(out) is True and not lock.exists()


@pytest.mark.slow
def test_two_concurrent_sweeps_one_wins_the_other_says_one_line(tmp_path):
    out = tmp_path / "race.zarr"
    args = [sys.executable, "-m", "laimco_jax.cli", "sweep", "--spec", str(_spec_file(tmp_path)), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = sorted((p.communicate(timeout=120)[1], p.returncode)[::-1] for p in procs)
    assert [code for code, _ in results] == [0, 2]
    assert "being written by another sweep" in _one_line(results[1][1]) or "exists" in results[1][1]
    assert _complete(out) is True


# ----------------------------------------------------------------------------- 7: output formats


def test_nc_output_is_netcdf_equal_to_the_zarr_store(tmp_path, reference):
    out = tmp_path / "result.nc"
    assert sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK) == out
    assert not (tmp_path / "result.nc.zarr").exists()  # the work store is removed once converted
    with xr.open_dataset(out) as plain:  # any netCDF reader; decoded: -1 (none) reads as NaN
        assert plain.attrs["complete"] == 1 and plain.attrs["split_fields"] == " ".join(sweep.SPLIT_FIELDS)
        np.testing.assert_array_equal(plain.rho.values, reference.rho.values)
        np.testing.assert_array_equal(plain.best_split.fillna(-1).values, reference.best_split.values)
    xr.testing.assert_equal(sweep.open_sweep(out).load(), reference)
    assert sweep.stored_spec(out).to_json() == sweep.build_spec(**SPEC).to_json()
    assert sweep.run_sweep(sweep.build_spec(**SPEC), out, resume=True) == out  # finished: nothing to do


def test_nc_output_resumes_from_its_work_store(tmp_path, reference):
    out = tmp_path / "r.nc"
    with pytest.raises(sweep.Interrupted, match=f"written to {out}.zarr; resume with: laimco sweep --resume --out {out}$"):
        sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK, on_chunk=_stop_after(1))
    assert not out.exists()
    run_sweep_from_cli(out=out, resume=True, progress=False)
    xr.testing.assert_equal(sweep.open_sweep(out).load(), reference)


@pytest.mark.parametrize("name", ["result.txt", "result", "result.zarr.bak"])
def test_other_output_suffixes_are_refused(cli, tmp_path, name):
    code, _, err = cli("sweep", "--grid", "delay_s=0.1,0.2", "--out", tmp_path / name)
    assert code == 2 and "allowed: .zarr" in _one_line(err) and ".nc" in err and name in err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- 8: size


def test_sweep_that_does_not_fit_is_refused_unless_forced(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=1000))
    out = tmp_path / "big.zarr"
    code, _, err = cli("sweep", "--spec", _spec_file(tmp_path), "--chunk-size", CHUNK,
                           "--out", out)
    assert code == 2 and "needs up to" in _one_line(err) and "1e-06 GB free" in err and "--force" in err
    assert not out.exists() and not (tmp_path / "big.zarr.lock").exists()
    code, _, err = cli("sweep", "--spec", _spec_file(tmp_path), "--chunk-size", CHUNK,
                           "--out", out, "--force")
    assert code == 0 and _complete(out) is True


def test_size_estimate_bounds_the_store_and_counts_only_chunks_left(tmp_path, monkeypatch):
    spec = sweep.build_spec(**SPEC)
    out = tmp_path / "size.zarr"
    sweep.run_sweep(spec, out, chunk_size=CHUNK)
    layout = sweep.chunk_layout(spec.shape, CHUNK // 2)
    sizes = sweep.store.variable_bytes(spec, layout, np.float64)
    per_chunk = sum(chunk for chunk, _ in sizes.values())
    stored = sum(f.stat().st_size for name in sizes for f in (out / name).iterdir() if f.name[0].isdigit())
    assert 0 < stored <= NUM_CHUNKS * per_chunk
    monkeypatch.setattr(sweep.store, "_free_bytes", lambda path: (path, 0))
    for left in (NUM_CHUNKS, 1):
        with pytest.raises(ConfigError, match=f"needs up to {left * per_chunk / 1e9:.3g} GB .* {left} chunks to write"):
            sweep.store.check_size(out, spec, layout, np.float64, left)


def test_netcdf_over_its_variable_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep.driver, "_compute", lambda *args, **kwargs: pytest.fail("a 9e8-instance sweep started"))
    spec = sweep.build_spec(grid={"delay_s": "0.1:0.6:30000", "energy_j": "0.004:0.03:30000"})
    with pytest.raises(ConfigError, match="over netCDF-3's 4 GiB per variable; use a .zarr output"):
        sweep.run_sweep(spec, tmp_path / "huge.nc")
    assert list(tmp_path.iterdir()) == []


def test_ten_million_value_axis_keeps_the_spec_json_small():
    spec = sweep.build_spec(grid={"delay_s": "0.1:0.6:10000000", "bandwidth_hz": "1e6:1e8:3:log",
                                  "energy_j": "0.004,0.01,0.03"})
    text = spec.to_json()
    assert len(text) < 2000
    back = sweep.SweepSpec.from_json(text)
    for axis, again in zip(spec.axes, back.axes):
        np.testing.assert_array_equal(again.values[axis.dim], axis.values[axis.dim])
    assert back.to_json() == text


# ----------------------------------------------------------------------------- 9, 10: bad input, failing disks


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--chunk-size", "0"], ["--chunk-size", "= 0", ">= 1"]),
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--chunk-size", "-3"], ["--chunk-size", "= -3", ">= 1"]),
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--grid", "delay_s=0.3"], ["--grid 'delay_s=0.3'", "once"]),
        (lambda p: ["--spec", p], ["spec file", "directory"]),
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--points", p], ["points file", "Is a directory", "CSV"]),
        (lambda p: ["--spec", _write(p / "g.toml", "grid = 5\n")], ["g.toml", "grid = 5", "a table"]),
        (lambda p: ["--spec", _write(p / "o.toml", 'out = 5\n[grid]\ndelay_s = "0.1,0.2"\n')], ["out = 5", ".zarr"]),
        (lambda p: ["--spec", _write(p / "c.toml", "chunk_size = true\n")], ["chunk_size = True", "integer >= 1"]),
        (lambda p: ["--grid", "delay_s=0.1", "--points", _write(p / "d.csv", "distance_m,distance_m\n1,2\n")],
         ["d.csv", "repeats a field"]),
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--out", "/proc/s.zarr"], ["--out '/proc/s.zarr'", "cannot write"]),
        (lambda p: ["--grid", "delay_s=0.1,0.2", "--set", "budget.delay_s=0.3"], ["--set budget.delay_s", "also swept"]),
    ],
)
def test_bad_sweep_input_is_one_line_exit_2(cli, tmp_path, monkeypatch, make_args, expected):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("sweep", *make_args(tmp_path))
    line = _one_line(err)
    assert code == 2 and all(part in line for part in expected), line


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fail_writes_of(variable: str, code: int, monkeypatch) -> None:
    """Zarr writes of ``variable``'s chunks fail with OSError ``code`` (a full disk, a read-only mount)."""
    put = zarr.storage._local._put

    def failing(path, *args, **kwargs):
        if path.parent.name == variable and path.name[0].isdigit():  # a chunk, not metadata
            raise OSError(code, os.strerror(code), str(path))
        return put(path, *args, **kwargs)

    monkeypatch.setattr(zarr.storage._local, "_put", failing)


def test_full_disk_while_writing_is_one_line_and_resumable(cli, tmp_path, monkeypatch, reference):
    out = tmp_path / "full.zarr"
    with monkeypatch.context() as patch:
        _fail_writes_of("rho", errno.ENOSPC, patch)
        code, _, err = cli("sweep", "--spec", _spec_file(tmp_path), "--chunk-size", CHUNK,
                               "--out", out)
    assert code == 2
    assert "No space left on device" in _one_line(err) and f"{out}/rho" in err
    assert f"0 of {NUM_CHUNKS} chunks written" in err and f"resume with: laimco sweep --resume --out {out}" in err
    code, _, err = cli("sweep", "--resume", "--out", out)
    assert code == 0
    xr.testing.assert_identical(sweep.open_sweep(out).load(), reference)


def test_read_only_directory_and_read_only_resume_are_one_line(cli, tmp_path, monkeypatch):
    out = tmp_path / "ro.zarr"
    with pytest.raises(sweep.Interrupted):
        sweep.run_sweep(sweep.build_spec(**SPEC), out, chunk_size=CHUNK, on_chunk=_stop_after(1))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    spec_file = _spec_file(tmp_path)
    monkeypatch.setattr(Path, "write_text", read_only)  # the lock file is the first thing written
    for args in (["--spec", spec_file, "--out", tmp_path / "new.zarr"], ["--resume", "--out", out]):
        code, _, err = cli("sweep", *args)
        assert code == 2 and "Read-only file system" in _one_line(err) and str(args[-1]) in err


def test_cli_process_exits_at_once_after_a_sweep_with_its_output_and_phases(tmp_path):
    """`laimco sweep` as a process ends with os._exit once the sweep is written (no interpreter
    teardown): its output is flushed, the store complete, and the phase stamps asked for by
    LAIMCO_SWEEP_PHASES written (benchmarks/bench_sweep.py reads them)."""
    out, phases = tmp_path / "q.zarr", tmp_path / "phases.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAIMCO_SWEEP_PHASES": str(phases)}
    done = subprocess.run([sys.executable, "-m", "laimco_jax.cli", "sweep", "--grid", "delay_s=0.2,0.3",
                           "--grid", "energy_j=0.01,0.02", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "".join(f"sweep written to {out}".split()) in "".join(done.stdout.split())  # rich may wrap the path
    assert _complete(out) is True
    names = [name for name, _ in json.loads(phases.read_text())]
    assert names[0] == "imports" and names[-1] == "sweep done"
    assert {"spec", "evaluator", "store created", "compiled", "chunk written", "store finished"} <= set(names)


def test_unwritable_phase_stamp_file_is_a_one_line_warning(tmp_path):
    """LAIMCO_SWEEP_PHASES naming a file that cannot be written: the sweep is written and exits 0, with
    one warning line naming the variable, the path and the reason (no traceback)."""
    out, phases = tmp_path / "q.zarr", tmp_path / "missing" / "phases.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAIMCO_SWEEP_PHASES": str(phases)}
    done = subprocess.run([sys.executable, "-m", "laimco_jax.cli", "sweep", "--grid", "delay_s=0.2,0.3",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert _complete(out) is True and "Traceback" not in done.stderr
    warning = [line for line in done.stderr.splitlines() if "LAIMCO_SWEEP_PHASES" in line]
    assert len(warning) == 1 and str(phases) in warning[0] and "No such file or directory" in warning[0]
