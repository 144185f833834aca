"""GaussianMixture (EM): monotonicity, recovery, agreement with scikit-learn, model selection."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from genrec.foundations import ConvergenceWarning, GaussianMixture, NotFittedError
from genrec.foundations.gaussian import COVARIANCE_TYPES
from genrec.foundations.synthetic import make_gaussian_mixture


def quiet_fit(model, X):
    """Fit, silencing convergence warnings (ours and scikit-learn's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SkConvergenceWarning)
        return model.fit(X)


def regularisation_loss(gm, n):
    """How far the regularised M-step that produced ``gm``'s parameters can lower the mean
    log-likelihood. EM's step gains at least Q(theta_new) - Q(theta_old) >= -(Q(theta*) -
    Q(theta_new)), theta* the exact M-step; theta_new differs from it only in using S + eps I
    for each covariance S, which costs N/2 * sum_j [log(1 + eps/l_j) - eps/(l_j + eps)] over
    the eigenvalues l_j of S (N: the block's weight), divided by n per sample."""
    eps, ct, cov = gm.reg_covar, gm.covariance_type, gm.covariances_
    nk = gm.weights_ * n
    if ct in ("full", "tied"):
        lam = np.linalg.eigvalsh(cov) - eps  # (K, d) or (d,)
    else:
        lam = cov - eps  # diag (K, d), spherical (K,)
    lam = np.maximum(lam, 1e-300)  # a singular S: no bound (the exact step is unbounded)
    f = np.log1p(eps / lam) - eps / (lam + eps)
    if ct == "full" or ct == "diag":
        loss = (nk * f.sum(axis=1)).sum()
    elif ct == "spherical":
        loss = gm.means_.shape[1] * (nk * f).sum()  # d equal variances
    else:  # tied: one covariance, weight n
        loss = n * f.sum()
    return loss / (2 * n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 120),
    d=st.integers(1, 3),
    K=st.integers(1, 4),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    init=st.sampled_from(["k-means++", "random", "random_from_data"]),
    scale=st.floats(0.1, 100.0),
)
def test_log_likelihood_never_decreases_beyond_the_regularisation(
    seed, n, d, K, covariance_type, init, scale
):
    rng = np.random.default_rng(seed)
    # clustered data: some random centres plus noise of random scale
    centres = rng.normal(size=(3, d)) * 4 * scale
    X = centres[rng.integers(3, size=n)] + rng.normal(size=(n, d)) * scale
    opts = dict(covariance_type=covariance_type, tol=0.0, max_iter=1, reg_covar=1e-6 * scale**2)
    # one EM iteration at a time, each from the last one's parameters: bounds[t] is the
    # log-likelihood of theta_t, losses[t] what the regularisation of step t -> t + 1 may cost
    gm = quiet_fit(GaussianMixture(K, init_params=init, random_state=seed, **opts), X)
    bounds, losses = [gm.lower_bounds_[0]], [regularisation_loss(gm, n)]
    for _ in range(30):
        gm = quiet_fit(
            GaussianMixture(
                K,
                weights_init=gm.weights_,
                means_init=gm.means_,
                precisions_init=gm.precisions_,
                **opts,
            ),
            X,
        )
        bounds.append(gm.lower_bounds_[0])
        losses.append(regularisation_loss(gm, n))
    bounds, losses = np.array(bounds), np.array(losses[:-1])
    noise = 1e-9 * np.maximum(1.0, np.abs(bounds[1:]))  # floating-point noise only
    assert np.all(np.diff(bounds) >= -losses - noise)


def test_exact_em_never_decreases_where_regularisation_lowered_the_likelihood():
    # a case found by the property test above: a 4-point component in 3-D, nearly flat, so
    # adding reg_covar to its covariance lowers the likelihood by 4e-5 at iteration 17.
    # From the same parameters, exact EM (reg_covar = 0) does not decrease.
    rng = np.random.default_rng(2343)
    X = rng.normal(size=(3, 3))[rng.integers(3, size=43)] * 4 + rng.normal(size=(43, 3))
    start = quiet_fit(
        GaussianMixture(
            3, init_params="random", tol=0.0, max_iter=15, reg_covar=1e-6, random_state=2343
        ),
        X,
    )
    init = dict(
        weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_
    )
    reg = quiet_fit(GaussianMixture(3, tol=0.0, max_iter=8, reg_covar=1e-6, **init), X)
    exact = quiet_fit(GaussianMixture(3, tol=0.0, max_iter=8, reg_covar=0.0, **init), X)
    assert np.diff(reg.lower_bounds_).min() < -1e-5  # the regularised steps go down ...
    assert np.diff(exact.lower_bounds_).min() >= -1e-12  # ... the exact ones do not
    sk = quiet_fit(SkGaussianMixture(3, tol=0.0, max_iter=8, reg_covar=1e-6, **init), X)
    np.testing.assert_allclose(reg.lower_bound_, sk.lower_bound_, rtol=0, atol=1e-9)


