"""Reliability of the `laimco` command line (issue 12): configuration errors, presets with --config,
strict JSON, help texts that keep their square brackets, and exit statuses 0/1/2/130."""

import json
import math
import re

import pytest
import typer

from laimco_jax import Budget, ConfigError, ModelProfile, SystemParams, make_problem
from laimco_jax.params import MODEL_PRESETS, SYSTEM_PRESETS, validate_fraction


def one_line_error(code, err, *fragments):
    """Exit 2 with exactly one stderr line holding every fragment, and no traceback."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.fixture
def config_file(tmp_path, cli):
    """A valid TOML config (the paper preset) and a writer of variants with one line replaced."""
    code, text, _ = cli("config")
    assert code == 0

    def write(old_prefix=None, new_line=None, name="c.toml"):
        lines = text.splitlines()
        if old_prefix is not None:
            lines = [new_line if line.startswith(old_prefix) else line for line in lines]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


# ----------------------------------------------------------------------------- item 9: config errors


def test_config_that_is_a_directory_is_one_line_error(cli, tmp_path):
    code, _, err = cli("config", "--config", tmp_path)
    one_line_error(code, err, repr(str(tmp_path)), "is a directory")


def test_section_that_is_not_a_table(cli, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("system = 5\n")
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, str(path), "[system]", "5", "table")


@pytest.mark.parametrize("command", [("config",), ("solve",)])
def test_toml_array_is_refused_by_every_command(cli, config_file, command):
    path = config_file("bandwidth_hz = ", "bandwidth_hz = [1e6, 2e6]")
    code, _, err = cli(*command, "--config", path)
    one_line_error(code, err, str(path), "system.bandwidth_hz", "[1000000.0, 2000000.0]", "single number",
                   SystemParams._RULES["bandwidth_hz"].text())


def test_toml_boolean_is_refused(cli, config_file):
    path = config_file("delay_s = ", "delay_s = true")
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, str(path), "budget.delay_s = True (bool)", Budget._RULES["delay_s"].text())


def test_set_boolean_is_refused(cli):
    code, _, err = cli("config", "--set", "delay_s=true")
    one_line_error(code, err, "delay_s", "'true'", "number")


@pytest.mark.parametrize("build", [
    lambda: Budget(delay_s=True, energy_j=0.01),
    lambda: Budget(delay_s=0.3, energy_j="0.01"),
    lambda: ModelProfile(**{**MODEL_PRESETS["bert-base"], "bits_per_weight": False}),
    lambda: SystemParams(**{**SYSTEM_PRESETS["paper"], "pue_server": [True, 2.0]}),
    lambda: make_problem(overrides={"budget.energy_j": True}),
    lambda: validate_fraction("rho", True),
    lambda: validate_fraction("rho", "half"),
])
def test_python_api_refuses_booleans_and_strings(build):
    with pytest.raises(ConfigError, match="expected a real number"):
        build()


def test_python_api_message_names_field_value_and_range():
    with pytest.raises(ConfigError) as info:
        Budget(delay_s=True, energy_j=0.01)
    assert str(info.value) == f"budget.delay_s = True (bool): expected a real number in {Budget._RULES['delay_s'].text()}"


@pytest.mark.parametrize("content", [b"\xff\xfe[system]\n", b"[system\n", b"delay_s = = 1\n"])
def test_undecodable_or_invalid_toml_names_the_file(cli, tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, repr(str(path)))


def test_undecodable_toml_says_utf8(cli, tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[system]\nbandwidth_hz = 5e6 # \xb5\n".encode("latin-1"))
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, str(path), "UTF-8")


def test_unknown_section_and_field_are_named_with_the_allowed_ones(cli, config_file):
    path = config_file("[budget]", "[budgets]")
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, str(path), "budgets", "allowed: system, model, budget")
    path = config_file("delay_s = ", "delay = 0.3")
    code, _, err = cli("config", "--config", path)
    one_line_error(code, err, str(path), "delay", "[budget]", "allowed: delay_s, energy_j")


# ----------------------------------------------------------------------------- item 10: presets and --config


def test_unknown_preset_with_config_is_an_error(cli, config_file):
    path = config_file()
    code, _, err = cli("config", "--config", path, "--preset", "foo")
    one_line_error(code, err, "unknown system preset 'foo'", "allowed: paper")
    code, _, err = cli("config", "--config", path, "--model", "gpt-9")
    one_line_error(code, err, "unknown model preset 'gpt-9'", "allowed: " + ", ".join(sorted(MODEL_PRESETS)))


def test_api_validates_preset_names_even_with_config(config_file):
    with pytest.raises(ConfigError, match="unknown system preset 'foo'"):
        make_problem("foo", config=config_file())


EVALUATE = ("evaluate", "--task", "squad", "--checkpoint", "ckpt", "--data", "d.json", "--split", "4", "--solve")


@pytest.mark.parametrize("command", [("config",), ("solve",), ("sensitivity",), EVALUATE,
                                     ("system", "--rho", "1", "--f-device", "1e9", "--p-watt", "0.5",
                                      "--rho-server", "1", "--f-server", "4e9")])
@pytest.mark.parametrize("option", [("--preset", "paper"), ("--model", "bart-base")])
def test_explicit_preset_or_model_with_config_is_refused(cli, config_file, command, option):
    code, _, err = cli(*command, "--config", config_file(), *option)
    one_line_error(code, err, f"{option[0]} {option[1]}", "--config", "replaces the presets")


# ----------------------------------------------------------------------------- item 12: strict JSON


def strict_json(text):
    """Parse JSON, raising on the non-standard NaN/Infinity/-Infinity tokens."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_bound_json_overflow_is_null_with_a_reason(cli):
    code, out, _ = cli("bound", "--params-device", "1e300", "--params-server", "1e300",
                       "--rho", "1", "--rho-server", "1", "--bits-per-weight", "1e300", "--entropy-bits", "1e300",
                       "--json")
    record = strict_json(out)
    assert code == 0 and record["model_bits"] is None
    assert record["nonfinite"]["model_bits"] == "inf"
    code, out, _ = cli("bound", "--params-device", "100", "--params-server", "200",
                       "--rho", "1", "--rho-server", "1", "--bits-per-weight", "1", "--entropy-bits", "1e6", "--json")
    record = strict_json(out)
    assert code == 0 and record["distortion_bound"] is None and record["log2_distortion_bound"] > 1024
    assert record["nonfinite"]["distortion_bound"].startswith("inf: ") and "float64" in record["nonfinite"]["distortion_bound"]


