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
    from genrec.foundations.demos import BetaDemo, ComponentSummary, ElboSplit, MixtureDemo

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


def fmt_kl(value: float, spec: str = ".1e") -> str:
    """A KL divergence for display: clipped at 0, where a closed form at q = p can land a few
    ulps below it (-2e-15 prints as 0). The results (``--output``) keep the exact values."""
    shown = format(max(float(value), 0.0), spec)
    return "0" if float(shown) == 0.0 else shown


def elbo_table(splits: Sequence[ElboSplit], title: str) -> Table:
    """One row per q: the ELBO's terms, their sum, and where known KL and log p(x)."""
    table = Table(title=title)
    table.add_column("q")
    for name, _ in splits[0].terms:
        table.add_column(escape(name), justify="right")
    table.add_column("= ELBO", justify="right")
    exact = splits[0].log_evidence is not None
    if exact:
        table.add_column("KL(q||posterior)", justify="right")
        table.add_column("log p(x) = ELBO + KL", justify="right")
    for split in splits:
        row = [escape(split.q), *(f"{v:.6f}" for _, v in split.terms), f"{split.elbo:.6f}"]
        if exact and split.kl_posterior is not None and split.log_evidence is not None:
            row += [fmt_kl(split.kl_posterior, ".6f"), f"{split.log_evidence:.6f}"]
        table.add_row(*row)
    return table


def trace_table(values: Sequence[float], title: str, label: str) -> Table:
    table = Table(title=title)
    table.add_column("iteration", justify="right")
    table.add_column(label, justify="right")
    table.add_column("change", justify="right")
    table.add_column("gain since iteration 1", justify="right")
    n = len(values)
    rows = list(range(n))
    if n > 2 * TRACE_HEAD + 5:
        rows = list(range(TRACE_HEAD)) + [-1] + list(range(n - TRACE_HEAD, n))
    for i in rows:
        if i < 0:
            hidden = n - 2 * TRACE_HEAD
            table.add_row("…", f"({hidden} rows not shown: see --output / --out)", "", "")
            continue
        change = "" if i == 0 else f"{values[i] - values[i - 1]:+.3e}"
        gain = f"{values[i] - values[0]:+.6f}"
        table.add_row(str(i + 1), f"{values[i]:.8f}", change, gain)
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
    saddle = " (at a saddle: see the warning)" if demo.saddle is not None else ""
    summary.add_row("converged", f"{m.converged_}{saddle}")
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
    if demo.elbo_splits:
        out.print(elbo_table(demo.elbo_splits, "the ELBO in its terms (nats, at the fit)"))
    hidden = demo.hidden_components
    if hidden:
        from genrec.foundations.demos import EFFECTIVE_WEIGHT

        names = ", ".join(str(k) for k in hidden)
        out.print(
            f"[yellow]note:[/yellow] {len(hidden)} emptied components (weight < "
            f"{EFFECTIVE_WEIGHT:g}) are left out of the ellipse plot: {names}"
        )
    for note in demo.notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}")
    if demo.saddle is not None:
        out.print(f"[red]warning:[/red] {escape(demo.saddle.message())}")


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
            fmt_kl(r.kl),
            fmt_kl(r.kl_start, ".4f"),
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
        trace.add_row(str(step), f"{value:.8f}", fmt_kl(gap, ".3e"))
    out.print(trace)
    if demo.elbo_splits:
        out.print(elbo_table(demo.elbo_splits, "the ELBO of each round's q in its terms (nats)"))
