"""What the tests share, written once (the fixtures are in tests/conftest.py):

- ``common``: the repository's paths, the test data, required command-line tools, a small tmpfs disk;
- ``tiny_models``, ``train_models``: tiny random-weight models in the official LEDiff, SD1.5 and SDXL
  layouts (diffusers writes them), and the training recipe's MODEL folders and runs;
- ``exr_files``: EXRs written by the official bindings and read back by Debian's exrheader, the test
  HDRIs, what the savers published;
- ``color``, ``clips``: independent colour references (RP 177, PyOpenColorIO, BT.2100 curves) and
  test clips (a pan across a real HDRI, a real LDR video);
- ``attacks``, ``fifos``, ``permissions``: the crafted files and configs of issue 25, a watchdog for
  FIFOs, the reference modes of issue 24;
- host helpers: ``comfy_harness`` (the in-process ComfyUI), ``comfy_server`` and ``frontends`` (a real
  server, the frontends the browser tests use), ``graphs``, ``sequences`` and ``workflows`` (API graphs,
  the example workflows), ``big_photo`` (a memory-capped child process);
- ``ddp_stage1``: the workers of the two-process training test (spawned processes import them by name).

tests/core imports none of the host helpers (tests/e2e/test_layout.py checks it)."""
