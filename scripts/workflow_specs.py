"""The example workflows, as compact specs that scripts/make_workflows.py builds in the real
ComfyUI frontend (so workflows/*.json are exactly what the frontend's Save writes).

A node: (id, type, column, widgets, title). A link: (source id, output name, target id, input name).
File names are the documented ones: a standard SD1.5 checkpoint and the two official LEDiff
downloads extracted as models/lediff/LEDiff_highlight and models/lediff/LEDiff_shadow.
"""

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
HIGHLIGHT = "LEDiff_highlight"
SHADOW = "LEDiff_shadow"
PHOTO = "example.png"  # ships in ComfyUI's input folder; replace with your photo

DOWNLOADS = (
    "Models needed (see the pack's README):\n"
    f"- models/checkpoints/{CHECKPOINT}: any SD1.5 checkpoint (text encoder{{extra}}).\n"
    f"- models/lediff/{HIGHLIGHT}/ and models/lediff/{SHADOW}/: the official LEDiff Highlight and Shadow "
    "downloads (https://lediff.mpi-inf.mpg.de/), extracted as they are (unet/, vae/ with merge_model.pth).\n"
)

BRACKET = {"seed": 42, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5,
           "sampler_name": "ddim", "scheduler": "ddim_uniform"}
SAVE = {"precision": "half", "compression": "zip", "input_encoding": "linear", "envmap": "none"}


# Highlight and Shadow Bracket around KSampler's latent, fused as five brackets (Highlight's dark and
# mid as darker and dark, the latent itself as mid, Shadow's mid and bright as bright and brighter)
# and decoded; the bracket nodes' models are wired by each workflow
_FIVE_BRACKETS = [
        *[(c, "CONDITIONING", b, i) for b in ("hl", "sh") for c, i in (("pos", "positive"), ("neg", "negative"))],
        ("ks", "LATENT", "hl", "latent"), ("ks", "LATENT", "sh", "latent"),
        ("hdrvae", "hdr_vae", "fuse", "hdr_vae"),
        ("hl", "dark", "fuse", "darker"), ("hl", "mid", "fuse", "dark"), ("ks", "LATENT", "fuse", "mid"),
        ("sh", "mid", "fuse", "bright"), ("sh", "bright", "fuse", "brighter"),
        ("hdrvae", "hdr_vae", "decode", "hdr_vae"), ("fuse", "latent", "decode", "latent"),
]


def _note(text):
    return ("note", "Note", 0, {"text": text}, "Read me")


def _bracket_preview(prefix, first_col):
    """Five bracket latents batched, decoded with the checkpoint's VAE, previewed."""
    nodes = [(f"{prefix}b1", "LatentBatch", first_col, {}, None), (f"{prefix}b2", "LatentBatch", first_col, {}, None),
             (f"{prefix}b3", "LatentBatch", first_col, {}, None), (f"{prefix}b4", "LatentBatch", first_col, {}, None),
             (f"{prefix}dec", "VAEDecode", first_col + 1, {}, "Decode brackets (checkpoint VAE)"),
             (f"{prefix}prev", "PreviewImage", first_col + 1, {}, "Brackets, darkest to brightest")]
    links = [(f"{prefix}b1", "LATENT", f"{prefix}b2", "samples1"), (f"{prefix}b2", "LATENT", f"{prefix}b3", "samples1"),
             (f"{prefix}b3", "LATENT", f"{prefix}b4", "samples1"), (f"{prefix}b4", "LATENT", f"{prefix}dec", "samples"),
             ("ckpt", "VAE", f"{prefix}dec", "vae"), (f"{prefix}dec", "IMAGE", f"{prefix}prev", "images")]
    return nodes, links


