"""genrec: generative recommender systems, from matrix factorization to diffusion.

Importing the package changes no global state (no seeding, no default dtype, no
environment switches).
"""

__version__ = "0.1.0"
