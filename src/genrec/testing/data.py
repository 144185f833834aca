"""Small synthetic data the checks fit on: interaction and rating checkerboards, and a
matrix's rows as ordered histories for sequential models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from genrec.data.sequences import Sequences


# ----------------------------------------------------------------------------- data
def checkerboard(
    n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users of group g like the items of block g; each user's "diagonal" item is withheld.

    User ``j`` of group ``g`` has every item of block ``g`` but item
    ``g * items_per_group + j % items_per_group``.

    Parameters
    ----------
    n_groups : int
        Number of user groups (and item blocks).
    users_per_group, items_per_group : int
        Users in each group, items in each block.

    Returns
    -------
    X : csr_matrix of float32, shape (n_groups * users_per_group, n_groups * items_per_group)
        The 0/1 training matrix.
    withheld : ndarray of int64, shape (n_users,)
        The withheld item of each user.
    """
    U, I = n_groups * users_per_group, n_groups * items_per_group
    X = np.zeros((U, I), np.float32)
    withheld = np.zeros(U, np.int64)
    for g in range(n_groups):
        for j in range(users_per_group):
            u = g * users_per_group + j
            X[u, g * items_per_group : (g + 1) * items_per_group] = 1
            withheld[u] = g * items_per_group + (j % items_per_group)
            X[u, withheld[u]] = 0
    return sp.csr_matrix(X), withheld


def rating_checkerboard(
    n_groups: int = 2, users_per_group: int = 12, items_per_group: int = 12
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Ratings 5 in the user's block (one withheld item per user), 1 on half the other blocks.

    On all-ones implicit data a rating model has nothing to learn (every rating is 1); here
    the withheld in-block item must outrank the unseen other-block items. User ``u`` rates
    other-block item ``j`` 1 when ``u + j`` is even.

    Parameters
    ----------
    n_groups, users_per_group, items_per_group : int
        As in :func:`checkerboard`.

    Returns
    -------
    R : csr_matrix of float32, shape (n_users, n_items)
        The rating matrix (ratings 1 and 5).
    withheld : ndarray of int64, shape (n_users,)
        Each user's withheld item.
    """
    X, withheld = checkerboard(n_groups, users_per_group, items_per_group)
    R = X.toarray() * 5.0
    U, I = R.shape
    for u in range(U):
        g = u // users_per_group
        for j in range(I):
            if j // items_per_group != g and (u + j) % 2 == 0:
                R[u, j] = 1.0
    return sp.csr_matrix(R.astype(np.float32)), withheld


def in_random_order(X: sp.csr_matrix, seed: int = 0) -> Sequences:
    """Each row's items in a seeded random order: the matrix as ordered histories, for the
    tables that walk every registered model (a sequential model refuses a matrix).

    ``in_random_order(X).to_csr()`` has the sparsity pattern of ``X`` (values become 1).
    """
    X = sp.csr_matrix(X)
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(X.indices[X.indptr[u] : X.indptr[u + 1]]) for u in range(X.shape[0])]
    return Sequences.from_lists([r.tolist() for r in rows], X.shape[1])
