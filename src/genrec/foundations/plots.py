"""PNG plots of the foundations models (matplotlib ``Figure`` objects, no global backend).

matplotlib is an optional package (``genrec[analysis]``), imported when a plot is drawn.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from genrec._optional import require
from genrec.foundations.gaussian import full_covariances
from genrec.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "save_figure",
    "trace_figure",
    "plot_trace",
    "gmm_figure",
    "plot_gmm_2d",
    "jar_figure",
    "plot_jar_posteriors",
    "ellipse_params",
]


def _matplotlib(module: str) -> ModuleType:  # matplotlib.figure or matplotlib.patches
    return require(f"matplotlib.{module}", "analysis", "The foundations plots")


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Render ``fig`` to PNG in memory and write it atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def trace_figure(
    values: Sequence[float], ylabel: str, title: str = "", *, relative: bool = False
) -> Figure:
    """Bound per iteration (line with markers), on plain tick labels (no offset).

    ``relative=True`` draws ``values - values[0]``, the gain since iteration 1, so a climb of
    a few hundredths shows as such instead of as ticks like ``-3.74 + 1e-2``; the label says
    what was subtracted.
    """
    fig = _matplotlib("figure").Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    it = np.arange(1, len(values) + 1)
    y = np.asarray(values, dtype=np.float64)
    if relative and len(y):
        ax.set_ylabel(f"{ylabel} - iteration 1 ({y[0]:.6g})")
        y = y - y[0]
    else:
        ax.set_ylabel(ylabel)
    ax.plot(it, y, marker="o", ms=3)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xlabel("iteration")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def plot_trace(
    values: Sequence[float],
    path: str | os.PathLike,
    ylabel: str,
    title: str = "",
    *,
    relative: bool = False,
) -> None:
    """:func:`trace_figure`, written as PNG to ``path``."""
    save_figure(trace_figure(values, ylabel, title, relative=relative), path)


def ellipse_params(cov: np.ndarray, n_std: float = 2.0) -> tuple[float, float, float]:
    """Width, height and angle (degrees) of the ``n_std`` ellipse of a 2x2 covariance."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    width, height = 2.0 * n_std * np.sqrt(vals[::-1])
    return float(width), float(height), angle


def gmm_figure(
    X: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    title: str = "",
    min_weight: float = 1e-3,
) -> Figure:
    """Scatter of the first two features coloured by component, with 1- and 2-sigma ellipses.

    For ``d > 2`` the ellipses are those of the marginal of features 0 and 1 (the top-left
    2x2 block of each covariance). Components with weight below ``min_weight`` (emptied ones,
    whose covariance is only the prior's) are not drawn, and a line under the title says
    which.
    """
    K, d = means.shape
    covs = full_covariances(covariances, covariance_type, K, d)
    Ellipse = _matplotlib("patches").Ellipse
    fig = _matplotlib("figure").Figure(figsize=(6, 5.5))
    ax = fig.add_subplot()
    x1 = X[:, 1] if d > 1 else np.zeros(len(X))
    ax.scatter(X[:, 0], x1, c=labels, s=6, cmap="tab10", alpha=0.5, vmin=0, vmax=max(K - 1, 1))
    cmap = ax.collections[0].cmap
    hidden = [k for k in range(K) if weights[k] < min_weight]
    for k in range(K):
        if k in hidden:
            continue
        c2 = covs[k][:2, :2] if d > 1 else np.diag([covs[k][0, 0], 1e-12])
        color = cmap(k / max(K - 1, 1))
        for n_std in (1.0, 2.0):
            w, h, ang = ellipse_params(c2, n_std)
            ax.add_patch(
                Ellipse(
                    (means[k, 0], means[k, 1] if d > 1 else 0.0),
                    w,
                    h,
                    angle=ang,
                    fill=False,
                    lw=1.5,
                    color=color,
                    alpha=0.9 if n_std == 1 else 0.5,
                )
            )
        ax.annotate(f"{k}: {weights[k]:.2f}", (means[k, 0], means[k, 1] if d > 1 else 0.0))
    ax.set_xlabel("feature 0")
    ax.set_ylabel("feature 1" if d > 1 else "")
    suffix = " (marginal of features 0, 1)" if d > 2 else ""
    if hidden:
        names = ", ".join(str(k) for k in hidden)
        suffix += f"\n{len(hidden)} emptied (weight < {min_weight:g}) not drawn: {names}"
    ax.set_title(title + suffix)
    return fig


