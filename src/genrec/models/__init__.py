"""Models, and the registry that maps CLI names to model classes.

The registry is an explicit dict: adding a model means importing its class here and adding
one line. ``Recommender.load`` rebuilds saved models through it.
"""

from __future__ import annotations

from genrec.errors import ConfigError
from genrec.models.autorec import AutoRec, AutoRecConfig
from genrec.models.base import RatingPredictor, Recommender
from genrec.models.bert4rec import BERT4Rec, BERT4RecConfig
from genrec.models.biased_mf import BiasedMF, BiasedMFConfig
from genrec.models.bpr_mf import BPRMF, BPRMFConfig
from genrec.models.cdae import CDAE, CDAEConfig
from genrec.models.diffrec import DiffRec, DiffRecConfig
from genrec.models.ease import EASE, EASEConfig
from genrec.models.fm import FM, FMConfig
from genrec.models.gaussian_vae import GaussianVAE, GaussianVAEConfig
from genrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from genrec.models.hstu import HSTU, HSTUConfig
from genrec.models.ldiffrec import LDiffRec, LDiffRecConfig
from genrec.models.mult_dae import MultDAE, MultDAEConfig
from genrec.models.mult_vae import MultVAE, MultVAEConfig
from genrec.models.p5 import P5, P5Config
from genrec.models.popularity import Popularity, PopularityConfig
from genrec.models.recvae import RecVAE, RecVAEConfig
from genrec.models.sasrec import SASRec, SASRecConfig
from genrec.models.tiger import TIGER, TIGERConfig
from genrec.models.transition import Transition, TransitionConfig
from genrec.models.vq_vae import VQVAE, VQVAEConfig

MODELS: dict[str, type[Recommender]] = {
    "popularity": Popularity,
    "ease": EASE,
    "gaussian-vae": GaussianVAE,
    "mult-vae": MultVAE,
    "mult-dae": MultDAE,
    "vq-vae": VQVAE,
    "recvae": RecVAE,
    "cdae": CDAE,
    "diffrec": DiffRec,
    "ldiffrec": LDiffRec,
    "biased-mf": BiasedMF,
    "bpr-mf": BPRMF,
    "fm": FM,
    "autorec": AutoRec,
    "transition": Transition,
    "gru4rec": GRU4Rec,
    "bert4rec": BERT4Rec,
    "hstu": HSTU,
    "sasrec": SASRec,
    "tiger": TIGER,
    "p5": P5,
}


def get_model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name`` (case-insensitive, '-' and '_' alike)."""
    key = name.lower().replace("_", "-")
    aliases = {k.replace("_", "-"): v for k, v in MODELS.items()}
    if key not in aliases:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return aliases[key]


__all__ = [
    "MODELS",
    "get_model_class",
    "Recommender",
    "RatingPredictor",
    "EASE",
    "EASEConfig",
    "GaussianVAE",
    "GaussianVAEConfig",
    "MultVAE",
    "MultVAEConfig",
    "MultDAE",
    "MultDAEConfig",
    "VQVAE",
    "VQVAEConfig",
    "TIGER",
    "TIGERConfig",
    "P5",
    "P5Config",
    "RecVAE",
    "RecVAEConfig",
    "CDAE",
    "CDAEConfig",
    "Popularity",
    "PopularityConfig",
    "DiffRec",
    "DiffRecConfig",
    "LDiffRec",
    "LDiffRecConfig",
    "BiasedMF",
    "BiasedMFConfig",
    "BPRMF",
    "BPRMFConfig",
    "FM",
    "FMConfig",
    "AutoRec",
    "Transition",
    "TransitionConfig",
    "HSTU",
    "HSTUConfig",
    "SASRec",
    "SASRecConfig",
    "AutoRecConfig",
    "GRU4Rec",
    "GRU4RecConfig",
    "BERT4Rec",
    "BERT4RecConfig",
]