def test_system_json_with_zero_power_is_strict(cli):
    code, out, _ = cli("system", "--rho", "1", "--f-device", "1e9", "--p-watt", "0",
                       "--rho-server", "1", "--f-server", "4e9", "--json")
    record = strict_json(out)
    assert code == 0 and record["upload_delay_s"] is None and record["nonfinite"]["upload_delay_s"] == "inf"


def test_solve_json_strict_when_infeasible_and_nonfinite(cli, monkeypatch):
    from laimco_jax import cli as cli_module

    code, out, _ = cli("solve", "--set", "delay_s=0.001", "--json")
    assert code == 0 and strict_json(out)["status"] == "infeasible"
    original = cli_module.solution_record

    def poisoned(*args, **kwargs):
        return {**original(*args, **kwargs), "certificate": math.nan, "objective_history": [1.0, -math.inf]}

    monkeypatch.setattr(cli_module, "solution_record", poisoned)
    code, out, _ = cli("solve", "--method", "sca", "--json")
    record = strict_json(out)
    assert code == 0 and record["certificate"] is None and record["objective_history"] == [1.0, None]
    assert record["nonfinite"] == {"certificate": "nan", "objective_history[1]": "-inf"}


def test_sensitivity_json_strict(cli, monkeypatch):
    import jax

    from laimco_jax import sensitivity

    original = sensitivity.elasticities
    monkeypatch.setattr(sensitivity, "elasticities",
                        lambda *a: jax.tree_util.tree_map(lambda x: x * math.nan, original(*a)))
    code, out, _ = cli("sensitivity", "--json")
    record = strict_json(out)
    assert code == 0 and record["elasticities"][0]["elasticity_rho"] is None
    assert record["elasticities"][0]["nonfinite"]["elasticity_rho"] == "nan"


