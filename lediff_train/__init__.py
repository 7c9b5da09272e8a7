"""The LEDiff training recipe: make and improve the models the nodes load (``python -m lediff_train``).

No training code was released with LEDiff; this package follows the paper's recipe (see
docs/training.md): ``prepare`` simulates exposure brackets from HDR images and caches their latents,
``decoder`` trains the exposure fusion and the HDR decoder in log space (stage 1), ``denoiser``
trains a highlight or shadow bracket denoiser (stage 2), ``export`` writes the official download
layout. It imports ``lediff_core`` (the VAE, fusion, camera simulation, readers, equirect maths),
torch, diffusers (UNet, noise schedule), transformers (the captions' CLIP text encoder) and
accelerate (devices, mixed precision, accumulation, distribution) — never ComfyUI or ``nodes/``.
"""