def match_components(true_means, est_means):
    cost = ((true_means[:, None, :] - est_means[None, :, :]) ** 2).sum(-1)
    _, cols = linear_sum_assignment(cost)
    return cols


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_recovers_known_mixture(covariance_type):
    data = make_gaussian_mixture(6000, 3, 2, separation=5.0, random_state=1)
    X = data.X
    if covariance_type == "diag":
        # redraw the same counts from axis-aligned components for the diag model
        data.covariances = np.stack([np.diag(np.diag(c)) for c in data.covariances])
        rng = np.random.default_rng(2)
        X = np.concatenate(
            [
                rng.multivariate_normal(data.means[k], data.covariances[k], size=int(c))
                for k, c in enumerate(np.bincount(data.labels, minlength=3))
            ]
        )
        data.labels = np.sort(data.labels)
    gm = GaussianMixture(3, covariance_type=covariance_type, n_init=2, random_state=0).fit(X)
    assert gm.converged_
    cols = match_components(data.means, gm.means_)
    n_k = np.bincount(data.labels, minlength=3)
    # sampling error of a mean is sigma / sqrt(n_k) ~ 0.02; of a weight ~ 0.006
    np.testing.assert_allclose(gm.weights_[cols], data.weights, atol=0.03)
    np.testing.assert_allclose(gm.means_[cols], data.means, atol=5 * 1.3 / np.sqrt(n_k.min()))
    covs = gm.covariances_[cols]
    if covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in covs])
    np.testing.assert_allclose(covs, data.covariances, atol=0.15)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agrees_with_sklearn_from_same_parameters(covariance_type):
    data = make_gaussian_mixture(400, 3, 3, separation=2.5, random_state=3)
    X = data.X
    # a rough starting point (3 iterations from random responsibilities)
    start = quiet_fit(
        GaussianMixture(
            3, covariance_type=covariance_type, init_params="random", max_iter=3, random_state=0
        ),
        X,
    )
    init = dict(
        weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_
    )
    ours = quiet_fit(
        GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0.0, **init), X
    )
    sk = quiet_fit(
        SkGaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0.0, **init), X
    )
    assert ours.n_iter_ == sk.n_iter_ == 15
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.weights_, sk.weights_, atol=1e-6)
    np.testing.assert_allclose(ours.means_, sk.means_, atol=1e-6)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, atol=1e-6)
    np.testing.assert_allclose(ours.precisions_cholesky_, sk.precisions_cholesky_, atol=1e-6)
    assert ours.bic(X) == pytest.approx(sk.bic(X), abs=1e-4)
    assert ours.aic(X) == pytest.approx(sk.aic(X), abs=1e-4)


def test_one_e_step_matches_sklearn_private_e_step():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4)) * 3
    start = quiet_fit(GaussianMixture(5, max_iter=2, random_state=0), X)
    sk = SkGaussianMixture(5)
    sk.weights_, sk.means_ = start.weights_, start.means_
    sk.precisions_cholesky_ = start.precisions_cholesky_
    sk_norm, sk_log_resp = sk._estimate_log_prob_resp(X)
    np.testing.assert_allclose(start.score_samples(X), sk_norm, atol=1e-10)
    np.testing.assert_allclose(np.log(start.predict_proba(X)), sk_log_resp, atol=1e-10)


def test_bic_picks_the_true_number_of_components():
    data = make_gaussian_mixture(900, 4, 2, separation=7.0, random_state=5)
    bics = [
        GaussianMixture(k, n_init=2, random_state=0).fit(data.X).bic(data.X) for k in range(1, 8)
    ]
    assert int(np.argmin(bics)) + 1 == 4


def test_fit_predict_equals_fit_then_predict_and_is_repeatable():
    data = make_gaussian_mixture(300, 3, 2, separation=2.0, random_state=6)
    a = GaussianMixture(3, max_iter=3, tol=0.0, random_state=7, init_params="random")
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        labels = a.fit_predict(data.X)
    np.testing.assert_array_equal(labels, a.predict(data.X))
    b = quiet_fit(
        GaussianMixture(3, max_iter=3, tol=0.0, random_state=7, init_params="random"), data.X
    )
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.lower_bounds_, b.lower_bounds_)
    c = quiet_fit(
        GaussianMixture(3, max_iter=3, tol=0.0, random_state=8, init_params="random"), data.X
    )
    assert not np.array_equal(a.means_, c.means_)


