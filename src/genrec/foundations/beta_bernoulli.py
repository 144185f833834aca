r"""The conjugate textbook case: a Bernoulli rate with a Beta prior (the cookie jar).

A jar holds chocolate and vanilla cookies; :math:`\theta` is the fraction of chocolate
ones. Draws are revealed in rounds; after round :math:`r` we have seen
:math:`c_r` chocolate and :math:`v_r` vanilla cookies in total. With the prior
:math:`\theta\sim\mathrm{Beta}(a_0,b_0)` and :math:`x_i\mid\theta\sim\mathrm{Bernoulli}(\theta)`
the exact posterior is

.. math::

    p(\theta\mid x_{1:r}) = \mathrm{Beta}(a_0 + c_r,\ b_0 + v_r),\qquad
    \log p(x_{1:r}) = \log B(a_0+c_r, b_0+v_r) - \log B(a_0,b_0).

The variational view fits :math:`q(\theta)=\mathrm{Beta}(a,b)` by maximising

.. math::

    \mathrm{ELBO}(q) = \mathbb E_q[c\log\theta + v\log(1-\theta) + \log p(\theta)] + H[q]
                     = \log p(x) - \mathrm{KL}(q\,\|\,p(\theta\mid x)),

(:func:`beta_elbo`, in closed form with :math:`\mathbb E_q\log\theta=\psi(a)-\psi(a+b)`), but
by stochastic gradients only, as one must when no closed form exists
(:func:`fit_beta_vi`): the Monte-Carlo estimate of
:math:`\mathbb E_q[\log p(x,\theta) - \log q(\theta)]` is differentiated either through
reparameterised samples (``'reparam'``: :math:`\theta = G_a/(G_a+G_b)` with
:math:`G\sim\mathrm{Gamma}`, implicit reparameterisation gradients of torch's gamma sampler)
or with the score-function estimator (``'score'``:
:math:`\nabla\mathcal L = \mathbb E_q[(f(\theta)-b)\nabla\log q(\theta)]`,
:math:`f = \log p(x,\theta) - \log q(\theta)`, leave-one-out baseline :math:`b`). Because the
exact posterior is in the family, :math:`f` is constant at the optimum and both estimators'
variance vanishes there, so the fit reaches the exact posterior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import betaln, digamma

from genrec.foundations.elbo import kl_beta

if TYPE_CHECKING:  # torch is imported lazily so that importing genrec.foundations stays light
    import torch

__all__ = [
    "BetaBernoulliJar",
    "BetaVIResult",
    "beta_posterior",
    "beta_log_evidence",
    "beta_elbo",
    "beta_rsample",
    "fit_beta_vi",
    "kl_beta_monte_carlo",
    "beta_elbo_terms",
    "simulate_jar",
    "GRADIENT_ESTIMATORS",
]

GRADIENT_ESTIMATORS = ("reparam", "score")


def _check_positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return v


def _check_counts(n_chocolate: Any, n_vanilla: Any) -> tuple[float, float]:
    c, v = float(n_chocolate), float(n_vanilla)
    if not (math.isfinite(c) and math.isfinite(v)) or c < 0 or v < 0:
        raise ValueError(f"counts must be non-negative; got {n_chocolate!r}, {n_vanilla!r}")
    return c, v


def beta_posterior(
    prior_a: float, prior_b: float, n_chocolate: float, n_vanilla: float
) -> tuple[float, float]:
    r"""Exact posterior :math:`\mathrm{Beta}(a_0 + c, b_0 + v)`; returns ``(a, b)``."""
    a0, b0 = _check_positive(prior_a, "prior_a"), _check_positive(prior_b, "prior_b")
    c, v = _check_counts(n_chocolate, n_vanilla)
    return a0 + c, b0 + v


def beta_log_evidence(
    prior_a: float, prior_b: float, n_chocolate: float, n_vanilla: float
) -> float:
    r"""Log marginal likelihood of an ordered sequence of draws.

    .. math:: \log p(x) = \log B(a_0+c,b_0+v)-\log B(a_0,b_0)
    """
    a, b = beta_posterior(prior_a, prior_b, n_chocolate, n_vanilla)
    return float(betaln(a, b) - betaln(prior_a, prior_b))


def beta_elbo(
    a: float, b: float, prior_a: float, prior_b: float, n_chocolate: float, n_vanilla: float
) -> float:
    r"""Closed-form ELBO of :math:`q=\mathrm{Beta}(a,b)`.

    .. math::

        (c + a_0 - 1)\,\mathbb E_q\log\theta + (v + b_0 - 1)\,\mathbb E_q\log(1-\theta)
        - \log B(a_0,b_0) + H[\mathrm{Beta}(a,b)],

    with :math:`\mathbb E_q\log\theta=\psi(a)-\psi(a+b)`,
    :math:`\mathbb E_q\log(1-\theta)=\psi(b)-\psi(a+b)` and
    :math:`H = \log B(a,b) - (a-1)\psi(a) - (b-1)\psi(b) + (a+b-2)\psi(a+b)`.
    """
    c, v = _check_counts(n_chocolate, n_vanilla)
    e_log_t = digamma(a) - digamma(a + b)
    e_log_1mt = digamma(b) - digamma(a + b)
    entropy = (
        betaln(a, b) - (a - 1) * digamma(a) - (b - 1) * digamma(b) + (a + b - 2) * digamma(a + b)
    )
    return float(
        (c + prior_a - 1) * e_log_t
        + (v + prior_b - 1) * e_log_1mt
        - betaln(prior_a, prior_b)
        + entropy
    )


def beta_elbo_terms(
    a: float, b: float, prior_a: float, prior_b: float, n_chocolate: float, n_vanilla: float
) -> tuple[float, float]:
    r""":func:`beta_elbo` in its two terms: the expected log-likelihood
    :math:`\mathbb E_q[c\log\theta+v\log(1-\theta)]` and :math:`\mathrm{KL}(q\,\|\,p(\theta))`,
    the divergence from the prior; ELBO = the first minus the second."""
    c, v = _check_counts(n_chocolate, n_vanilla)
    e_log_t = digamma(a) - digamma(a + b)
    e_log_1mt = digamma(b) - digamma(a + b)
    return float(c * e_log_t + v * e_log_1mt), float(kl_beta(a, b, prior_a, prior_b))


def beta_rsample(
    a: torch.Tensor, b: torch.Tensor, n_samples: int, generator: torch.Generator
) -> torch.Tensor:
    r"""Reparameterised draws :math:`\theta = G_a/(G_a+G_b)`, :math:`G_a\sim\mathrm{Gamma}(a,1)`.

    Gradients flow to ``a`` and ``b`` through torch's gamma sampler (implicit
    reparameterisation, as in ``torch.distributions.Gamma.rsample``); the noise comes from
    ``generator`` only.

    Parameters
    ----------
    a, b : torch.Tensor
        Scalar shape parameters (float64).
    n_samples : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (n_samples,), values clamped into the open interval (0, 1)
    """
    import torch

    ga = torch._standard_gamma(a.expand(n_samples), generator=generator)
    gb = torch._standard_gamma(b.expand(n_samples), generator=generator)
    theta = ga / (ga + gb)
    tiny = torch.finfo(theta.dtype).tiny
    eps = torch.finfo(theta.dtype).eps
    return theta.clamp(tiny, 1.0 - eps)


def kl_beta_monte_carlo(
    a_q: float,
    b_q: float,
    a_p: float,
    b_p: float,
    n_samples: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    r"""Monte-Carlo estimate of :math:`\mathrm{KL}(\mathrm{Beta}(a_q,b_q)\|\mathrm{Beta}(a_p,b_p))`.

    .. math:: \widehat{\mathrm{KL}} = \frac1S\sum_s[\log q(\theta_s) - \log p(\theta_s)],
        \qquad \theta_s\sim q.

    Returns
    -------
    estimate : float
    standard_error : float
        Sample standard deviation over :math:`\sqrt S`.
    """
    import torch

    if n_samples < 2:
        raise ValueError("n_samples must be at least 2")
    aq, bq = torch.tensor(a_q, dtype=torch.float64), torch.tensor(b_q, dtype=torch.float64)
    with torch.no_grad():
        theta = beta_rsample(aq, bq, n_samples, generator)
        q = torch.distributions.Beta(aq, bq, validate_args=False)
        p = torch.distributions.Beta(
            torch.tensor(a_p, dtype=torch.float64),
            torch.tensor(b_p, dtype=torch.float64),
            validate_args=False,
        )
        terms = q.log_prob(theta) - p.log_prob(theta)
    return float(terms.mean()), float(terms.std(unbiased=True) / math.sqrt(n_samples))


@dataclass
class BetaVIResult:
    """Result of :func:`fit_beta_vi`.

    Attributes
    ----------
    a, b : float
        Fitted :math:`q=\\mathrm{Beta}(a,b)`.
    elbo_trace : list of float
        Closed-form ELBO of q after every optimisation step.
    """

    a: float
    b: float
    elbo_trace: list[float] = field(default_factory=list)


_MAX_LOG_PARAM = 600.0  # exp(600) is near the float64 limit: beyond it q is not a usable Beta


def fit_beta_vi(
    n_chocolate: float,
    n_vanilla: float,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
    *,
    init: tuple[float, float] | None = None,
    estimator: str = "reparam",
    n_samples: int = 64,
    n_steps: int = 800,
    lr: float = 0.1,
    generator: torch.Generator | None = None,
) -> BetaVIResult:
    r"""Fit :math:`q=\mathrm{Beta}(a,b)` to the posterior by stochastic gradient ascent on the ELBO.

    Parameters are :math:`(\log a, \log b)`, optimised with Adam; the learning rate decays
    with a cosine schedule to ``lr / 1000`` so the iterates settle. Each step uses
    ``n_samples`` Monte-Carlo draws. Adam moves each log-parameter by at most about ``lr``
    per step, so the number of steps needed grows with :math:`|\log(a_{post}/a_{init})|`:
    the defaults reach KL < 1e-6 from a flat prior for tens of draws; for thousands of
    draws at once raise ``n_steps`` (warm-starting round after round, as
    :class:`BetaBernoulliJar` does, keeps each move short).

    ``'reparam'`` differentiates :math:`\frac1S\sum_s[\log p(x,\theta_s) - \log
    q_{\bar\phi}(\theta_s)]` through :math:`\theta_s(\phi)` with the density of q held fixed
    (the "sticking the landing" estimator: the score term has expectation zero).
    ``'score'`` uses :math:`\frac1S\sum_s (f_s - b_s)\nabla\log q(\theta_s)` with
    :math:`b_s` the mean of the other samples' :math:`f`.

    Parameters
    ----------
    n_chocolate, n_vanilla : float
        Counts :math:`c, v` observed so far.
    prior_a, prior_b : float
    init : (float, float), optional
        Starting :math:`(a, b)`; default the prior.
    estimator : {'reparam', 'score'}
    n_samples, n_steps : int
    lr : float
        Adam's initial learning rate.
    generator : torch.Generator, optional
        Source of all Monte-Carlo noise; default a freshly (non-deterministically) seeded
        generator.

    Returns
    -------
    BetaVIResult
    """
    import torch

    c, v = _check_counts(n_chocolate, n_vanilla)
    a0, b0 = _check_positive(prior_a, "prior_a"), _check_positive(prior_b, "prior_b")
    if estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(
            f"estimator must be one of {', '.join(GRADIENT_ESTIMATORS)}; got {estimator!r}"
        )
    if int(n_samples) < 2 or int(n_steps) < 1:
        raise ValueError("n_samples must be >= 2 and n_steps >= 1")
    lr = _check_positive(lr, "lr")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    a_init, b_init = init if init is not None else (a0, b0)
    params = torch.tensor(
        [math.log(_check_positive(a_init, "init a")), math.log(_check_positive(b_init, "init b"))],
        dtype=torch.float64,
        requires_grad=True,
    )
    opt = torch.optim.Adam([params], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(n_steps), eta_min=lr * 1e-3)
    prior = torch.distributions.Beta(
        torch.tensor(a0, dtype=torch.float64),
        torch.tensor(b0, dtype=torch.float64),
        validate_args=False,
    )
    c_t, v_t = torch.tensor(c, dtype=torch.float64), torch.tensor(v, dtype=torch.float64)

    def log_joint(theta: torch.Tensor) -> torch.Tensor:
        return c_t * torch.log(theta) + v_t * torch.log1p(-theta) + prior.log_prob(theta)

    trace: list[float] = []
    S = int(n_samples)
    for step in range(int(n_steps)):
        opt.zero_grad()
        a, b = torch.exp(params[0]), torch.exp(params[1])
        if estimator == "reparam":
            theta = beta_rsample(a, b, S, generator)
            q_fixed = torch.distributions.Beta(a.detach(), b.detach(), validate_args=False)
            objective = torch.mean(log_joint(theta) - q_fixed.log_prob(theta))
        else:
            with torch.no_grad():
                theta = beta_rsample(a.detach(), b.detach(), S, generator)
                f = log_joint(theta) - torch.distributions.Beta(a, b, validate_args=False).log_prob(
                    theta
                )
                baseline = (f.sum() - f) / (S - 1)
            log_q = torch.distributions.Beta(a, b, validate_args=False).log_prob(theta)
            objective = torch.mean((f - baseline) * log_q)
        (-objective).backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            log_a, log_b = float(params[0]), float(params[1])
        elbo_now = (
            beta_elbo(math.exp(log_a), math.exp(log_b), a0, b0, c, v)
            if max(abs(log_a), abs(log_b)) < _MAX_LOG_PARAM
            else math.nan
        )
        if not math.isfinite(elbo_now):  # an overshoot of Adam: q left the representable range
            raise ValueError(
                f"the variational fit diverged at step {step + 1} (log a = {log_a:.3g}, "
                f"log b = {log_b:.3g}); lower the learning rate lr (now {lr:g})"
            )
        a_now, b_now = math.exp(log_a), math.exp(log_b)
        trace.append(elbo_now)
    return BetaVIResult(a=a_now, b=b_now, elbo_trace=trace)


def simulate_jar(
    rate: float, n_rounds: int, draws_per_round: int, random_state: Any = None
) -> list[np.ndarray]:
    """Simulate the jar: ``n_rounds`` rounds of ``draws_per_round`` cookies.

    Each draw is 1 (chocolate) with probability ``rate``, else 0 (vanilla).
    """
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be in [0, 1]; got {rate!r}")
    if int(n_rounds) < 1 or int(draws_per_round) < 1:
        raise ValueError("n_rounds and draws_per_round must be >= 1")
    rng = np.random.default_rng(random_state)
    return [
        (rng.random(int(draws_per_round)) < rate).astype(np.int64) for _ in range(int(n_rounds))
    ]


class BetaBernoulliJar:
    r"""Exact and variational posteriors of the chocolate rate, round by round.

    Parameters
    ----------
    prior_a, prior_b : float, default=1.0
        Beta prior :math:`(a_0, b_0)`.
    estimator : {'reparam', 'score'}, default='reparam'
        Gradient estimator of the VI fit.
    n_mc_samples : int, default=64
        Monte-Carlo draws per gradient step.
    n_steps : int, default=800
        Adam steps per round (each round starts from the previous round's q).
    lr : float, default=0.1
    random_state : int or None, default=None
        Seed of the ``torch.Generator`` built in ``fit``.

    Attributes
    ----------
    counts_ : list of (int, int)
        Cumulative (chocolate, vanilla) after each round.
    exact_posteriors_ : list of (float, float)
        Exact Beta parameters after each round.
    variational_posteriors_ : list of (float, float)
        Fitted q after each round.
    kl_ : ndarray of shape (n_rounds,)
        :math:`\mathrm{KL}(q_r\,\|\,p(\theta\mid x_{1:r}))`, closed form, of the fitted q.
    kl_before_ : ndarray of shape (n_rounds,)
        The same KL for the q the round started from (the previous round's fit, or the
        prior), i.e. before the new draws were taken into account.
    log_evidence_ : ndarray of shape (n_rounds,)
    elbo_ : ndarray of shape (n_rounds,)
        Closed-form ELBO of each fitted q (= log evidence - KL).
    elbo_traces_ : list of list of float
        ELBO after every step, per round.
    """

    def __init__(
        self,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        *,
        estimator: str = "reparam",
        n_mc_samples: int = 64,
        n_steps: int = 800,
        lr: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.prior_a = prior_a
        self.prior_b = prior_b
        self.estimator = estimator
        self.n_mc_samples = n_mc_samples
        self.n_steps = n_steps
        self.lr = lr
        self.random_state = random_state

    def fit(self, rounds: Sequence[Sequence[int]]) -> BetaBernoulliJar:
        """Fit every round.

        Parameters
        ----------
        rounds : sequence of sequences of {0, 1}
            Outcomes per round (1 = chocolate, 0 = vanilla).

        Returns
        -------
        self
        """
        a0 = _check_positive(self.prior_a, "prior_a")
        b0 = _check_positive(self.prior_b, "prior_b")
        if len(rounds) == 0:
            raise ValueError("need at least one round of draws")
        clean = []
        for r, draws in enumerate(rounds):
            arr = np.asarray(draws)
            if arr.ndim != 1 or not np.all(np.isin(arr, (0, 1))):
                raise ValueError(f"round {r + 1}: draws must be a 1-D sequence of 0/1 values")
            clean.append(arr.astype(np.int64))
        import torch

        gen = torch.Generator()
        if self.random_state is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.random_state))
        c = v = 0
        q = (a0, b0)
        self.counts_, self.exact_posteriors_, self.variational_posteriors_ = [], [], []
        self.elbo_traces_, kl, kl_before, evidence, elbos = [], [], [], [], []
        for arr in clean:
            c += int(arr.sum())
            v += int(arr.size - arr.sum())
            exact = beta_posterior(a0, b0, c, v)
            kl_before.append(kl_beta(q[0], q[1], *exact))
            res = fit_beta_vi(
                c,
                v,
                a0,
                b0,
                init=q,
                estimator=self.estimator,
                n_samples=self.n_mc_samples,
                n_steps=self.n_steps,
                lr=self.lr,
                generator=gen,
            )
            q = (res.a, res.b)
            self.counts_.append((c, v))
            self.exact_posteriors_.append(exact)
            self.variational_posteriors_.append(q)
            self.elbo_traces_.append(res.elbo_trace)
            kl.append(kl_beta(res.a, res.b, *exact))
            evidence.append(beta_log_evidence(a0, b0, c, v))
            elbos.append(beta_elbo(res.a, res.b, a0, b0, c, v))
        self.kl_ = np.asarray(kl)
        self.kl_before_ = np.asarray(kl_before)
        self.log_evidence_ = np.asarray(evidence)
        self.elbo_ = np.asarray(elbos)
        return self
