"""The `laimco` command line: outputs, JSON keys and exit statuses (run in-process)."""

import json

import mpmath
import pytest

from laimco_jax import make_problem



def test_config_prints_toml_that_loads_back(cli, tmp_path):
    code, out, _ = cli("config", "--preset", "paper", "--model", "bert-base", "--set", "budget.delay_s=0.4")
    assert code == 0 and "[system]" in out and "delay_s = 0.4" in out
    path = tmp_path / "c.toml"
    path.write_text(out)
    code, out2, _ = cli("config", "--config", str(path))
    assert code == 0 and out2 == out


def test_system_json_matches_the_formulas(cli):
    code, out, _ = cli("system", "--rho", "1", "--f-device", "1e9", "--p-watt", "0.5",
                       "--rho-server", "1", "--f-server", "4e9", "--json")
    record = json.loads(out)
    assert code == 0
    assert record["rate_bps"] == pytest.approx(19.468e6, rel=1e-4)
    flops_device = make_problem().model.flops_device  # N_FLOP of the preset [FLOPs]
    assert record["device_delay_s"] == pytest.approx(flops_device / (1e9 * 32), rel=1e-12)
    assert record["delay_s"] == pytest.approx(record["device_delay_s"] + record["upload_delay_s"] + record["server_delay_s"])
    assert {"energy_j", "upload_energy_j", "server_energy_j", "device_energy_j"} <= set(record)


def test_bound_json(cli):
    code, out, _ = cli("bound", "--params-device", "100", "--params-server", "200", "--rho", "0.5",
                       "--rho-server", "1", "--bits-per-weight", "8", "--entropy-bits", "-100", "--json")
    record = json.loads(out)
    assert code == 0 and record["retained_params"] == 250.0
    # eq. (41) in mpmath: n = q + s = 300 weights, R = 250 x 8 bits, h = -100 bits
    n, rate, h = mpmath.mpf(300), mpmath.mpf(2000), mpmath.mpf(-100)
    log2_d = (mpmath.log(n / (mpmath.sqrt(mpmath.pi) * mpmath.e), 2) - (rate - h) / n
              + mpmath.log(mpmath.gamma(n / 2) / (2 * mpmath.gamma(n)), 2) / n)
    assert record["log2_distortion_bound"] == pytest.approx(float(log2_d), rel=1e-12)
    assert record["log10_distortion_bound"] == pytest.approx(float(log2_d * mpmath.log10(2)), rel=1e-12)
    assert record["distortion_bound"] == pytest.approx(float(mpmath.power(2, log2_d)), rel=1e-12)


def test_solve_json_keys_and_statuses(cli):
    code, out, _ = cli("solve", "--preset", "paper", "--model", "bert-base", "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "optimal"
    for key in ("status", "rho", "rho_server", "f_device_hz", "p_w", "f_server_hz", "delay_s", "energy_j",
                "log2_distortion_bound", "certificate", "method", "scheme"):
        assert key in record
    assert record["p_watt"] == record["p_w"] > 0  # the deprecated alias (cli.DEPRECATED_JSON_KEYS)
    assert record["delay_s"] <= 0.35 * (1 + 1e-9) and record["energy_j"] <= 0.015 * (1 + 1e-9)
    code, out, _ = cli("solve", "--set", "delay_s=0.001", "--json")
    assert code == 0 and json.loads(out)["status"] == "infeasible"


@pytest.mark.parametrize("args, fragment", [
    (("system", "--rho", "1.5", "--f-device", "1e9", "--p-watt", "0.5", "--rho-server", "1", "--f-server", "4e9"), "--rho = 1.5"),
    (("system", "--rho", "1", "--f-device", "2e9", "--p-watt", "0.5", "--rho-server", "1", "--f-server", "4e9"), "--f-device = 2000000000.0"),
    (("system", "--rho", "1"), "Missing option"),
    (("bound", "--params-device", "-1", "--params-server", "2", "--rho", "1", "--rho-server", "1",
      "--bits-per-weight", "8", "--entropy-bits", "0"), "--params-device = -1.0"),
    (("solve", "--set", "budget.energy_j=-1"), "budget.energy_j = -1.0"),
    (("solve", "--set", "energy_j"), "expected KEY=VALUE"),
    (("solve", "--scheme", "magic"), "scheme = 'magic'"),
    (("solve", "--method", "guess"), "--method = 'guess'"),
    (("config", "--model", "gpt-9"), "unknown model preset 'gpt-9'"),
    (("config", "--config", "/nonexistent.toml"), "no such file"),
    (("sweep", "--grid", "delay_s=0.1:0.6:x", "--out", "unused.zarr"), "NUM = 'x' must be an integer"),
    (("sweep", "--grid", "warp_factor=1:2:3", "--out", "unused.zarr"), "warp_factor"),
    (("profile", "--model", "nope"), "model='nope' is neither a preset nor a checkpoint directory"),
    (("profile", "--splits", "a"), "--splits = 'a'"),
    (("sensitivity", "--scheme", "magic"), "scheme = 'magic'"),
])
def test_bad_input_exits_2_with_one_line(cli, args, fragment):
    code, out, err = cli(*args)
    assert code == 2
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_sensitivity_json_ranks_elasticities(cli):
    import math

    import jax.numpy as jnp

    from laimco_jax import make_problem
    from laimco_jax.sensitivity import sensitivities

    code, out, _ = cli("sensitivity", "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "optimal" and record["scheme"] == "proposed"
    rows = record["elasticities"]
    magnitudes = [abs(r["elasticity_distortion_bound"]) for r in rows]
    assert magnitudes == sorted(magnitudes, reverse=True) and len(rows) == 25
    by_field = {r["field"]: r for r in rows}
    grads = sensitivities(make_problem().astype(jnp.float64))
    expected = math.log(2) * 0.35 * float(grads["log2_distortion_bound"].budget.delay_s)
    assert by_field["budget.delay_s"]["elasticity_distortion_bound"] == pytest.approx(expected, rel=1e-9)
    assert expected < 0  # more time, less distortion
