"""The quantizers of genrec.models.quantize against direct computations: nearest codes by
brute force, the straight-through gradient, the two losses and their gradients, perplexity
in closed form, one EMA step by hand, k-means against scikit-learn, residual levels, the
unique extra token, k-means initialisation and the restart of unused codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.models.quantize import (
    ResidualQuantizer,
    VectorQuantizer,
    code_counts,
    ema_update,
    kmeans,
    nearest_codes,
    perplexity,
    residual_kmeans,
    sq_distances,
    straight_through,
    unique_tuples,
    vq_losses,
)


def _blobs(
    n_per: int, centres: np.ndarray, scale: float, seed: int = 0
) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [c + scale * rng.standard_normal((n_per, centres.shape[1])) for c in centres]
    )
    return torch.tensor(x, dtype=torch.float32), np.repeat(np.arange(len(centres)), n_per)


def test_distances_and_nearest_codes_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    z, book = torch.randn(50, 6, generator=g), torch.randn(9, 6, generator=g)
    brute = torch.tensor([[float(((a - b) ** 2).sum()) for b in book] for a in z])
    torch.testing.assert_close(sq_distances(z, book), brute, rtol=1e-5, atol=1e-5)
    assert torch.equal(nearest_codes(z, book), brute.argmin(1))
    # a tie goes to the lowest index
    twins = torch.stack([book[3], book[3]])
    assert int(nearest_codes(book[3:4], torch.cat([twins, book]))[0]) == 0


def test_straight_through_passes_the_value_forward_and_the_gradient_back():
    z_e = torch.randn(4, 3, requires_grad=True)
    z_q = torch.randn(4, 3)
    out = straight_through(z_e, z_q)
    torch.testing.assert_close(out, z_q)
    w = torch.randn(4, 3)
    (out * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)


def test_losses_equal_their_formulas_and_train_what_they_should():
    z_e = torch.randn(5, 4, requires_grad=True)
    e = torch.randn(5, 4, requires_grad=True)
    book, commit = vq_losses(z_e, e, beta=0.25)
    direct = float(((z_e - e) ** 2).sum(1).mean().detach())  # squared norms, mean over rows
    assert float(book.detach()) == pytest.approx(direct, rel=1e-6)
    assert float(commit.detach()) == pytest.approx(0.25 * direct, rel=1e-6)
    book.backward(retain_graph=True)
    assert z_e.grad is None and e.grad is not None  # the codebook loss moves the codes only
    e.grad = None
    commit.backward()
    assert e.grad is None and z_e.grad is not None  # commitment moves the encoder only
    torch.testing.assert_close(z_e.grad, 0.25 * 2 * (z_e - e).detach() / z_e.shape[0])


def test_perplexity_in_closed_form():
    assert float(perplexity(torch.ones(8))) == pytest.approx(8.0, rel=1e-6)
    assert float(perplexity(torch.tensor([5.0, 0, 0, 0]))) == pytest.approx(1.0, rel=1e-6)
    p = np.array([0.5, 0.25, 0.25])
    want = np.exp(-(p * np.log(p)).sum())
    assert float(perplexity(torch.tensor([2.0, 1.0, 1.0]))) == pytest.approx(want, rel=1e-6)
    assert code_counts(torch.tensor([0, 2, 2]), 4).tolist() == [1.0, 0.0, 2.0, 0.0]


def test_one_ema_step_by_hand():
    counts = torch.tensor([2.0, 0.0, 1.0])
    sums = torch.tensor([[2.0, 2.0], [0.0, 0.0], [1.0, -1.0]])
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0]])
    codes = torch.tensor([0, 0, 2])
    g, eps = 0.9, 1e-5
    c, s, book = ema_update(counts, sums, z, codes, g, eps)
    want_c = np.array([0.9 * 2 + 0.1 * 2, 0.0, 0.9 * 1 + 0.1 * 1])
    want_s = np.array([[0.9 * 2 + 0.1 * 4, 0.9 * 2 + 0.1 * 2], [0, 0], [0.9 + 0.0, -0.9 + 0.1]])
    n = want_c.sum()
    smooth = (want_c + eps) / (n + 3 * eps) * n
    np.testing.assert_allclose(c.numpy(), want_c, rtol=1e-6)
    np.testing.assert_allclose(s.numpy(), want_s, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(book.numpy(), want_s / smooth[:, None], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(book).all()  # the unused code keeps a finite value


def test_kmeans_finds_separated_blobs_like_scikit_learn():
    from sklearn.cluster import KMeans

    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], dtype=float)
    x, truth = _blobs(40, centres, 0.5)
    got, assign = kmeans(x, 5, seed=1)
    # the same partition as the truth, up to the labels
    pairs = set(zip(assign.tolist(), truth.tolist()))
    assert len(pairs) == 5
    ref = KMeans(5, n_init=10, random_state=0).fit(x.numpy())
    mine = float(((x - got[assign]) ** 2).sum())
    assert mine == pytest.approx(ref.inertia_, rel=1e-4)


def test_kmeans_with_fewer_points_than_clusters_and_refusing_none():
    x = torch.randn(3, 2)
    centres, assign = kmeans(x, 5)
    assert centres.shape == (5, 2)
    torch.testing.assert_close(centres[assign], x)  # each point is a centre
    with pytest.raises(ValueError, match="no points"):
        kmeans(torch.empty(0, 2), 3)


def test_residual_kmeans_levels_shrink_the_error_and_start_as_kmeans():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    codes, books = residual_kmeans(x, 3, 8, seed=0)
    assert codes.shape == (300, 3) and books.shape == (3, 8, 4)
    _, first = kmeans(x, 8, seed=0)
    assert torch.equal(codes[:, 0], first)
    errors, recon = [], torch.zeros_like(x)
    for level in range(3):
        recon = recon + books[level][codes[:, level]]
        errors.append(float(((x - recon) ** 2).sum()))
    assert errors[0] > errors[1] > errors[2]


def test_unique_tuples_adds_a_counter_per_repeated_tuple():
    codes = torch.tensor([[1, 2], [3, 4], [1, 2], [1, 2], [3, 5]])
    out, collisions = unique_tuples(codes)
    assert out[:, -1].tolist() == [0, 0, 1, 2, 0]
    assert collisions == 2
    assert len({tuple(r) for r in out.tolist()}) == len(out)
    torch.testing.assert_close(out[:, :2], codes)


def test_kmeans_init_beats_the_uniform_codebook_and_happens_once():
    centres = np.array([[3, 3], [-3, 3], [3, -3], [-3, -3]], dtype=float)
    x, _ = _blobs(50, centres, 0.3)
    plain = VectorQuantizer(4, 2, init="uniform")
    plain.train()
    smart = VectorQuantizer(4, 2, init="kmeans", seed=0)
    smart.train()
    q_plain, q_smart = plain(x), smart(x)
    assert float(q_smart.commitment_loss) < 0.1 * float(q_plain.commitment_loss)
    assert q_smart.usage == [1.0] and q_smart.perplexity[0] == pytest.approx(4.0, rel=1e-3)
    book = smart.codebook.detach().clone()
    smart(x + 1.0)  # no second k-means
    torch.testing.assert_close(smart.codebook.detach(), book)
    # a loaded quantizer keeps its codebook (the flag is in the state)
    again = VectorQuantizer(4, 2, init="kmeans")
    again.load_state_dict(smart.state_dict())
    again.train()
    again(x)
    torch.testing.assert_close(again.codebook.detach(), smart.codebook.detach())


def test_the_ema_codebook_moves_by_the_closed_form_and_has_no_gradient():
    x = torch.randn(64, 3)
    vq = VectorQuantizer(5, 3, ema=True, decay=0.8, init="uniform")
    vq.train()
    counts, sums = vq.ema_counts.clone(), vq.ema_sums.clone()
    codes = nearest_codes(x, vq.codebook)
    q = vq(x)
    assert torch.equal(q.codes, codes)
    _, _, want = ema_update(counts, sums, x, codes, 0.8, vq.eps)
    torch.testing.assert_close(vq.codebook, want)
    assert not vq.codebook.requires_grad
    torch.testing.assert_close(q.loss, q.commitment_loss)
    vq.eval()
    before = vq.codebook.clone()
    vq(x)
    torch.testing.assert_close(vq.codebook, before)  # evaluation changes nothing


def test_unused_codes_restart_on_batch_vectors():
    x = torch.randn(200, 2)
    vq = VectorQuantizer(8, 2, init="uniform", restart_every=1)
    with torch.no_grad():
        vq.codebook[1:] = 100.0  # seven codes nobody chooses
    vq.train()
    q = vq(x)
    assert q.usage == [1 / 8]
    rows = {tuple(r) for r in x.tolist()}
    moved = vq.codebook.detach()[1:].tolist()
    assert all(tuple(r) in rows for r in moved)  # restarted onto vectors of the batch
    assert vq(x).usage[0] > 0.5
    # the parameter can still be trained after the in-place restart
    q = vq(x)
    (q.loss + q.z_q.sum()).backward()
    assert vq.codebook.grad is not None


def test_residual_quantizer_sums_levels_and_losses():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(128, 4, generator=g, requires_grad=True)
    rq = ResidualQuantizer(3, 8, 4, seed=0)
    rq.train()
    q = rq(z)
    assert q.codes.shape == (128, 3) and len(q.perplexity) == 3
    torch.testing.assert_close(q.z_q.detach(), rq.decode(q.codes))
    torch.testing.assert_close(q.values, rq.decode(q.codes))
    # the loss is each level's VQ loss on its own residual
    residual, want = z.detach(), 0.0
    for level, vq in enumerate(rq.levels):
        e = vq.codebook.detach()[q.codes[:, level]]
        b, c = vq_losses(residual, e, 0.25)
        want += float(b + c)
        residual = residual - e
    assert float(q.loss.detach()) == pytest.approx(want, rel=1e-5)
    w = torch.randn(128, 4)
    (q.z_q * w).sum().backward()
    torch.testing.assert_close(z.grad, w)  # straight through all levels
    rq.eval()
    assert torch.equal(rq.encode(z.detach()), rq(z.detach()).codes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_codes": 0, "dim": 2}, "n_codes"),
        ({"n_codes": 4, "dim": 2, "init": "random"}, "init"),
        ({"n_codes": 4, "dim": 2, "decay": 1.0}, "decay"),
        ({"n_codes": 4, "dim": 2, "restart_every": 0}, "restart_every"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VectorQuantizer(**kwargs)
    with pytest.raises(ValueError, match="n_levels"):
        ResidualQuantizer(0, 4, 2)
