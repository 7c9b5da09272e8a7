"""ComfyUI adapters over ``lediff_core``, in the same domain packages (model, io, color, qa,
panorama, lens). A node validates its inputs, calls the core, and wraps the result; each package lists its
nodes in ``NODES``, which the pack's ``__init__.py`` registers. Nodes may import ``lediff_core``,
ComfyUI and each other; ``lediff_core`` never imports them. See docs/ARCHITECTURE.md.
"""

from . import color, io, lens, model, panorama, qa

NODES = [*model.NODES, *panorama.NODES, *io.NODES, *color.NODES, *qa.NODES, *lens.NODES]