def text_to_hdr():
    nodes = [
        _note(DOWNLOADS.format(extra=", UNet and VAE for the prompt image") +
              "\nText -> SD1.5 image latent -> Highlight and Shadow brackets (two darker, two brighter exposures) "
              "-> five-bracket fusion -> linear HDR -> EXR in output/LEDiff/."),
        ("ckpt", "CheckpointLoaderSimple", 0, {"ckpt_name": CHECKPOINT}, None),
        ("pos", "CLIPTextEncode", 1, {"text": "a sunlit living room with large bright windows, photograph"},
         "Positive prompt"),
        ("neg", "CLIPTextEncode", 1, {"text": "blurry, low quality"}, "Negative prompt"),
        ("empty", "EmptyLatentImage", 1, {"width": 512, "height": 512, "batch_size": 1}, None),
        ("ks", "KSampler", 2, {"seed": 7, "control_after_generate": "fixed", "steps": 30, "cfg": 7.0,
                               "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}, None),
        ("hl_model", "LEDiffLoadDenoiser", 2, {"model_name": HIGHLIGHT}, "Highlight denoiser"),
        ("sh_model", "LEDiffLoadDenoiser", 2, {"model_name": SHADOW}, "Shadow denoiser"),
        ("hdrvae", "LEDiffLoadHDRVAE", 2, {"model_name": HIGHLIGHT}, None),
        ("hl", "LEDiffHighlightBracket", 3, BRACKET, None),
        ("sh", "LEDiffShadowBracket", 3, BRACKET, None),
        ("fuse", "LEDiffLatentExposureFusion", 4, {}, "Fusion (five brackets)"),
        ("decode", "LEDiffHDRDecode", 5, {}, None),
        ("save", "LEDiffSaveEXR", 6, {"filename_prefix": "LEDiff/text_to_hdr", **SAVE}, None),
        ("preview", "PreviewImage", 6, {}, "HDR preview (tone-mapped)"),
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("ckpt", "MODEL", "ks", "model"), ("pos", "CONDITIONING", "ks", "positive"),
        ("neg", "CONDITIONING", "ks", "negative"), ("empty", "LATENT", "ks", "latent_image"),
        ("hl_model", "MODEL", "hl", "model"), ("sh_model", "MODEL", "sh", "model"),
        *_FIVE_BRACKETS,
        ("decode", "hdr", "save", "images"), ("decode", "preview", "preview", "images"),
    ]
    extra_nodes, extra_links = _bracket_preview("bp", 4)
    extra_links = [("hl", "dark", "bpb1", "samples1"), ("hl", "mid", "bpb1", "samples2"),
                   ("ks", "LATENT", "bpb2", "samples2"), ("sh", "mid", "bpb3", "samples2"),
                   ("sh", "bright", "bpb4", "samples2"), *extra_links]
    return nodes + extra_nodes, links + extra_links


def _photo_graph(direction, model, note, blend):
    bracket = "LEDiffHighlightBracket" if direction == "highlight" else "LEDiffShadowBracket"
    nodes = [
        _note(note),
        ("ckpt", "CheckpointLoaderSimple", 0, {"ckpt_name": CHECKPOINT}, "SD1.5 (only its text encoder is used)"),
        ("photo", "LoadImage", 0, {"image": PHOTO}, "Your photo"),
        ("pos", "CLIPTextEncode", 1, {"text": ""}, "Prompt (empty: prompt-free at CFG 1)"),
        ("neg", "CLIPTextEncode", 1, {"text": ""}, "Negative (unused at CFG 1)"),
        ("hdrvae", "LEDiffLoadHDRVAE", 1, {"model_name": model}, None),
        ("model", "LEDiffLoadDenoiser", 1, {"model_name": model}, None),
        ("encode", "VAEEncode", 2, {}, None),
        ("bracket", bracket, 2, {**BRACKET, "cfg": 1.0}, None),
        ("fuse", "LEDiffLatentExposureFusion", 3, {}, None),
        ("decode", "LEDiffHDRDecode", 4, {}, None),
        ("tonemap", "LEDiffToneMap", 5, {"operator": "aces", "exposure": 0.0, "white": 4.0,
                                         "auto_exposure": True}, None),
        ("preview", "PreviewImage", 6, {}, "HDR preview (tone-mapped)"),
        ("save", "LEDiffSaveEXR", 6, {"filename_prefix": f"LEDiff/{'photo_to_hdr' if blend else 'shadow_recovery'}",
                                      **SAVE}, None),
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("photo", "IMAGE", "encode", "pixels"), ("hdrvae", "vae", "encode", "vae"),
        ("model", "MODEL", "bracket", "model"), ("pos", "CONDITIONING", "bracket", "positive"),
        ("neg", "CONDITIONING", "bracket", "negative"), ("encode", "LATENT", "bracket", "latent"),
        ("hdrvae", "hdr_vae", "fuse", "hdr_vae"), ("bracket", "dark", "fuse", "dark"),
        ("bracket", "mid", "fuse", "mid"), ("bracket", "bright", "fuse", "bright"),
        ("hdrvae", "hdr_vae", "decode", "hdr_vae"), ("fuse", "latent", "decode", "latent"),
    ]
    if blend:
        nodes.insert(-3, ("blend", "LEDiffBlendLDR", 5, {"preset": "released", "anchor": "none",
                                                         "percentile": 50.0, "value": 0.18}, None))
        links += [("photo", "IMAGE", "blend", "ldr"), ("decode", "hdr", "blend", "hdr"),
                  ("blend", "hdr", "tonemap", "image"), ("blend", "hdr", "save", "images")]
    else:
        links += [("decode", "hdr", "tonemap", "image"), ("decode", "hdr", "save", "images")]
    links.append(("tonemap", "IMAGE", "preview", "images"))
    return nodes, links


def photo_to_hdr():
    return _photo_graph("highlight", HIGHLIGHT, DOWNLOADS.format(extra="; used for the empty prompt") +
                        "\nPhoto -> VAE Encode (HDR VAE) -> Highlight Bracket (CFG 1, prompt-free) -> fusion -> "
                        "linear HDR -> Blend with LDR keeps the photo where it is not clipped -> EXR.", True)


def shadow_recovery():
    return _photo_graph("shadow", SHADOW, DOWNLOADS.format(extra="; used for the empty prompt") +
                        "\nAn under-exposed photo -> Shadow Bracket hallucinates two brighter exposures -> fusion "
                        "-> linear HDR with recovered shadows -> EXR. Load your own dark photo.", False)


def hdr_panorama():
    nodes = [
        _note(DOWNLOADS.format(extra=", UNet and VAE") +
              "\nA seamless 2:1 panorama: Seamless Panorama wraps the generator and both bracket denoisers, HDR "
              "Decode wraps (and tiles above 512 px), Save EXR tags the file as a lat-long environment map for "
              "Blender's World texture; Preview Lighting shows spheres lit by it."),
        ("ckpt", "CheckpointLoaderSimple", 0, {"ckpt_name": CHECKPOINT}, None),
        ("wrap_gen", "LEDiffPanoramaWrap", 0, {}, "Seamless Panorama (generator)"),
        ("pos", "CLIPTextEncode", 1, {"text": "360 degree equirectangular panorama of a sunny meadow, blue sky, "
                                              "bright sun"}, "Positive prompt"),
        ("neg", "CLIPTextEncode", 1, {"text": "blurry, seam"}, "Negative prompt"),
        ("empty", "EmptyLatentImage", 1, {"width": 1024, "height": 512, "batch_size": 1}, None),
        ("ks", "KSampler", 2, {"seed": 11, "control_after_generate": "fixed", "steps": 30, "cfg": 7.0,
                               "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}, None),
        ("hl_model", "LEDiffLoadDenoiser", 2, {"model_name": HIGHLIGHT}, "Highlight denoiser"),
        ("sh_model", "LEDiffLoadDenoiser", 2, {"model_name": SHADOW}, "Shadow denoiser"),
        ("wrap_hl", "LEDiffPanoramaWrap", 3, {}, "Seamless Panorama (highlight)"),
        ("wrap_sh", "LEDiffPanoramaWrap", 3, {}, "Seamless Panorama (shadow)"),
        ("hdrvae", "LEDiffLoadHDRVAE", 3, {"model_name": HIGHLIGHT}, None),
        ("hl", "LEDiffHighlightBracket", 4, BRACKET, None),
        ("sh", "LEDiffShadowBracket", 4, BRACKET, None),
        ("fuse", "LEDiffLatentExposureFusion", 5, {}, "Fusion (five brackets)"),
        ("decode", "LEDiffHDRDecode", 5, {"wrap_x": True, "tile_size": 512}, None),
        ("save", "LEDiffSaveEXR", 6, {"filename_prefix": "LEDiff/hdr_panorama", **SAVE, "envmap": "latlong"}, None),
        ("ibl", "LEDiffIBLPreview", 6, {"size": 256, "exposure": 0.0}, None),
        ("ibl_prev", "PreviewImage", 7, {}, "Lighting preview"),
        ("pano_prev", "PreviewImage", 7, {}, "Panorama (tone-mapped)"),
    ]
    links = [
        ("ckpt", "MODEL", "wrap_gen", "model"), ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("wrap_gen", "MODEL", "ks", "model"), ("pos", "CONDITIONING", "ks", "positive"),
        ("neg", "CONDITIONING", "ks", "negative"), ("empty", "LATENT", "ks", "latent_image"),
        ("hl_model", "MODEL", "wrap_hl", "model"), ("sh_model", "MODEL", "wrap_sh", "model"),
        ("wrap_hl", "MODEL", "hl", "model"), ("wrap_sh", "MODEL", "sh", "model"),
        *_FIVE_BRACKETS,
        ("decode", "hdr", "save", "images"), ("decode", "hdr", "ibl", "image"),
        ("ibl", "preview", "ibl_prev", "images"), ("decode", "preview", "pano_prev", "images"),
    ]
    return nodes, links


WORKFLOWS = {"text_to_hdr": text_to_hdr, "photo_to_hdr": photo_to_hdr, "shadow_recovery": shadow_recovery,
             "hdr_panorama": hdr_panorama}
