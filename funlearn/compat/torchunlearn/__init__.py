"""torchunlearn's import paths on funlearn: change only the import line of a torchunlearn script.

    import funlearn.compat.torchunlearn as torchunlearn
    from funlearn.compat.torchunlearn.utils.data import UnlearnDataSetup, MergedLoaders
    from funlearn.compat.torchunlearn.unlearn.trainers.finetune import Finetune

The modules of this package only re-export; the implementation lives in :mod:`funlearn.compat`
(``robmodel``, ``data``, ``optim``, ``records``, ``trainer``, ``trainers``, ``nontrainers``,
``evaluation``). Mirrored: ``RobModel``, ``load_model``, ``utils.data``, ``utils.load_model``,
``nn.robmodel``, ``unlearn`` (and ``unlearn.trainers.<module>``, ``unlearn.nontrainers.<module>``
for the methods below), ``metrics`` and ``benchmarks``. Not provided: the adversarial attacks,
``Datasets``, ``RecordManager``, ARU, AMUN, SFRon, MUMis, RFE, NegMerge, SISA and REM.
"""

from funlearn.compat.torchunlearn import benchmarks, metrics, nn, unlearn, utils
from funlearn.compat.torchunlearn.nn.robmodel import RobModel
from funlearn.compat.torchunlearn.unlearn import (
    SCRUB,
    BadTeacher,
    BoundaryShrink,
    Finetune,
    FisherForget,
    Influence,
    L1Sparse,
    NegGrad,
    RandomLabel,
    SalUn,
    Standard,
    Trainer,
)
from funlearn.compat.torchunlearn.utils import load_model

__all__ = [
    "RobModel", "load_model", "benchmarks", "metrics", "nn", "unlearn", "utils",
    "Finetune", "NegGrad", "RandomLabel", "L1Sparse", "Standard", "SCRUB", "BadTeacher", "BoundaryShrink",
    "SalUn", "FisherForget", "Influence", "Trainer",
]  # fmt: skip
