"""System model eqs. (1)-(11) against hand-written NumPy at the paper's Section VI values."""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from laimco_jax import OperatingPoint, evaluate, make_problem
from laimco_jax.system import channel_gain, rate_bps


def numpy_terms(rho, f, p, rho_s, f_s):
    """Eqs. (2), (4)-(11) written out with the paper's numbers (BERT-base preset's workloads, split 4 of 12)."""
    B, N0, g = 5e6, 2e-19, 10 ** (-30 / 10) * (500.0 / 1.0) ** -2.8
    model = make_problem("paper", "bert-base").model
    N, Ns, theta = model.flops_device, model.flops_server, 128 * 768 * 8
    r = B * np.log2(1 + g * p / (B * N0))
    t_i, e_i = rho * N / (f * 32), 1.0 * rho * N / 32 * 5e-29 * f**2
    t_u, e_u = theta / r, p * theta / r
    t_s, e_s = rho_s * Ns / (f_s * 128), 2.0 * rho_s * Ns / 128 * 1e-28 * f_s**2
    return dict(rate_bps=r, device_delay_s=t_i, device_energy_j=e_i, upload_delay_s=t_u, upload_energy_j=e_u,
                server_delay_s=t_s, server_energy_j=e_s, delay_s=t_i + t_u + t_s, energy_j=e_i + e_u + e_s)


def test_path_loss_gain_matches_mpmath_across_its_ranges():
    """g = K0 (d/d0)^-α (Section VI) to 1e-13 relative over K0 in [-300, 60] dB, d/d0 in [1e-3, 1e6],
    α in (0, 10] and g in the allowed [1e-30, 1e6], against mpmath at 50 digits."""
    rng = np.random.default_rng(7)
    log_ratio, alpha, log_gain = rng.uniform(-3.0, 6.0, 4000), rng.uniform(1e-3, 10.0, 4000), rng.uniform(-29.9, 5.9, 4000)
    db = 10.0 * (log_gain + alpha * log_ratio)
    keep = (db >= -300.0) & (db <= 60.0)  # inside the inputs' ranges, with g inside CHANNEL_GAIN_RANGE
    db, ratio, alpha = db[keep][:400], 10.0 ** log_ratio[keep][:400], alpha[keep][:400]
    n = len(db)
    problem = make_problem("paper", "bert-base")
    system = problem.system.replace(ref_gain_db=jnp.asarray(db), ref_distance_m=jnp.full(n, 2.0),
                                    distance_m=jnp.asarray(2.0 * ratio), pathloss_exponent=jnp.asarray(alpha))
    gain = np.asarray(channel_gain(system))
    with mpmath.workdps(50):
        expected = [float(mpmath.mpf(10) ** (mpmath.mpf(k) / 10) * (mpmath.mpf(2.0 * r) / 2) ** -mpmath.mpf(a))
                    for k, r, a in zip(db, ratio, alpha)]
    np.testing.assert_allclose(gain, expected, rtol=1e-13, atol=0.0)


def test_rate_at_pmax_500m_matches_paper_setting():
    problem = make_problem("paper", "bert-base")
    assert float(rate_bps(problem.system, 0.5)) == pytest.approx(19.47e6, rel=1e-3)


@pytest.mark.parametrize("point", [(1.0, 1e9, 0.5, 1.0, 4e9), (0.3, 2e8, 0.01, 0.7, 1e9), (0.0, 1e9, 1e-6, 0.0, 1e8)])
def test_terms_match_numpy(point):
    problem = make_problem("paper", "bert-base")
    terms = evaluate(problem.system, problem.model, OperatingPoint(*point))
    expected = numpy_terms(*point)
    for name, value in expected.items():
        assert float(getattr(terms, name)) == pytest.approx(value, rel=1e-12, abs=0.0), name


def test_broadcasting_and_vmap_shapes():
    problem = make_problem("paper", "bert-base").astype(jnp.float64)
    rho = jnp.linspace(0.1, 1.0, 6).reshape(2, 3)
    power = jnp.full((2, 1), 0.2)
    terms = evaluate(problem.system, problem.model, OperatingPoint(rho, 1e9, power, 1.0, jnp.full((3,), 2e9)))
    assert terms.rate_bps.shape == (2, 1)  # depends on p only
    assert terms.delay_s.shape == (2, 3) and terms.energy_j.shape == (2, 3)
    batched = jax.vmap(lambda r: evaluate(problem.system, problem.model, OperatingPoint(r, 1e9, 0.2, 1.0, 2e9)).energy_j)
    direct = evaluate(problem.system, problem.model, OperatingPoint(rho.ravel(), 1e9, 0.2, 1.0, 2e9)).energy_j
    assert batched(rho.ravel()).shape == (6,)
    np.testing.assert_allclose(batched(rho.ravel()), direct, rtol=1e-14)
    np.testing.assert_allclose(direct, [numpy_terms(float(r), 1e9, 0.2, 1.0, 2e9)["energy_j"] for r in rho.ravel()], rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtype_is_preserved(dtype):
    problem = make_problem("paper", "bert-base").astype(dtype)
    point = OperatingPoint(*(jnp.asarray(v, dtype) for v in (0.5, 1e9, 0.3, 0.5, 2e9)))
    terms = jax.jit(evaluate)(problem.system, problem.model, point)
    assert all(t.dtype == dtype for t in terms)
    expected = numpy_terms(0.5, 1e9, 0.3, 0.5, 2e9)
    assert float(terms.energy_j) == pytest.approx(expected["energy_j"], rel=1e-5 if dtype == jnp.float32 else 1e-12)


def test_degenerate_parts_take_no_time_or_energy():
    problem = make_problem("paper", "bert-base", overrides={"flops_device": 0.0, "embedding_bits": 0.0})
    terms = evaluate(problem.system, problem.model, OperatingPoint(1.0, 0.0, 0.0, 1.0, 4e9))
    assert float(terms.device_delay_s) == 0.0 and float(terms.device_energy_j) == 0.0
    assert float(terms.upload_delay_s) == 0.0 and float(terms.upload_energy_j) == 0.0
    assert np.isfinite(float(terms.delay_s))


def test_upload_at_zero_power_takes_forever_at_shannon_energy_floor():
    problem = make_problem("paper", "bert-base")
    terms = evaluate(problem.system, problem.model, OperatingPoint(1.0, 1e9, 0.0, 1.0, 4e9))
    assert math.isinf(float(terms.upload_delay_s))
    floor = problem.model.embedding_bits * 2e-19 * math.log(2) / float(channel_gain(problem.system))
    assert float(terms.upload_energy_j) == pytest.approx(floor, rel=1e-12)
    # continuity: a tiny power approaches the floor from above
    tiny = evaluate(problem.system, problem.model, OperatingPoint(1.0, 1e9, 1e-12, 1.0, 4e9))
    assert floor < float(tiny.upload_energy_j) < floor * (1 + 1e-6)


def test_gradients_flow_through_the_configuration():
    problem = make_problem("paper", "bert-base").astype(jnp.float64)
    point = OperatingPoint(0.5, 1e9, 0.3, 0.5, 2e9)
    grad = jax.grad(lambda s: evaluate(s, problem.model, point).delay_s)(problem.system)
    h = 1e-3
    up = evaluate(problem.system.replace(distance_m=500.0 + h), problem.model, point).delay_s
    down = evaluate(problem.system.replace(distance_m=500.0 - h), problem.model, point).delay_s
    assert float(grad.distance_m) == pytest.approx(float((up - down) / (2 * h)), rel=1e-6)