def test_profile_json_strict(cli, monkeypatch):
    from laimco_jax.models import profile

    monkeypatch.setattr(profile, "split_profiles", lambda *a, **k: [{"split": 0, "entropy_bits": math.inf}])
    code, out, _ = cli("profile", "--json")
    assert code == 0 and strict_json(out) == [{"split": 0, "entropy_bits": None, "nonfinite": {"entropy_bits": "inf"}}]


def test_evaluate_json_strict(cli, monkeypatch):
    import laimco_jax.tasks

    monkeypatch.setattr(laimco_jax.tasks, "evaluate_task", lambda *a, **k: {"exact_match": math.nan, "f1": 50.0})
    code, out, _ = cli("evaluate", "--task", "squad", "--checkpoint", "c", "--data", "d",
                       "--split", "2", "--rho", "1", "--rho-server", "1", "--json")
    assert code == 0 and strict_json(out) == {"exact_match": None, "f1": 50.0, "nonfinite": {"exact_match": "nan"}}


# ----------------------------------------------------------------------------- item 13: help keeps brackets


def _help_texts():
    """``(command name, help strings)`` of the app (name ``None``: its help, options, command summaries) and
    of every command (its docstring and options' help)."""
    import inspect

    from laimco_jax.cli import app

    root = typer.main.get_command(app)
    summaries = [inspect.getdoc(command.callback).splitlines()[0] for command in root.commands.values()]
    yield None, [root.help or ""] + [p.help or "" for p in root.params] + summaries
    for name, command in root.commands.items():
        yield name, [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]


@pytest.mark.parametrize("name, texts", list(_help_texts()), ids=lambda v: str(v) if not isinstance(v, list) else "")
def test_help_keeps_every_word(cli, name, texts):
    """Nothing is eaten by markup (rich: "[system]"; Markdown: "<model>") or cut short ("Fig." summaries)."""
    code, out, _ = cli(*([name] if name else []), "--help")
    assert code == 0

    def squeeze(text):  # wrapping (also at hyphens) only changes whitespace
        return re.sub(r"\s+", "", text)

    missing = [text for text in texts if squeeze(text) not in squeeze(out)]
    assert not missing, f"laimco {name or ''} --help lost part of {missing}"


def test_broken_pipe_is_not_an_internal_error():
    import subprocess
    import sys

    script = ("import sys; sys.argv = ['laimco', 'config']; from laimco_jax import cli; "
              "sys.stdout = open(sys.stdout.fileno(), 'w', buffering=1); cli.main()")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and err == ""


def test_solve_help_shows_the_toml_sections(cli):
    code, out, _ = cli("solve", "--help")
    assert code == 0 and "[system], [model], [budget]" in out


# ----------------------------------------------------------------------------- item 14: exit statuses


