"""Figures of the theory tables (:mod:`laimco_jax.experiments.theory`), drawn with matplotlib's Agg.

Each ``plot_*(table, path)`` draws a :class:`matplotlib.figure.Figure` (no pyplot, no global
backend switch), writes it to ``path`` (format from the suffix, e.g. ``.png``) and returns the path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["figure_grid", "plot_bound_check", "plot_close_loop", "plot_weight_fit", "save_figure"]


def figure_grid(n_panels: int, width: float = 4.6, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n_panels, 2)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _check_columns(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name}: table={type(table).__name__} must be a pandas DataFrame")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: table lacks columns {missing}; pass the DataFrame from theory.{name[5:]}_table")


def plot_weight_fit(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Fig. 2: per model, the weight histogram (density, log y-axis) with the fitted Laplace and
    Gaussian densities; the legend gives their mean log-likelihood [nats/weight] and KS statistic.
    ``table`` is :func:`~laimco_jax.experiments.theory.weight_fit_table`'s (with its histogram attr)."""
    _check_columns(table, "plot_weight_fit", ["model", "laplace_loc", "laplace_scale", "gaussian_loc",
                                              "gaussian_scale"])
    hist = table.attrs.get("histogram")
    if hist is None:
        raise ValueError("plot_weight_fit: table.attrs['histogram'] is missing; pass weight_fit_table's result")
    fig, axes = figure_grid(len(table))
    for ax, (_, row) in zip(axes, table.iterrows()):
        h = hist[hist["model"] == row["model"]]
        centers = (h["bin_left"].to_numpy() + h["bin_right"].to_numpy()) / 2
        width = h["bin_right"].to_numpy() - h["bin_left"].to_numpy()
        density = h["density"].to_numpy()
        ax.bar(centers, np.where(density > 0, density, np.nan), width=width, color="0.75", label="weights")
        x = np.linspace(h["bin_left"].min(), h["bin_right"].max(), 600)
        lap = np.exp(-np.abs(x - row["laplace_loc"]) / row["laplace_scale"]) / (2 * row["laplace_scale"])
        gau = np.exp(-0.5 * ((x - row["gaussian_loc"]) / row["gaussian_scale"]) ** 2) / (
            row["gaussian_scale"] * math.sqrt(2 * math.pi))
        ax.plot(x, lap, "C3", label=f"Laplace (ll {row['laplace_mean_loglik']:.3f}, KS {row['laplace_ks']:.3f})")
        ax.plot(x, gau, "C0--", label=f"Gaussian (ll {row['gaussian_mean_loglik']:.3f}, KS {row['gaussian_ks']:.3f})")
        positive = density[density > 0]
        if positive.size:
            ax.set_ylim(positive.min() / 3, positive.max() * 3)
        ax.set_yscale("log")
        title = row["model"] + ("" if row.get("pretrained", True) else " (random init)")
        ax.set_title(title)
        ax.set_xlabel("weight value")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_bound_check(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Fig. 3: per model, output and parameter distortion vs remaining ratio (log y-axis), for each
    pruning method (solid: magnitude, dashed: random), with G‖Ω − Ω̂‖_F (Prop. 3.2), the first-order
    distortion (21) and, for FCDNNs, Theorem 3.1's bound (19).
    ``table`` is :func:`~laimco_jax.experiments.theory.bound_check_table`'s."""
    _check_columns(table, "plot_bound_check", ["model", "pruning", "ratio", "param_distortion",
                                               "output_distortion_mean", "first_order_distortion_mean",
                                               "G_bound", "theorem_bound"])
    models = list(dict.fromkeys(table["model"]))
    fig, axes = figure_grid(len(models))
    styles = {"magnitude": "-", "random": "--"}
    for ax, model in zip(axes, models):
        sub = table[table["model"] == model]
        for method, part in sub.groupby("pruning", sort=False):
            part = part.sort_values("ratio")
            part = part[part["ratio"] < 1]  # distortions are 0 at ratio 1: nothing to draw on a log axis
            ls = styles.get(method, ":")
            ax.plot(part["ratio"], part["output_distortion_mean"], "C0" + ls, marker="o", ms=3,
                    label=f"output ({method})")
            ax.plot(part["ratio"], part["param_distortion"], "C1" + ls, marker="s", ms=3,
                    label=f"parameter ‖Ω−Ω̂‖ ({method})")
            ax.plot(part["ratio"], part["first_order_distortion_mean"], "C2" + ls, label=f"first order ({method})")
            ax.plot(part["ratio"], part["G_bound"], "C4" + ls, label=f"G‖Ω−Ω̂‖ ({method})")
            if part["theorem_bound"].notna().any():
                ax.plot(part["ratio"], part["theorem_bound"], "C3" + ls, label=f"Thm 3.1 bound ({method})")
        ax.set_yscale("log")
        ax.set_title(model)
        ax.set_xlabel("remaining ratio ρ")
        ax.set_ylabel("distortion")
        ax.legend(fontsize=6)
    return save_figure(fig, path)


def plot_close_loop(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Closing the loop: log10 D̂ (eq. (41)) and the solver's ρ, ρ̃ vs the delay budget T0 (left), the
    measured output distortion and the cosine similarity of pooled embeddings per pruning method
    (right). ``table`` is :func:`~laimco_jax.experiments.theory.close_loop_table`'s."""
    _check_columns(table, "plot_close_loop", ["delay_s", "rho", "rho_server", "log10_distortion_bound",
                                              "pruning", "output_distortion_mean", "cosine_similarity_mean"])
    fig, (left, right) = figure_grid(2)
    first = table.drop_duplicates("delay_s").sort_values("delay_s")
    left.plot(first["delay_s"], first["log10_distortion_bound"], "k-o", ms=3, label="log10 D̂")
    left.set_xlabel("delay budget T0 [s]")
    left.set_ylabel("log10 D̂")
    twin = left.twinx()
    twin.plot(first["delay_s"], first["rho"], "C0--", label="ρ (device)")
    twin.plot(first["delay_s"], first["rho_server"], "C1--", label="ρ̃ (server)")
    twin.set_ylabel("remaining ratio")
    twin.set_ylim(-0.05, 1.05)
    handles = left.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    left.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7)
    styles = {"magnitude": "-", "random": "--"}
    twin_r = right.twinx()
    for method, part in table.groupby("pruning", sort=False):
        part = part.sort_values("delay_s")
        ls = styles.get(method, ":")
        right.plot(part["delay_s"], part["output_distortion_mean"], "C3" + ls, marker="o", ms=3,
                   label=f"output distortion ({method})")
        twin_r.plot(part["delay_s"], part["cosine_similarity_mean"], "C2" + ls, marker="s", ms=3,
                    label=f"cosine similarity ({method})")
    right.set_xlabel("delay budget T0 [s]")
    right.set_ylabel("output distortion")
    twin_r.set_ylabel("cosine similarity to unpruned")
    handles = right.get_legend_handles_labels()
    more = twin_r.get_legend_handles_labels()
    right.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7)
    return save_figure(fig, path)
