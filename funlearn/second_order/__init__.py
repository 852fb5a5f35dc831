"""Second-order toolkit: per-sample gradients, Fisher diagonals, curvature-vector products,
inverse solvers and Newton (influence) removal, vectorised with ``torch.func`` and per-layer
closed forms."""

from funlearn.second_order.fisher import fisher_diagonal, legacy_batch_mean_fisher
from funlearn.second_order.hvp import (
    BatchLoss,
    batch_loss,
    data_grad,
    empirical_fisher_vp,
    ggn_vp,
    hvp,
    sampled_hvp,
)
from funlearn.second_order.layerwise import LayerwiseEngine, layerwise_engine
from funlearn.second_order.per_sample import (
    SampleLoss,
    per_sample_grad_norms,
    per_sample_grads,
    sample_loss,
    squared_grad_sum,
)
from funlearn.second_order.removal import NewtonStep, newton_removal, newton_step
from funlearn.second_order.selection import (
    ClasswiseRule,
    ClosedFormResult,
    RandomForgettingRule,
    SelectionRule,
    default_rule,
)
from funlearn.second_order.solvers import (
    SolveResult,
    cg,
    dense_solve,
    hessian_matrix,
    legacy_woodfisher,
    lissa,
    woodfisher,
)

__all__ = [
    # per-sample gradients
    "SampleLoss",
    "sample_loss",
    "per_sample_grads",
    "per_sample_grad_norms",
    "squared_grad_sum",
    "LayerwiseEngine",
    "layerwise_engine",
    # Fisher
    "fisher_diagonal",
    "legacy_batch_mean_fisher",
    # curvature products
    "BatchLoss",
    "batch_loss",
    "data_grad",
    "hvp",
    "sampled_hvp",
    "ggn_vp",
    "empirical_fisher_vp",
    # solvers
    "SolveResult",
    "cg",
    "lissa",
    "woodfisher",
    "legacy_woodfisher",
    "hessian_matrix",
    "dense_solve",
    # Newton removal and alpha selection
    "NewtonStep",
    "newton_step",
    "newton_removal",
    "SelectionRule",
    "RandomForgettingRule",
    "ClasswiseRule",
    "default_rule",
    "ClosedFormResult",
]
