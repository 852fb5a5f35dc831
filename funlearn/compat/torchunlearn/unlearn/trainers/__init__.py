"""``torchunlearn.unlearn.trainers``: one module per trainer, as in torchunlearn."""

from funlearn.compat.torchunlearn.unlearn.trainers import (  # noqa: F401
    badteacher,
    boundaryshrink,
    finetune,
    l1sparse,
    neggrad,
    randomlabel,
    salun,
    scrub,
    standard,
)
