"""Solvers of problem (P1): the exact global solver, the paper's SCA, the benchmark schemes."""

from laimco_jax.solvers.exact import solve_exact
from laimco_jax.solvers.sca import SCAOptions, solve_sca
from laimco_jax.solvers.schemes import SCHEMES, scheme_problem, scheme_spec
from laimco_jax.solvers.solution import INFEASIBLE_REASON_TEXT, InfeasibleReason, Solution, Status, found_point

__all__ = [
    "INFEASIBLE_REASON_TEXT",
    "InfeasibleReason",
    "SCAOptions",
    "SCHEMES",
    "Solution",
    "Status",
    "scheme_problem",
    "scheme_spec",
    "solve_exact",
    "found_point",
    "solve_sca",
]
