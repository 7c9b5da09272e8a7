"""What the tests share, written once: paths and tools (``common``), tiny random-weight models in the
official layouts (``tiny_models``, ``train_models``), the in-process ComfyUI (``comfy_harness``) and a
real server (``comfy_server``, ``frontends``), API graphs and their inputs (``graphs``, ``workflows``,
``sequences``), independent colour references (``color``) and test clips (``clips``).

Modules that start or drive ComfyUI (``comfy_harness``, ``comfy_server``, ``frontends``, ``graphs``,
``workflows``, ``big_photo``) are for the host tests only: tests/core imports none of them
(tests/e2e/test_layout.py checks it)."""
