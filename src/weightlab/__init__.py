"""weightlab: decompose, adapt and predict neural-network weights.

Two published methods, end to end:

* RECAST (template-bank reparameterisation + Neural Mimicry): :mod:`weightlab.recast`
* KNOW / KNOWN (weight prediction from progressive forgetting): coming in :mod:`weightlab.know`
"""

from weightlab.errors import WeightlabError

__version__ = "0.1.0"
__all__ = ["WeightlabError", "__version__"]