def plot_gmm_2d(
    X: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    path: str | os.PathLike,
    title: str = "",
    min_weight: float = 1e-3,
) -> None:
    """:func:`gmm_figure`, written as PNG to ``path``."""
    fig = gmm_figure(X, labels, weights, means, covariances, covariance_type, title, min_weight)
    save_figure(fig, path)


def jar_figure(
    exact: Sequence[tuple[float, float]],
    variational: Sequence[tuple[float, float]],
    kls: Sequence[float],
    counts: Sequence[tuple[int, int]],
    prior: tuple[float, float] = (1.0, 1.0),
    kl_before: Sequence[float] | None = None,
) -> Figure:
    """Left: exact posterior densities per round as wide light bands, the variational q as
    thin dashed lines drawn on top, so a q that matches its posterior stays visible.

    Right, beside them: KL(q || exact posterior) per round on a log scale, after the fit
    and (if ``kl_before`` is given) for the q the round started from. Values at or below
    1e-16 (rounding error, possibly negative) are drawn at 1e-16.
    """
    fig = _matplotlib("figure").Figure(figsize=(11, 4.5))
    ax, ax_kl = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    t = np.linspace(1e-4, 1 - 1e-4, 600)
    ax.plot(t, stats.beta.pdf(t, *prior), color="0.6", lw=1, label=f"prior Beta{tuple(prior)}")
    colors = []
    for r, ((ae, be), (aq, bq), (c, v)) in enumerate(zip(exact, variational, counts), start=1):
        line = ax.plot(
            t,
            stats.beta.pdf(t, ae, be),
            lw=6,
            alpha=0.3,
            zorder=2,
            solid_capstyle="butt",
            label=f"round {r}: {c} choc / {v} van",
        )[0]
        ax.plot(t, stats.beta.pdf(t, aq, bq), ls="--", lw=1.3, zorder=3, color=line.get_color())
        colors.append(line.get_color())
    ax.set_xlabel("θ = P(chocolate)")
    ax.set_ylabel("density")
    ax.set_title("Exact posterior p (wide, light) and variational q (dashed, on top)")
    ax.legend(fontsize=7, loc="upper left")

    rounds = np.arange(1, len(kls) + 1)
    floor = 1e-16
    ax_kl.scatter(
        rounds,
        np.maximum(np.asarray(kls, dtype=float), floor),
        c=colors,
        zorder=3,
        label="fitted q",
    )
    if kl_before is not None:
        ax_kl.scatter(
            rounds,
            np.maximum(np.asarray(kl_before, dtype=float), floor),
            c=colors,
            marker="x",
            label="q at the start of the round",
        )
    ax_kl.axhline(1e-3, color="0.5", ls=":", lw=1, label="1e-3")
    ax_kl.set_yscale("log")
    ax_kl.set_xticks(rounds)
    ax_kl.set_xlabel("round")
    ax_kl.set_ylabel("KL(q || exact posterior)")
    ax_kl.set_title("KL per round")
    ax_kl.legend(fontsize=7)
    return fig


def plot_jar_posteriors(
    exact: Sequence[tuple[float, float]],
    variational: Sequence[tuple[float, float]],
    kls: Sequence[float],
    counts: Sequence[tuple[int, int]],
    path: str | os.PathLike,
    prior: tuple[float, float] = (1.0, 1.0),
    kl_before: Sequence[float] | None = None,
) -> None:
    """:func:`jar_figure`, written as PNG to ``path``."""
    save_figure(jar_figure(exact, variational, kls, counts, prior, kl_before), path)