def test_restarts_keep_the_best():
    data = make_gaussian_mixture(300, 4, 2, separation=3.0, random_state=9)
    X = data.X
    single = [
        quiet_fit(
            GaussianMixture(
                4, init_params="random", max_iter=20, random_state=np.random.default_rng(10)
            ),
            X,
        )
    ]
    multi = quiet_fit(
        GaussianMixture(4, init_params="random", n_init=5, max_iter=20, random_state=10), X
    )
    # The five restarts draw from one generator; replay them one by one.
    rng = np.random.default_rng(10)
    bounds = []
    for _ in range(5):
        g = quiet_fit(GaussianMixture(4, init_params="random", max_iter=20, random_state=rng), X)
        bounds.append(g.lower_bound_)
    assert multi.lower_bound_ == pytest.approx(max(bounds), abs=1e-12)
    assert multi.lower_bound_ >= single[0].lower_bound_ - 1e-12
    assert multi.lower_bounds_[-1] == multi.lower_bound_


def test_collapsing_component_does_not_crash_with_floor():
    rng = np.random.default_rng(11)
    # three identical points form a cluster that a component collapses onto
    X = np.vstack([rng.normal(size=(50, 2)), np.tile([[10.0, 10.0]], (3, 1))])
    gm = quiet_fit(GaussianMixture(2, random_state=0), X)
    assert np.all(np.isfinite(gm.covariances_))
    assert np.min(np.linalg.eigvalsh(gm.covariances_)) >= 1e-6 * 0.999
    with pytest.raises(ValueError, match="Increase reg_covar"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)


def test_sample_moments():
    gm = GaussianMixture(
        2,
        covariance_type="full",
        weights_init=[0.3, 0.7],
        means_init=[[0.0, 0.0], [5.0, 5.0]],
        precisions_init=[np.eye(2), np.linalg.inv([[2.0, 0.8], [0.8, 1.0]])],
        max_iter=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_iter=0 must not warn
        gm.fit(np.random.default_rng(0).normal(size=(10, 2)))
    X, y = gm.sample(40_000, random_state=1)
    assert X.shape == (40_000, 2) and y.shape == (40_000,)
    assert np.mean(y == 1) == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(np.cov(X[y == 1].T), [[2.0, 0.8], [0.8, 1.0]], atol=0.05)
    np.testing.assert_allclose(X[y == 0].mean(0), [0.0, 0.0], atol=0.03)
    for ct in ("tied", "diag", "spherical"):
        g = GaussianMixture(2, covariance_type=ct, random_state=0).fit(X[:2000])
        Xs, _ = g.sample(50)
        assert Xs.shape == (50, 2) and np.all(np.isfinite(Xs))


def test_bad_input_raises_clear_errors():
    X = np.random.default_rng(12).normal(size=(10, 2))
    with pytest.raises(ValueError, match="larger than the number of samples"):
        GaussianMixture(11).fit(X)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values \\(first at row 3, column 1\\)"):
        GaussianMixture(2).fit(Xn)
    with pytest.raises(ValueError, match="must be 2-D"):
        GaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianMixture(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="n_components must be an integer"):
        GaussianMixture(0).fit(X)
    with pytest.raises(ValueError, match="init_params must be one of"):
        GaussianMixture(2, init_params="kmeans--").fit(X)
    with pytest.raises(ValueError, match="means_init must have shape"):
        GaussianMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="resp_init must have shape"):
        GaussianMixture(2, resp_init=np.ones((9, 2)) / 2).fit(X)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(X)
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="has 3 features but the model was fitted with 2"):
        gm.predict(np.zeros((4, 3)))


def test_constructor_only_stores_and_params_roundtrip():
    gm = GaussianMixture(3, covariance_type="diag", random_state=4)
    assert not hasattr(gm, "weights_")
    params = gm.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag"
    gm.set_params(n_components=2)
    assert gm.n_components == 2
    with pytest.raises(ValueError, match="invalid parameter"):
        gm.set_params(colour="red")
    assert "GaussianMixture(n_components=2" in repr(gm)


def test_unfitted_mixtures_raise_the_shared_not_fitted_error():
    import genrec.errors
    from genrec.foundations import BayesianGaussianMixture
    from genrec.foundations.mixture_base import NotFittedError as BaseNotFittedError

    # one class, re-exported where the foundations' own used to be
    assert NotFittedError is genrec.errors.NotFittedError is BaseNotFittedError
    X = np.zeros((4, 2))
    for model in (GaussianMixture(2), BayesianGaussianMixture(n_components=2)):
        for method in (
            model.predict,
            model.predict_proba,
            model.score_samples,
            model.score,
            model.weighted_log_prob,
        ):
            # every class an `except` caught before, and the project's base class
            for caught in (
                genrec.errors.NotFittedError,
                genrec.errors.GenrecError,
                ValueError,
                AttributeError,
            ):
                with pytest.raises(caught, match=f"this {type(model).__name__} is not fitted"):
                    method(X)
        with pytest.raises(genrec.errors.NotFittedError):
            model.sample(3)
        assert not hasattr(model, "means_") and not hasattr(model, "n_features_in_")
