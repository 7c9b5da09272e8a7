"""Quality assessment of linear HDR images.

Owns PU21 encoding (``pu21``), full-reference metrics against published check values
(``metrics``), the simulated camera that makes LDR test inputs from HDR (``camera``), classical
inverse-tone-mapping baselines (``baselines``), exposure strips (``exposure``), dynamic-range
statistics and histograms (``stats``) and their text rendering (``render``). numpy/torch/PIL/scipy
only. May import ``lediff_core.color``; never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
