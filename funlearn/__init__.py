"""funlearn: machine unlearning for PyTorch in a functional, optax-like style.

Everything public is re-exported here, flat: ``funlearn.sgd``, ``funlearn.functional``,
``funlearn.per_sample_grads``... Each subpackage lists its public names in ``__all__``.
"""

from funlearn._version import __version__ as __version__
from funlearn import random as random, tree as tree
from funlearn.autodiff import value_and_grad as value_and_grad
from funlearn.model import *  # noqa: F401,F403
from funlearn.io import *  # noqa: F401,F403
from funlearn.losses import *  # noqa: F401,F403
from funlearn.transforms import *  # noqa: F401,F403
from funlearn.models import *  # noqa: F401,F403
from funlearn.data import *  # noqa: F401,F403
from funlearn.second_order import *  # noqa: F401,F403
from funlearn.methods import *  # noqa: F401,F403
from funlearn.engine import *  # noqa: F401,F403
from funlearn.evaluation import *  # noqa: F401,F403
from funlearn.experiment import *  # noqa: F401,F403
