"""ComfyUI adapters over ``lediff_core``, one module per domain."""
