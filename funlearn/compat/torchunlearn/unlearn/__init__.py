"""``torchunlearn.unlearn``: the trainers and non-trainers funlearn.compat provides."""

from funlearn.compat.nontrainers import FisherForget, Influence
from funlearn.compat.trainer import Trainer
from funlearn.compat.trainers import (
    SCRUB,
    BadTeacher,
    BoundaryShrink,
    Finetune,
    L1Sparse,
    NegGrad,
    RandomLabel,
    SalUn,
    Standard,
)
from funlearn.compat.torchunlearn.unlearn import nontrainers, trainers

__all__ = [
    "Finetune", "NegGrad", "RandomLabel", "L1Sparse", "Standard", "SCRUB", "BadTeacher", "BoundaryShrink",
    "SalUn", "FisherForget", "Influence", "Trainer", "trainers", "nontrainers",
]  # fmt: skip
