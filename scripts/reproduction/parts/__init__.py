"""The part registry: every module here that defines ``PART`` (a
:class:`reproduction.parts.Part`) is a part of ``scripts/reproduce``, named
after its module (``parts/co3.py`` -> ``scripts/reproduce co3``) and placed in
docs/reproduction.md by its ``order``.

To add a part, add one file ``parts/<name>.py``::

    from reproduction.common import Ctx, Section
    from reproduction.parts import Part

    def run(ctx: Ctx) -> Section:
        ctx.fresh_runs()            # runs/reproduce/<name>/, emptied
        ...                         # train / capture / encode; read the outputs
        ...                         # write ctx.docs / "<name>.png"
        return Section(body=..., verdict=..., summary=...)

    PART = Part(order=60, title="...", claim="...", run=run)

``body`` is the section's Markdown below its heading (setting, command, tables,
``ctx.image("<name>.png", ...)``, criteria and the computed verdict); the
driver adds the heading, the verdict line and the timing line, writes
docs/reproduction/<name>.md and re-assembles docs/reproduction.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from reproduction.common import Ctx, Section


@dataclass
class Part:
    order: int
    title: str
    claim: str  # one line: the paper and what it claims (for the overview table)
    run: Callable[[Ctx], Section]
    name: str = ""


def registry() -> dict[str, Part]:
    """name -> Part, in document order."""
    parts = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        part = getattr(module, "PART", None)
        if isinstance(part, Part):
            part.name = info.name
            parts.append(part)
    parts.sort(key=lambda p: (p.order, p.name))
    return {p.name: p for p in parts}