def _raise(exc):
    def raiser(*args, **kwargs):
        raise exc
    return raiser


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("boom"), KeyError("boom")])
def test_internal_error_exits_1_with_one_line(cli, monkeypatch, exc):
    from laimco_jax import cli as cli_module

    monkeypatch.delenv("LAIMCO_DEBUG", raising=False)
    monkeypatch.setattr(cli_module, "dump_toml", _raise(exc))
    code, _, err = cli("config")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"internal error: {type(exc).__name__}: ") and "boom" in err
    assert "--debug" in err and "LAIMCO_DEBUG=1" in err and "report" in err


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_prints_the_traceback(cli, monkeypatch, how):
    from laimco_jax import cli as cli_module

    monkeypatch.setattr(cli_module, "dump_toml", _raise(RuntimeError("boom")))
    if how == "env":
        monkeypatch.setenv("LAIMCO_DEBUG", "1")
        code, _, err = cli("config")
    else:
        monkeypatch.delenv("LAIMCO_DEBUG", raising=False)
        code, _, err = cli("--debug", "config")
    assert code == 1 and "Traceback" in err and "RuntimeError: boom" in err
    assert err.rstrip("\n").splitlines()[-1].startswith("internal error: RuntimeError: boom")


def test_config_error_subclass_exits_2(cli, monkeypatch):
    from laimco_jax import cli as cli_module

    class CheckpointLikeError(ConfigError):
        pass

    monkeypatch.setattr(cli_module, "dump_toml", _raise(CheckpointLikeError("bad checkpoint\nsecond line")))
    code, _, err = cli("config")
    one_line_error(code, err, "bad checkpoint second line")


def test_usage_errors_exit_2(cli):
    code, _, err = cli("solve", "--no-such-option")
    one_line_error(code, err, "--no-such-option")
    code, _, err = cli("no-such-command")
    one_line_error(code, err, "no-such-command")


class MessageInterrupt(KeyboardInterrupt):
    def __init__(self, message):
        super().__init__()
        self.message = message


@pytest.mark.parametrize("exc, line", [
    (KeyboardInterrupt(), "interrupted"),
    (KeyboardInterrupt("interrupted: 12 of 40 chunks written; resume with --resume"),
     "interrupted: 12 of 40 chunks written; resume with --resume"),
    (MessageInterrupt("interrupted: chunk 3"), "interrupted: chunk 3"),
])
def test_keyboard_interrupt_exits_130(cli, monkeypatch, exc, line):
    from laimco_jax import cli as cli_module

    monkeypatch.setattr(cli_module, "dump_toml", _raise(exc))
    code, _, err = cli("config")
    assert code == 130 and err == line + "\n"


def test_success_exits_0_and_help_works(cli):
    code, out, err = cli("config")
    assert code == 0 and "[budget]" in out and err == ""
    code, out, _ = cli("--help")
    assert code == 0 and "--debug" in out and "solve" in out


def test_reference_user_input_errors_are_config_errors():
    import jax.numpy as jnp

    from laimco_jax import reference

    batch = make_problem(overrides={"delay_s": jnp.array([0.3, 0.4])})
    with pytest.raises(ConfigError, match="one scalar problem"):
        reference.solve_cvxpy_exact(batch)
    with pytest.raises(ConfigError, match="SCA start"):
        reference.solve_cvxpy_sca(make_problem(), start=(0.0, 1e9, 0.5, 1.0, 4e9))


@pytest.mark.parametrize("sets", [["delay_s=1", "delay_s=2"], ["budget.delay_s=1", "delay_s=1"]])
def test_repeated_set_of_one_field_is_an_error(cli, sets):
    code, _, err = cli("config", *[a for s in sets for a in ("--set", s)])
    assert code == 2 and "delay_s is already set" in err and len(err.strip().splitlines()) == 1


def test_missing_optional_dependency_is_exit_2_naming_the_extra(cli, monkeypatch):
    """`--method cvxpy-exact` without the baseline extra: one line naming the extra, not an internal error."""
    import builtins

    real_import = builtins.__import__

    def no_cvxpy(name, *args, **kwargs):
        if name == "cvxpy" or name.startswith("cvxpy."):
            raise ImportError("No module named 'cvxpy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cvxpy)
    code, _, err = cli("solve", "--method", "cvxpy-exact")
    assert code == 2 and "laimco_jax[baseline]" in err and len(err.strip().splitlines()) == 1
