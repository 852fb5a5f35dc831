"""The torchunlearn-compatible layer: torchunlearn's names and call shapes, run by funlearn's core.

Scripts import :mod:`funlearn.compat.torchunlearn` (which mirrors torchunlearn's import paths)
instead of ``torchunlearn``. The implementation: ``robmodel`` (``RobModel``, ``load_model``, weight
files), ``data`` (``UnlearnDataSetup``, ``MergedLoaders``), ``options``/``optim`` (option strings
parsed with ``ast`` against allow-lists, never ``eval``), ``records`` (the record table and
``save_best``), ``trainer``/``trainers`` (``setup``/``record_rob``/``fit`` on :func:`funlearn.run`),
``nontrainers`` (``FisherForget``, ``Influence``) and ``evaluation`` (``UnlearningEvaluator``,
``compare``, ``BenchmarkSuite``). These names are not re-exported at ``funlearn.*``.
"""

from funlearn.compat.options import OptionCall, parse_option

__all__ = ["OptionCall", "parse_option"]
