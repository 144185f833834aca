"""Keyed noise (train.noise = "keyed"): the hash against a plain reference, the uniforms and
normals against their distributions, and the property it exists for: a user's numbers do
not depend on the batch around it."""

import numpy as np
import pytest
import torch
from scipy import stats

from genrec.train.noise import KeyedNoise, UserNoise, WindowNoise, mix32


def _lowbias32(x: int) -> int:
    """C. Wellons' lowbias32, on Python integers (the reference)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def test_mix32_matches_the_reference_on_the_whole_32_bit_range():
    rng = np.random.default_rng(0)
    xs = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, *rng.integers(0, 2**32, 2000).tolist()]
    got = mix32(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert got == [_lowbias32(x) for x in xs]


def test_uniforms_are_uniform_and_in_the_unit_interval():
    u = KeyedNoise(7, 3).rand_rows(torch.arange(2000), 100, "t").reshape(-1).double().numpy()
    assert 0 < u.min() and u.max() <= 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert abs(u.mean() - 0.5) < 3e-3 and abs(u.var() - 1 / 12) < 2e-3


def test_normals_are_standard_normal():
    z = KeyedNoise(1, 0).randn_rows(torch.arange(1000), 200, "eps").reshape(-1).double().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert np.isfinite(z).all()


def test_neighbouring_keys_are_uncorrelated():
    u = KeyedNoise(0, 0).rand_rows(torch.arange(5000), 2, "t").double().numpy()
    for a, b in ((u[:-1, 0], u[1:, 0]), (u[:, 0], u[:, 1])):  # next user; next column
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_seed_step_and_salt_each_change_every_number():
    users = torch.arange(50)
    base = KeyedNoise(0, 0).rand_rows(users, 8, "a")
    for other in (
        KeyedNoise(1, 0).rand_rows(users, 8, "a"),
        KeyedNoise(0, 1).rand_rows(users, 8, "a"),
        KeyedNoise(0, 0).rand_rows(users, 8, "b"),
        KeyedNoise(2**40, 0).rand_rows(users, 8, "a"),  # the seed's high bits count too
    ):
        assert (other != base).float().mean() > 0.99


def test_a_users_numbers_do_not_depend_on_its_batch():
    noise = KeyedNoise(5, 11)
    everyone = noise.randn_rows(torch.arange(10), 6, "eps")
    some = torch.tensor([7, 2, 9])
    torch.testing.assert_close(noise.randn_rows(some, 6, "eps"), everyone[some], rtol=0, atol=0)


def test_entry_uniforms_are_keyed_by_user_and_item():
    noise = KeyedNoise(0, 4)
    # user 3 with items [1, 4] alone, and in a batch after user 8 with items [0, 2, 5]
    alone = UserNoise(noise, torch.tensor([3])).entries(
        torch.tensor([0, 2]), torch.tensor([1, 4]), "dropout"
    )
    batch = UserNoise(noise, torch.tensor([8, 3])).entries(
        torch.tensor([0, 3, 5]), torch.tensor([0, 2, 5, 1, 4]), "dropout"
    )
    torch.testing.assert_close(batch[3:], alone, rtol=0, atol=0)
    assert not torch.equal(batch[:2], alone)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_keyed_dropout_keeps_the_expected_share(p):
    from genrec.models.nn_blocks import dropout_values

    n_users, n_items = 400, 50
    indptr = torch.arange(0, n_users * n_items + 1, n_items)
    indices = torch.arange(n_items).repeat(n_users)
    values = torch.ones(n_users * n_items)
    rng = UserNoise(KeyedNoise(0, 0), torch.arange(n_users))
    out = dropout_values(values, p, rng, indptr, indices)
    kept = (out > 0).double().mean().item()
    assert abs(kept - (1 - p)) < 0.01
    assert torch.allclose(out[out > 0], torch.tensor(1 / (1 - p)))
    with pytest.raises(ValueError, match="needs the rows' indptr and indices"):
        dropout_values(values, p, rng)


def test_keyed_dropout_of_dense_rows_is_keyed_by_user_and_column():
    from genrec.models.nn_blocks import dropout_values

    noise = KeyedNoise(3, 2)
    x = torch.ones(4, 300)
    all4 = dropout_values(x, 0.3, UserNoise(noise, torch.arange(4)))
    two = dropout_values(x[:2], 0.3, UserNoise(noise, torch.tensor([2, 3])))
    torch.testing.assert_close(two, all4[2:], rtol=0, atol=0)
    assert abs((all4 > 0).double().mean().item() - 0.7) < 0.05


def test_keyed_timesteps_follow_the_sampler_distribution():
    from genrec.models.diffrec import TimestepSampler

    s = TimestepSampler(5, 2)
    users = UserNoise(KeyedNoise(0, 0), torch.arange(20000))
    t, pt = s.sample(20000, users, "uniform")
    counts = np.bincount(t.numpy(), minlength=5) / 20000
    assert t.min() >= 0 and t.max() <= 4 and np.abs(counts - 0.2).max() < 0.015
    assert torch.all(pt == 1)
    s.lt_history.copy_(torch.tensor([[1.0, 1], [4, 4], [1, 1], [1, 1], [1, 1]]))
    s.lt_count.fill_(2)
    t, pt = s.sample(20000, users, "importance", uniform_prob=0.0)
    counts = np.bincount(t.numpy(), minlength=5) / 20000
    from genrec.models.diffrec import importance_probs

    p = importance_probs(s.lt_history, 0.0).numpy()
    assert np.abs(counts - p).max() < 0.015
    np.testing.assert_allclose(pt.numpy(), p[t.numpy()] * 5)


# ----------------------------------------------------------------------------- windows
def _windows(keys, **kw) -> WindowNoise:
    return WindowNoise(KeyedNoise(5, 9), torch.as_tensor(keys, dtype=torch.int64), **kw)


def test_window_draws_are_keyed_by_position_from_the_end_not_the_batch():
    # a window trimmed to 4 columns and the same rows at 7 columns (3 more leading padding
    # columns), the rows in another order and beside another row: the same numbers at the
    # shared positions
    a = _windows([3, 8]).uniform((2, 4, 5))  # (B, L, D)
    b = _windows([11, 8, 3]).uniform((3, 7, 5))
    torch.testing.assert_close(a[0], b[2, 3:], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1, 3:], rtol=0, atol=0)
    # attention weights (B, H, Lq, Lk): both position dims from the end
    a = _windows([3]).uniform((1, 2, 4, 4), ends=(2, 3))
    b = _windows([3]).uniform((1, 2, 6, 6), ends=(2, 3))
    torch.testing.assert_close(a[0], b[0, :, 2:, 2:], rtol=0, atol=0)


def test_window_draws_differ_between_sites_rows_and_positions():
    w = _windows([1, 2])
    first, second = w.uniform((2, 6, 8)), w.uniform((2, 6, 8))  # two dropouts of one step
    assert w.site == 2
    assert (first != second).float().mean() > 0.99
    assert (first[0] != first[1]).float().mean() > 0.99
    assert (first[:, 0] != first[:, 1]).float().mean() > 0.99
    u = _windows(np.arange(200)).uniform((200, 10, 10)).numpy().ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert u.min() > 0 and u.max() <= 1


def test_window_index_keys_a_dim_by_the_given_integers():
    w = _windows([4], index={1: torch.tensor([99, 1, 0])})
    v = _windows([4])
    a = w.uniform((1, 3, 2))  # slot 0 keyed by 99, the others as from the end
    b = v.uniform((1, 3, 2))
    torch.testing.assert_close(a[0, 1:], b[0, 1:], rtol=0, atol=0)
    assert (a[0, 0] != b[0, 0]).all()


def test_shared_draws_are_the_same_for_every_batch_and_items_in_range():
    a = _windows([1, 2, 3]).items((50,), 7, shared=True)
    b = _windows([9]).items((50,), 7, shared=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.min() >= 0 and a.max() < 7 and len(set(a.tolist())) == 7
    neg = _windows(np.arange(100)).items((100, 30), 11)
    counts = np.bincount(neg.numpy().ravel(), minlength=11)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sequence_loss_terms_count_the_positions_that_read_an_item_and_have_a_target():
    """What a distributed run weights each rank's mean loss by (docs/scaling.md)."""
    from genrec.models import SASRec
    from genrec.models.sequential import SeqBatch

    m = SASRec()
    a = SeqBatch(torch.tensor([[0, 1, 2], [3, 4, 5]]), torch.tensor([[0, 2, 3], [4, 5, 6]]))
    b = SeqBatch(torch.tensor([[0, 0, 7]]), torch.tensor([[0, 0, 8]]))
    assert (m.loss_terms(a), m.loss_terms(b)) == (5, 1)


