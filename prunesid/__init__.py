"""PruneSID: training-free vision-token compression for VLMs (ICLR 2026).

``select()`` runs the algorithm on tensors; the rest of the package runs it inside
Hugging Face transformers vision-language models.
"""

from prunesid.defaults import default_groups, default_lam, group_cap
from prunesid.grouping import GROUPINGS, register_grouping
from prunesid.selection import Selection, select

__all__ = [
    "GROUPINGS",
    "Selection",
    "default_groups",
    "default_lam",
    "group_cap",
    "register_grouping",
    "select",
]
__version__ = "0.1.0"
