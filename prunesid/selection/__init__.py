"""PruneSID on tensors: :func:`select` and its result :class:`Selection` (docs/SPEC.md).

One module per stage, in the order :func:`select` (stages.py) runs them:

- validate.py: inputs and settings checked up front;
- redundancy.py: rho (and phi = 1 - rho) from the pair sums of the unit tokens;
- dynamic.py: PruneSID-Dyn's per-view budgets, in proportion to phi;
- grouping (prunesid/grouping.py, PSCA in psca.py with the eigensolvers of linalg.py);
- nms.py and nms_blocks.py: greedy NMS inside each group (ranking.py: orders within groups);
- quotas.py: tokens kept per group;
- order.py: the kept indices, in the order the language model receives them.

explain.py reads a finished selection back: why one token was kept or dropped.
"""

from prunesid.selection.explain import STATUSES, TokenDecision, explain
from prunesid.selection.order import ORDERS
from prunesid.selection.redundancy import redundancy
from prunesid.selection.result import Selection
from prunesid.selection.stages import select
from prunesid.selection.validate import validate_settings

__all__ = ["ORDERS", "STATUSES", "Selection", "TokenDecision", "explain", "redundancy", "select", "validate_settings"]
