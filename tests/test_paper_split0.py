"""Split 0 uploads the raw input (issue 13, item 1): it is the on-server scheme for any ``input_bits``.

The reference is ``solve_exact(problem, "on-server")`` of the same problem, whose re-split model
(``solvers.schemes.scheme_problem``) uploads ``input_bits`` independently of the split handling tested
here. (At another split the on-server re-split sums the two measured halves, whose FLOPs differ from
the measured whole model by 2e-5 relative, so only the split-0 problem is an exact reference.)
"""

import numpy as np
import pytest
import xarray as xr

from laimco_jax import make_problem
from laimco_jax.params import ConfigError
from laimco_jax.solvers import Status, solve_exact

#: Token ids (4,096 bits), an fp16 embedding-sized input (1,572,864) and three times an 8-bit one.
INPUT_BITS = (4096.0, 1572864.0, 3145728.0)
DELAYS = (0.1, 0.2, 0.35, 0.8)


def _same_optimum(a, b):
    assert np.array_equal(np.asarray(a.status), np.asarray(b.status))
    found = np.asarray(a.status) == int(Status.OPTIMAL)
    np.testing.assert_allclose(np.asarray(a.log10_distortion_bound)[found],
                               np.asarray(b.log10_distortion_bound)[found], rtol=0, atol=1e-9)


@pytest.mark.parametrize("model", ["bert-base", "bart-base"])
@pytest.mark.parametrize("input_bits", INPUT_BITS)
def test_split_zero_is_on_server_for_any_input_bits(model, input_bits):
    for delay in DELAYS:
        sets = {"input_bits": input_bits, "delay_s": delay}
        at_zero = make_problem("paper", model, split=0, overrides=sets)
        assert float(at_zero.model.embedding_bits) == input_bits
        _same_optimum(solve_exact(at_zero), solve_exact(at_zero, "on-server"))


def test_a_heavy_raw_input_makes_split_zero_infeasible_where_token_ids_are_not():
    """The issue's case: 3,145,728 bits at T0 = 0.35 s is infeasible on-server; 4,096 bits is not."""
    light = solve_exact(make_problem("paper", "bert-base", split=0))
    heavy = solve_exact(make_problem("paper", "bert-base", split=0, overrides={"input_bits": 3145728}))
    assert int(light.status) == int(Status.OPTIMAL) and int(heavy.status) == int(Status.INFEASIBLE)


def test_embedding_bits_at_split_zero_is_refused():
    with pytest.raises(ConfigError, match="at split 0 the upload is the raw input; set input_bits"):
        make_problem("paper", "bert-base", split=0, overrides={"model.embedding_bits": 1.0})
    assert float(make_problem("paper", "bert-base", split=3, overrides={"embedding_bits": 1.0}).model.embedding_bits) == 1


def test_sweep_split_zero_follows_input_bits(tmp_path, cli):
    """``laimco sweep --split 0 --scheme proposed,on-server --set input_bits=...`` gives one answer per point."""
    out = tmp_path / "split0.zarr"
    code, _, err = cli("sweep", "--model", "bert-base", "--split", "0,4",
                           "--scheme", "proposed,on-server", "--set", "input_bits=3145728",
                           "--grid", "delay_s=0.1:0.8:8", "--out", out)
    assert code == 0, err
    data = xr.open_zarr(out).load()
    at_zero = data.sel(split=0)
    status = at_zero.status.sel(scheme="proposed").values
    np.testing.assert_array_equal(status, at_zero.status.sel(scheme="on-server").values)
    assert (status == int(Status.INFEASIBLE)).sum() > 0  # the heavy input does cost something at split 0
    found = status == int(Status.OPTIMAL)
    np.testing.assert_allclose(at_zero.log10_distortion_bound.sel(scheme="proposed").values[found],
                               at_zero.log10_distortion_bound.sel(scheme="on-server").values[found], atol=1e-9)


def test_sweep_split_zero_follows_a_swept_input_bits(tmp_path, cli):
    """``input_bits`` on a grid axis reaches split 0 too (the fig6_assumptions sweep)."""
    out = tmp_path / "swept.zarr"
    code, _, err = cli("sweep", "--model", "bert-base", "--split", "0",
                           "--scheme", "proposed", "--grid", "input_bits=4096,3145728", "--out", out)
    assert code == 0, err
    status = xr.open_zarr(out).status.load().sel(scheme="proposed", split=0).values
    assert list(status) == [int(Status.OPTIMAL), int(Status.INFEASIBLE)]
