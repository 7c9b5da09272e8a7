"""Quality assessment of linear HDR images.

Owns PU21 encoding (``pu21``), HDR quality metrics against published check values and their
libraries, over the whole image or the photo's highlights and shadows (``metrics``), the SI-HDR
CRF correction that maps a test onto its reference before scoring (``crf``), the simulated camera
that makes LDR test inputs from HDR (``camera``), classical
inverse-tone-mapping baselines (``baselines``), exposure strips (``exposure``), dynamic-range
statistics and histograms (``stats``) and their text rendering (``render``), temporal consistency
(``temporal``: warping frames along optical flow and the warping error of Lai et al. 2018 on log
luminance; the flow itself is computed in ``lediff_core.video.flow``) and HDR test clips with
known motion, pans across an equirect HDRI (``clips``). numpy/torch/PIL/scipy only. May import
``lediff_core.color``; never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
