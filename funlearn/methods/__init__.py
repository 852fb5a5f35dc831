"""Unlearning methods: pure objectives plus gradient transformations, and named presets."""

from funlearn.methods.base import Batch, Method, Metrics, Objective, gradient_method
from funlearn.methods.objectives import (
    LogitRelabel,
    Relabel,
    cross_entropy_on,
    forget_ce,
    negate,
    on_subset,
    retain_ce,
    split_batch,
    teacher_kl,
    weighted_sum,
)
from funlearn.methods.relabel import (
    best_wrong_class,
    fgsm_relabel,
    random_labels,
    uniform_relabel,
)
from funlearn.methods.reference import ReferenceState, frozen_copy, reference_method
from funlearn.methods.finetune import finetune
from funlearn.methods.neggrad import neggrad, neggrad_plus
from funlearn.methods.random_label import random_label, random_label_objective
from funlearn.methods.l1_sparse import l1_sparse
from funlearn.methods.uam import perturb_descend_method, uam
from funlearn.methods.salun import saliency_mask, saliency_scores, salun
from funlearn.methods.scrub import ScrubState, scrub
from funlearn.methods.bad_teacher import bad_teacher
from funlearn.methods.boundary_shrink import boundary_shrink
from funlearn.methods.fisher_forget import fisher_forget, fisher_noise, output_layer
from funlearn.methods.influence import influence

__all__ = [
    "Batch",
    "Method",
    "Metrics",
    "Objective",
    "gradient_method",
    # objectives and combinators
    "LogitRelabel",
    "Relabel",
    "cross_entropy_on",
    "forget_ce",
    "negate",
    "on_subset",
    "retain_ce",
    "split_batch",
    "teacher_kl",
    "weighted_sum",
    # relabellers
    "best_wrong_class",
    "fgsm_relabel",
    "random_labels",
    "uniform_relabel",
    # frozen reference models
    "ReferenceState",
    "reference_method",
    "frozen_copy",
    # step rule with two objectives
    "perturb_descend_method",
    # saliency
    "saliency_mask",
    "saliency_scores",
    # presets
    "finetune",
    "neggrad",
    "neggrad_plus",
    "random_label",
    "random_label_objective",
    "l1_sparse",
    "uam",
    "salun",
    "ScrubState",
    "scrub",
    "bad_teacher",
    "boundary_shrink",
    # closed-form presets (second-order toolkit)
    "output_layer",
    "fisher_noise",
    "fisher_forget",
    "influence",
]
