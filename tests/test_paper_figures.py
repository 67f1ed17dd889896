"""The data behind the paper's figures (issue 13): what is drawn where a part is absent."""

import numpy as np

from laimco_jax.experiments import paper


def test_fig6_reports_no_ratio_for_an_absent_part():
    """Split 0 has no device part (ρ is not drawn); BERT's split L has no server part (ρ̃ is not drawn);
    BART's split L keeps its decoder on the server (ρ̃ is drawn)."""
    points = paper.figure_points(paper.FigureGrids(points=2))
    table = paper.solve_points(points[points.figure == "fig6"], ("proposed", "on-device", "on-server"))
    proposed = table[table.scheme == "proposed"].set_index(["model", "split"])
    assert proposed.feasible.all()
    for model, last, server_at_last in (("bert-base", 12, False), ("bart-base", 6, True)):
        assert np.isnan(proposed.loc[(model, 0), ["rho", "f_device_hz"]].astype(float)).all()
        assert np.isfinite(proposed.loc[(model, 0), ["rho_server", "f_server_hz"]].astype(float)).all()
        assert np.isfinite(proposed.loc[(model, last), "rho"])
        assert np.isfinite(proposed.loc[(model, last), "rho_server"]) == server_at_last
        inner = proposed.loc[model].loc[1:last - 1]
        assert np.isfinite(inner[["rho", "rho_server"]].to_numpy()).all()
    # the schemes that move the whole model to one side have no other part at any split
    assert table[table.scheme == "on-server"].rho.isna().all()
    on_device = table[(table.scheme == "on-device") & (table.model == "bert-base")]
    assert on_device.rho_server.isna().all() and on_device.rho.notna().any()
