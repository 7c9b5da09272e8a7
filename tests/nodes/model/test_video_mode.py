"""frames = video on Highlight Bracket and Blend with LDR, in a genuine ComfyUI, measured with the
warping error (lediff_core.qa.temporal) on a synthetic pan across a real CC0 HDRI (known motion,
ground-truth HDR) and on a real LDR clip (flow from OpenCV): in video mode the warping error of the
calibrated HDR inside the clipped regions is at most half of independent mode's with the same
seed, and its per-frame mean log luminance varies no more than the ground truth's plus 0.05 stops.
With random fixture weights the hallucination is noise; consistent noise is still measurable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lediff_core.qa.camera import Camera, exposure_for_clip_share
from lediff_core.qa.temporal import log_luminance, warp, warping_error
from lediff_core.video.flow import flow_with_visibility
from lediff_core.video.temporal import resize_flow
from support.clips import real_ldr_clip, synthetic_pan
from support.graphs import MODEL, conditioning, interrupted_at_third_evaluation, load_denoiser

STEPS = 3


def run_clip(host, models, ldr, frames, seed=1, **bracket):
    """Photo frames -> VAE Encode -> Highlight Bracket -> fusion -> HDR Decode -> Blend with LDR
    (percentile anchor), every node with the given ``frames`` mode; the calibrated HDR [T, H, W, 3]."""
    hdr_vae, vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args
    pixels = torch.from_numpy(np.ascontiguousarray(ldr))
    latent = host.node_class("VAEEncode")().encode(vae, pixels)[0]
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    dark, mid, bright = host.node_class("LEDiffHighlightBracket").execute(
        load_denoiser(host), pos, neg, latent, seed, STEPS, 1.0, "ddim", "ddim_uniform", frames=frames,
        motion=pixels, **bracket).args
    fused = host.node_class("LEDiffLatentExposureFusion").execute(hdr_vae, dark, mid, bright).args[0]
    hdr = host.node_class("LEDiffHDRDecode").execute(hdr_vae, fused).args[0]
    out, _ = host.node_class("LEDiffBlendLDR").execute(pixels, hdr, "released", "percentile", 50.0, 0.18,
                                                       frames=frames).args
    return out, dark["samples"]


def latent_error(latents, flow, valid) -> float:
    """Mean squared difference between each latent and the one before, moved along the flow
    (resized to the latent grid), over the latent pixels fully visible in the frame before."""
    grid = tuple(latents.shape[-2:])
    flow, seen = resize_flow(torch.as_tensor(flow), grid), resize_flow_mask(valid, grid)
    diff = (latents[1:] - warp(latents[:-1], flow)) ** 2
    return float((diff * seen[:, None]).sum() / (seen.sum() * latents.shape[1]))


def resize_flow_mask(valid, grid):
    cells = torch.nn.functional.interpolate(torch.as_tensor(valid).float()[:, None], size=grid, mode="area")[:, 0]
    return (cells == 1).float()


def brightness_swing(frames) -> float:
    """Largest minus smallest per-frame mean log2 luminance (stops)."""
    means = log_luminance(frames).mean(dim=(1, 2))
    return float(means.max() - means.min())


def compare_modes(host, models, ldr, flow, valid, clipped, truth=None, **bracket):
    scores, latents = {}, {}
    for frames in ("independent", "video"):
        out, dark = run_clip(host, models, ldr, frames, **bracket)
        assert torch.isfinite(out).all()
        scores[frames] = (warping_error(out, flow, valid, clipped), brightness_swing(out))
        latents[frames] = latent_error(dark, flow, valid)
    # the brackets themselves follow the motion (before Blend with LDR steadies the HDR)
    assert latents["video"] <= 0.25 * latents["independent"], latents
    independent, video = scores["independent"][0], scores["video"][0]
    assert video["region"] <= 0.5 * independent["region"], scores
    assert video["overall"] < independent["overall"], scores
    if truth is not None:
        assert scores["video"][1] <= brightness_swing(truth) + 0.05, (scores, brightness_swing(truth))
    return scores


def pan_masks(flow):
    """Visible: the pan moves content left by the flow; the last columns come from outside the frame."""
    valid = np.ones(flow.shape[:3], bool)
    valid[:, :, -int(np.ceil(flow[..., 0].max())):] = False
    return valid


@pytest.fixture(scope="module")
def pan():
    """The pan, through a camera whose response Blend with LDR's model (LDR^g 2^e, g in 2.4-2.6)
    can invert: a power curve E^(1/2.5) (the sigmoid with a huge shoulder), so that brightness the
    fit gets wrong is the fit's fault, not the camera family's."""
    reference = synthetic_pan("city", frames=6, size=(64, 48), step_px=2)[0][0]
    camera = Camera(exposure_for_clip_share(reference, 0.1), n=1 / 2.5, a=1e9, clip_share=0.1)
    hdr, ldr, flow, clipped = synthetic_pan("city", frames=6, size=(64, 48), step_px=2, camera=camera)
    assert clipped[1:].sum() > 100  # there is something to hallucinate
    return hdr, ldr, flow, pan_masks(flow), clipped


def test_video_mode_halves_the_warping_error_on_a_pan_across_a_real_hdri(host, models, pan):
    hdr, ldr, flow, valid, clipped = pan
    compare_modes(host, models, ldr, flow, valid, clipped, truth=torch.from_numpy(hdr))


def test_video_mode_halves_the_warping_error_on_a_real_clip(host, models):
    ldr = real_ldr_clip(frames=6, size=(64, 48))
    backward, visible = flow_with_visibility(torch.from_numpy(ldr))
    clipped = (ldr >= 0.99).any(-1)
    assert clipped[1:].sum() > 50, "the clip's segment must have clipped highlights"
    compare_modes(host, models, ldr, backward, visible, clipped)


def test_video_mode_in_chunks_and_tiles(host, models, pan):
    """Chunks of 2 frames (memory for 2) continue from the chunk before, across the seams; tiles of
    32 pixels are blended every step as usual, and the frames stay consistent."""
    hdr, ldr, flow, valid, clipped = pan
    compare_modes(host, models, ldr, flow, valid, clipped, chunk_frames=2, tile_size=32)


def test_independent_chunks_change_nothing_and_one_frame_is_a_video(host, models, pan):
    sampling = host.pack_module("nodes.model.sampling")

    def run_brackets(latent, motion=None, **options):
        settings = sampling.BracketSampling(3, 2, 1.0, "ddim", "ddim_uniform", **options)
        return sampling.run_brackets(model, pos, neg, latent, settings, motion)

    model = load_denoiser(host)
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.randn(5, 4, 6, 8, generator=torch.Generator().manual_seed(0))}
    whole = run_brackets(latent)
    chunked = run_brackets(latent, chunk_frames=2)
    for w, c in zip(whole[1:], chunked[1:], strict=True):
        torch.testing.assert_close(c["samples"], w["samples"], atol=1e-4, rtol=1e-5)  # values ~30
    # a one-frame video has no motion: it is that frame sampled on its own, as in independent mode
    one = {"samples": latent["samples"][:1]}
    single = run_brackets(one, frames="video")
    torch.testing.assert_close(single[2]["samples"], whole[2]["samples"][:1], atol=1e-4, rtol=1e-5)
    # in video mode the first frame's noise is independent mode's first frame's (no motion frames
    # given: the motion comes from the latent's RGB preview)
    video = run_brackets(latent, frames="video")
    torch.testing.assert_close(video[1]["samples"][0], whole[1]["samples"][0], atol=1e-4, rtol=1e-5)
    assert not torch.allclose(video[1]["samples"][1:], whole[1]["samples"][1:], atol=1e-3)
    with pytest.raises(ValueError, match="motion has 4 frames, the latent 5"):
        run_brackets(latent, frames="video", motion=torch.rand(4, 48, 64, 3))
    with pytest.raises(ValueError, match="frames must be one of"):
        run_brackets(latent, frames="clip")
    with pytest.raises(ValueError, match="chunk_frames must be at least 1"):
        run_brackets(latent, chunk_frames=0)


def test_video_progress_counts_frames_and_interrupts_between_steps(host, models):
    import comfy.utils

    sampling = host.pack_module("nodes.model.sampling")
    model = load_denoiser(host)
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.randn(5, 4, 6, 8, generator=torch.Generator().manual_seed(1))}
    settings = sampling.BracketSampling(1, 4, 1.0, "ddim", "ddim_uniform", frames="video", chunk_frames=2)
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        sampling.run_brackets(model, pos, neg, latent, settings)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    values = [v for v, _ in seen]  # one bar of 5 frames x 2 passes x 4 steps
    assert {t for _, t in seen} == {40} and values == sorted(values) and values[-1] == 40

    assert interrupted_at_third_evaluation(sampling, model, pos, neg, latent, frames="video", chunk_frames=2) == 3


@pytest.mark.parametrize("with_motion", [True, False])
def test_video_mode_refuses_frames_too_small_for_the_flow(host, models, with_motion):
    """A 2x2 latent (its RGB preview is 8x8) or 8x8 motion frames: too small for OpenCV's DIS, which
    asserted; refused by name before any flow or sampling."""
    latent = {"samples": torch.zeros(2, 4, 2, 2)}
    motion = torch.rand(2, 8, 8, 3) if with_motion else None
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    what = ("the motion frames are 8x8" if with_motion else
            r"the latent's RGB preview \(the 2x2 latent enlarged 4x; connect motion\) are 8x8")
    with pytest.raises(ValueError, match=rf"frames = video.*{what} pixels, and optical flow .* at least 8 pixels"):
        host.node_class("LEDiffHighlightBracket").execute(load_denoiser(host), pos, neg, latent, 1, STEPS, 1.0, "ddim",
                                                          "ddim_uniform", frames="video", motion=motion)