def test_items_at_equals_drawing_every_position_and_keeping_the_true_ones():
    where = torch.tensor([[False, True, True, True], [False, False, True, False]])
    full = _windows([4, 7]).items((2, 4, 5), 1000)[where]  # (N, 5)
    some = _windows([4, 7]).items_at(where, 5, 1000)
    torch.testing.assert_close(some, full, rtol=0, atol=0)


def test_keyed_items_are_uniform_for_a_catalogue_past_float32_resolution():
    # float32 uniforms have 2^23 values in [0.5, 1): at 2^24 + 3 items every other item of
    # the top half could not be drawn that way. Each item must stay within its n / 2^32 share.
    n = 2**24 + 3
    h = torch.arange(0, 2**32, 2**8, dtype=torch.int64)  # 2^24 evenly spaced bit patterns
    items = (h * n) >> 32
    assert int(items.min()) == 0 and int(items.max()) >= n - 2**8
    counts = torch.bincount(items, minlength=n)
    assert int(counts.max()) <= 1  # 2^24 patterns over 2^24 + 3 items: none twice
    draws = _windows(np.arange(64)).items((64, 4096), n)
    top = draws[draws >= n // 2]
    assert (top % 2 == 1).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_keyed_noise_without_the_batch_users_is_an_error():
    from genrec.errors import ConfigError
    from genrec.train import Phase, StepContext

    ctx = StepContext(0, 0, Phase(), torch.Generator(), torch.device("cpu"), "fp32", None, 3)
    with pytest.raises(ConfigError, match="keyed noise .* needs the batch's users"):
        ctx.windows_rng(None)
    with pytest.raises(ConfigError, match="keyed noise .* needs the batch's users"):
        ctx.rng_for(None)
    assert isinstance(ctx.windows_rng(torch.tensor([1, 2])), WindowNoise)
