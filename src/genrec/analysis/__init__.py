"""What a model learned about people: user embeddings, clusters, maps and cluster profiles.

Typical use (what ``genrec clusters`` does)::

    Z = model_user_embeddings(model, X, users)     # (U, K) encoder means, user factors
    result = fit_clusters(Z, k=8, method="gmm")    # labels, probabilities, silhouette
    xy = embed_2d(Z, method="tsne")                # (U, 2) map
    profiles = cluster_profiles(result.labels, X, dataset_meta)
"""

from genrec.analysis.clustering import Clustering, fit_clusters, reduce_dim, select_k
from genrec.analysis.embeddings import model_user_embeddings, svd_embeddings
from genrec.analysis.maps import embed_2d
from genrec.analysis.profiles import ItemUserMeta, cluster_profiles

__all__ = [
    "Clustering",
    "fit_clusters",
    "reduce_dim",
    "select_k",
    "model_user_embeddings",
    "svd_embeddings",
    "embed_2d",
    "ItemUserMeta",
    "cluster_profiles",
]
