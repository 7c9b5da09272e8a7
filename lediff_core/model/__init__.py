"""The LEDiff method: the networks, their weights, and the steps around them.

Owns the SD VAE and LEDiff's HDR VAE (``vae``, ``hdr_vae``: encoder, HDR decoder with its
log-to-linear output), the exposure fusion module (``fusion``), strict loading of the official
weights and their conversion to single files (``weights``, ``convert``: ``python -m
lediff_core.model.convert``), the check of a config against its weights before any model is built
(``fit``), the backbones LEDiff runs on, one record each, and the one answer to "which backbone is
this config?" (``backbones``), the 8-channel UNet's configuration (``unet_config``), the tiling policy
every tile loop uses (``tiling``) and the paper's post-process blend with the LDR (``blend``).
May import ``lediff_core.color`` and ``lediff_core.io`` (the converter publishes through
``io.publish``); never ComfyUI, ``nodes`` or ``lediff_runner``.
"""
