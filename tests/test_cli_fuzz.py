"""Fuzzing the `laimco` command line with malformed configurations and arguments (issue 12).

Every generated input is invalid by construction, for reasons the test knows without asking the
library (a string where a number goes, an unknown name, a non-finite or non-positive physical
quantity, ...), unless it is built valid on purpose; invalid input must exit 2 with exactly one
stderr line and no traceback, valid input must exit 0.
"""

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from laimco_jax.params import FIELD_SECTION, MODEL_PRESETS, SYSTEM_PRESETS, preset_dict

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Physical quantities that are positive whatever the validation's range table says.
POSITIVE = ("bandwidth_hz", "noise_psd_w_per_hz", "p_max_w", "f_max_device_hz", "f_max_server_hz",
            "flops_per_cycle_device", "flops_per_cycle_server", "pue_device", "pue_server",
            "bits_per_weight", "delay_s", "energy_j")
#: An operating point inside every configuration the valid examples build (each field at least half the preset).
SYSTEM_POINT = ("--rho", "0.5", "--f-device", "1e8", "--p-watt", "0.1", "--rho-server", "0.5", "--f-server", "1e8")
COMMANDS = {"config": (), "system": SYSTEM_POINT, "solve": ()}

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
unknown_fields = names.filter(lambda n: n not in FIELD_SECTION)
strings = st.text(max_size=8).map(lambda s: '"' + s.encode("unicode_escape").decode().replace('"', r"\"") + '"')
#: TOML literals that are never a valid value of any field.
bad_literals = st.one_of(
    strings,
    st.sampled_from(["true", "false", "nan", "+nan", "inf", "-inf", "1e400", "-1e400", str(10**400),
                     "1979-05-27", "{ a = 1 }", "{}", "[]", "[1.0, 2.0]", "[[1.0], [2.0]]", '["a"]', "[true]"]),
    st.lists(st.floats(0.5, 2.0), min_size=2, max_size=4).map(lambda xs: "[" + ", ".join(map(repr, xs)) + "]"),
)
#: Text that is not a finite number to Python's float(), as --set values and option values.
non_numbers = st.one_of(
    st.sampled_from(["abc", "true", "1,2", "[1]", "1e3x", "0x10", "nan", "inf", "-inf", "1e400", "None", "½"]),
    st.text(min_size=1, max_size=6),
).filter(lambda t: not _finite_float(t))


def _finite_float(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def base_config():
    """The preset configuration as ``{section: {field: TOML literal}}``."""
    return {section: {name: repr(float(value)) for name, value in fields.items()}
            for section, fields in preset_dict().items()}


def toml_text(sections, top=""):
    """TOML text of ``{section: {field: literal}}``, with ``top`` (bare keys) before the first table."""
    body = "".join(f"[{section}]\n" + "".join(f"{name} = {value}\n" for name, value in fields.items())
                   for section, fields in sections.items())
    return top + body


def _put(sections, section, name, literal):
    sections.setdefault(section, {})[name] = literal
    return ""


@st.composite
def mutations(draw):
    """One change to a configuration: ``(apply(sections) -> top-level text, is_valid)``."""
    kind = draw(st.sampled_from(["bad value", "non-positive", "unknown field", "unknown section", "not a table",
                                 "missing field", "nested table", "scaled"]))
    section = draw(st.sampled_from(["system", "model", "budget"]))
    field = draw(st.sampled_from(sorted(base_config()[section])))
    if kind == "bad value":
        literal = draw(bad_literals)
        return (lambda s: _put(s, section, field, literal)), False
    if kind == "non-positive":
        name = draw(st.sampled_from(POSITIVE))
        literal = draw(st.sampled_from(["0", "0.0", "-0.0", "-1", "-1e-30", "-5e6"]))
        return (lambda s: _put(s, FIELD_SECTION[name], name, literal)), False
    if kind == "unknown field":
        name, literal = draw(unknown_fields), draw(st.sampled_from(["1.0", '"x"', "true"]))
        return (lambda s: _put(s, section, name, literal)), False
    if kind == "unknown section":
        name = draw(names.filter(lambda n: n not in ("system", "model", "budget")))
        return (lambda s: _put(s, name, "x", "1.0")), False
    if kind == "not a table":
        literal = draw(st.one_of(bad_literals, st.sampled_from(["5", "0.3"])))
        return (lambda s: s.pop(section, None) and f"{section} = {literal}\n"), False
    if kind == "missing field":
        required = [f for f in base_config()[section] if f not in ("input_bits",)]
        name = draw(st.sampled_from(required))
        return (lambda s: s.get(section, {}).pop(name, None) and ""), False
    if kind == "nested table":
        return (lambda s: _put(s, f"{section}.{field}", "a", "1.0")), False
    factor = draw(st.floats(0.5, 2.0))  # "scaled": a field of a positive magnitude within a factor 2 of the preset
    name = draw(st.sampled_from([n for n in POSITIVE if n != "bits_per_weight"]))
    value = {**SYSTEM_PRESETS["paper"], **MODEL_PRESETS["bert-base"], "delay_s": 0.35, "energy_j": 0.015}[name]
    scaled = max(value * factor, value) if name.startswith(("f_max", "p_max")) else value * factor
    return (lambda s: _put(s, FIELD_SECTION[name], name, repr(scaled))), True


def assert_outcome(code, err, valid):
    if valid:
        assert code == 0, err
    else:
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


@FUZZ
@given(changes=st.lists(mutations(), min_size=1, max_size=3), command=st.sampled_from(["config", "config", "system", "solve"]))
def test_fuzzed_config_files(cli, tmp_path, changes, command):
    sections = base_config()
    changes = sorted(changes, key=lambda change: not change[1])  # valid first: an invalid change is never undone
    top = "".join(apply(sections) or "" for apply, _ in changes)
    path = tmp_path / "fuzz.toml"
    path.write_text(toml_text(sections, top))
    code, _, err = cli(command, *COMMANDS[command], "--config", path)
    assert_outcome(code, err, all(valid for _, valid in changes))


@FUZZ
@given(content=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)))
def test_fuzzed_garbage_files(cli, tmp_path, content):
    path = tmp_path / "garbage.toml"
    path.write_bytes(content)  # never all the required fields
    code, _, err = cli("config", "--config", path)
    assert_outcome(code, err, valid=False)


