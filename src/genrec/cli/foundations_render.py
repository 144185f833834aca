"""Tables of ``genrec foundations gmm|vbgmm|beta``: a :class:`~genrec.foundations.demos.
MixtureDemo` or :class:`~genrec.foundations.demos.BetaDemo` printed with rich."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # the models load when a command runs, not when the CLI starts
    from genrec.foundations.demos import BetaDemo, ComponentSummary, MixtureDemo

MAX_DIMS_SHOWN = 6
TRACE_HEAD = 10  # a long trace shows its first and last TRACE_HEAD iterations


def console() -> Console:
    """Standard output, 150 columns wide (the beta table has ten columns); markup on."""
    return Console(width=150, highlight=False)


def fmt_vec(v: np.ndarray, digits: int = 3) -> str:
    v = np.asarray(v).ravel()
    shown = ", ".join(f"{x:.{digits}f}" for x in v[:MAX_DIMS_SHOWN])
    more = f", … (+{v.size - MAX_DIMS_SHOWN})" if v.size > MAX_DIMS_SHOWN else ""
    return f"[{shown}{more}]"


def trace_table(values: Sequence[float], title: str, label: str) -> Table:
    table = Table(title=title)
    table.add_column("iteration", justify="right")
    table.add_column(label, justify="right")
    table.add_column("change", justify="right")
    n = len(values)
    rows = list(range(n))
    if n > 2 * TRACE_HEAD + 5:
        rows = list(range(TRACE_HEAD)) + [-1] + list(range(n - TRACE_HEAD, n))
    for i in rows:
        if i < 0:
            hidden = n - 2 * TRACE_HEAD
            table.add_row("…", f"({hidden} rows not shown: see --output / --out)", "")
            continue
        change = "" if i == 0 else f"{values[i] - values[i - 1]:+.3e}"
        table.add_row(str(i + 1), f"{values[i]:.8f}", change)
    return table


def param_table(title: str, components: Sequence[ComponentSummary], spherical: bool) -> Table:
    table = Table(title=title)
    table.add_column("k", justify="right")
    table.add_column("weight", justify="right")
    table.add_column("mean")
    table.add_column("variance" if spherical else "covariance diagonal")
    for c in components:
        table.add_row(str(c.index), f"{c.weight:.4f}", fmt_vec(c.mean), fmt_vec(c.spread))
    return table


def print_mixture(out: Console, demo: MixtureDemo) -> None:
    """The fitted parameters, a summary (convergence, bound, criteria) and the trace."""
    m = demo.model
    out.print(f"[bold]{type(m).__name__}[/bold] on {escape(demo.points.description)}")
    spherical = m.get_params()["covariance_type"] == "spherical"
    out.print(param_table("fitted parameters (sorted by weight)", demo.components, spherical))
    summary = Table(title="summary", show_header=False)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("converged", str(m.converged_))
    summary.add_row("iterations", str(m.n_iter_))
    if demo.log_likelihood is not None:
        n = demo.points.X.shape[0]
        summary.add_row("log-likelihood (total)", f"{demo.log_likelihood:.6f}")
        summary.add_row("log-likelihood per sample", f"{demo.log_likelihood / n:.8f}")
        summary.add_row("BIC", f"{demo.bic:.4f}")
        summary.add_row("AIC", f"{demo.aic:.4f}")
    if demo.elbo is not None:
        summary.add_row("ELBO (nats, full)", f"{demo.elbo:.6f}")
        summary.add_row("components with weight > 0.01", str(demo.effective_components))
    out.print(summary)
    out.print(trace_table(demo.trace.values, demo.trace.title, demo.trace.label))
    for note in demo.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")


def print_beta(out: Console, demo: BetaDemo) -> None:
    """The posterior per round and the last round's ELBO per step."""
    a0, b0 = demo.prior
    out.print(
        f"[bold]Beta-Bernoulli jar[/bold]: {escape(demo.description)}; prior "
        f"Beta({a0:g}, {b0:g}); estimator {demo.estimator}"
    )
    table = Table(title="posterior per round")
    for col in (
        "round",
        "draws c/v",
        "total c/v",
        "exact p = Beta",
        "fitted q = Beta",
        "KL(q||p)",
        "KL(q0||p)",
        "KL(q0||p) MC",
        "log p(x)",
        "ELBO",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = (
        "q0: the q the round began from (the previous fit, or the prior), against "
        f"the new posterior p; Monte-Carlo: {demo.mc_draws} draws from q0, ± one "
        "standard error"
    )
    for i, r in enumerate(demo.rounds, start=1):
        (c, v), (ae, be), (aq, bq) = r.counts, r.exact_posterior, r.variational_posterior
        chocolate = int(r.draws.sum())
        table.add_row(
            str(i),
            f"{chocolate}/{int(r.draws.size - chocolate)}",
            f"{c}/{v}",
            f"({ae:.2f}, {be:.2f})",
            f"({aq:.2f}, {bq:.2f})",
            f"{r.kl:.1e}",
            f"{r.kl_start:.4f}",
            f"{r.kl_start_mc:.4f} ± {r.kl_start_mc_se:.4f}",
            f"{r.log_evidence:.5f}",
            f"{r.elbo:.5f}",
        )
    out.print(table)
    evidence = demo.rounds[-1].log_evidence
    trace = Table(title=f"ELBO per step, last round (exact log evidence {evidence:.6f})")
    trace.add_column("step", justify="right")
    trace.add_column("ELBO", justify="right")
    trace.add_column("log evidence - ELBO = KL", justify="right")
    for step, value, gap in demo.final_trace:
        trace.add_row(str(step), f"{value:.8f}", f"{gap:.3e}")
    out.print(trace)
