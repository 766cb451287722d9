"""weightlab: decompose, adapt and predict neural-network weights.

Two published methods, end to end:

* RECAST (template-bank reparameterisation + Neural Mimicry): :mod:`weightlab.recast`
* KNOW / KNOWN (weight prediction from progressive forgetting): :mod:`weightlab.know`

Shared layers: :mod:`weightlab.models` (zoo, ``ModelCfg``, family table), :mod:`weightlab.data` (data sets,
tasks), :mod:`weightlab.engine` (the one training loop), :mod:`weightlab.registry` (one registration
pattern). Applications on top: :mod:`weightlab.bench` (suites, runners, tables, plots, quickstart) and
:mod:`weightlab.cli`.
"""

from weightlab.errors import WeightlabError

__version__ = "0.1.0"
__all__ = ["WeightlabError", "__version__"]
