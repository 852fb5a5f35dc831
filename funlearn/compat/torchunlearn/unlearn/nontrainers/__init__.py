"""``torchunlearn.unlearn.nontrainers``: one module per method, as in torchunlearn."""

from funlearn.compat.torchunlearn.unlearn.nontrainers import fisherforget, influence  # noqa: F401
