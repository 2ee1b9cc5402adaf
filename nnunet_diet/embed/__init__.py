"""MedDEL adapters: embedding extraction to disk (sharded, resumable) and k-means clustering.

:mod:`.sources` reads images (MedMNIST ``.npz``, nnU-Net raw or preprocessed folders), :mod:`.encoders`
turns them into vectors, :mod:`.run` writes them with :mod:`.store`, :mod:`.cluster` runs k-means;
the near-duplicate removal itself is the framework-free :mod:`nnunet_diet.core.meddel`.
"""

from .cluster import default_clusters, kmeans
from .store import Embeddings, load_embeddings

__all__ = ["kmeans", "default_clusters", "Embeddings", "load_embeddings"]