@st.composite
def bad_sets(draw):
    """A malformed ``--set`` item: unknown key, wrong section, no '=', empty parts, non-number, non-positive."""
    kind = draw(st.sampled_from(["unknown", "section", "no equals", "empty", "non-number", "non-positive"]))
    field = draw(st.sampled_from(sorted(FIELD_SECTION)))
    if kind == "unknown":
        return f"{draw(st.sampled_from(['', 'system.', 'budget.']))}{draw(unknown_fields)}=1"
    if kind == "section":
        other = draw(st.sampled_from(["system", "model", "budget", "sys", "x.y"]).filter(lambda s: s != FIELD_SECTION[field]))
        return f"{other}.{field}=1"
    if kind == "no equals":
        return field
    if kind == "empty":
        return draw(st.sampled_from([f"{field}=", "=1", "=", " = "]))
    if kind == "non-number":
        return f"{field}={draw(non_numbers)}"
    return f"{draw(st.sampled_from(POSITIVE))}={draw(st.sampled_from(['0', '-1', '-0.0', '-1e300']))}"


#: Options of `system` with a value outside their range (or not a number at all).
BAD_SYSTEM_VALUES = {
    "--rho": ["1.5", "-0.1", "nan"], "--rho-server": ["2", "-1", "inf"], "--f-device": ["-1", "inf", "1e30"],
    "--p-watt": ["-0.5", "10", "nan"], "--f-server": ["-4e9", "1e30", "-inf"],
}


@st.composite
def bad_arguments(draw):
    """A command line with one malformed part."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    args = [command, *COMMANDS[command]]
    kind = draw(st.sampled_from(["set", "option", "preset", "extra", "system value"]))
    if kind == "set":
        return args + ["--set", draw(bad_sets())]
    if kind == "option":
        return args + ["--" + draw(names.map(lambda n: n.replace("_", "-")).filter(lambda n: n not in _options(command) | {"help"}))]
    if kind == "preset":
        option = draw(st.sampled_from(["--preset", "--model"]))
        return args + [option, draw(names.filter(lambda n: n not in ("paper", "bert-base", "bart-base")))]
    if kind == "extra":
        return args + [draw(names)]
    option = draw(st.sampled_from(sorted(BAD_SYSTEM_VALUES)))
    value = draw(st.one_of(st.sampled_from(BAD_SYSTEM_VALUES[option]), non_numbers.filter(lambda t: not t.startswith("-"))))
    return ["system", *SYSTEM_POINT, option, value]


def _options(command):
    import typer

    from laimco_jax.cli import app

    return {opt[2:] for p in typer.main.get_command(app).commands[command].params for opt in p.opts}


@FUZZ
@given(args=bad_arguments())
def test_fuzzed_arguments(cli, args):
    code, _, err = cli(*args)
    assert_outcome(code, err, valid=False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unfuzzed_commands_are_valid(cli, command):
    """The base of every fuzzed input is valid: each failure above comes from its one change."""
    code, _, err = cli(command, *COMMANDS[command])
    assert_outcome(code, err, valid=True)
