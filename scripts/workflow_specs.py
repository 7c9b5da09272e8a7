"""The example workflows, as compact specs that scripts/make_workflows.py builds in the real
ComfyUI frontend (so workflows/*.json are exactly what the frontend's Save writes).

A node: (id, type, widgets, title). A link: (source id, output name, target id, input name). A
layout: where the nodes go, as groups named after the stages (Input, Brackets, HDR, Bracket layers,
Outputs); see PREVIEW_HEIGHT below.
File names are the documented ones: a standard SD1.5 checkpoint, the SDXL base checkpoint (for
any_model_to_hdr; any checkpoint works there) and the two official LEDiff downloads extracted as
models/lediff/LEDiff_highlight and models/lediff/LEDiff_shadow. sdxl_text_to_hdr uses the SDXL base checkpoint and
SDXL LEDiff models trained with the recipe, models/lediff/LEDiff_SDXL_highlight and
models/lediff/LEDiff_SDXL_shadow (none are published). The savers each workflow ends in are
listed in SAVERS (one line per saver); the layers its EXR carries besides the HDR (the brackets as
decoded previews, the over-exposure mask where it blends with the LDR) in EXR_LAYERS.
"""

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
SDXL_CHECKPOINT = "sd_xl_base_1.0.safetensors"  # the official SDXL base file; stands for any model
HIGHLIGHT = "LEDiff_highlight"
SHADOW = "LEDiff_shadow"
# SDXL LEDiff models, trained with the recipe (docs/training.md); none are published yet
SDXL_HIGHLIGHT = "LEDiff_SDXL_highlight"
SDXL_SHADOW = "LEDiff_SDXL_shadow"
PHOTO = "example.png"  # ships in ComfyUI's input folder; replace with your photo
CLIP = "example_clip.mp4"  # put your clip in ComfyUI's input folder and pick it in Load Video
DEPTH = "example_depth.png"  # your photo's depth map (near = bright) in ComfyUI's input folder

DOWNLOADS = (
    "Models needed (see the pack's README):\n"
    f"- models/checkpoints/{CHECKPOINT}: any SD1.5 checkpoint (text encoder{{extra}}).\n"
    f"- models/lediff/{HIGHLIGHT}/ and models/lediff/{SHADOW}/: the official LEDiff Highlight and Shadow "
    "downloads (https://lediff.mpi-inf.mpg.de/), extracted as they are (unet/, vae/ with merge_model.pth).\n"
)

BRACKET = {"seed": 42, "control_after_generate": "fixed", "steps": 50, "cfg": 7.5,
           "sampler_name": "ddim", "scheduler": "ddim_uniform"}
BLEND = {"preset": "released", "anchor": "none", "percentile": 50.0, "value": 0.18}
SAVE = {"precision": "half", "compression": "zip", "input_encoding": "linear", "envmap": "none"}
# its own prefix, so that its numbers never shift the EXR's (core's numbering ignores the extension)
ULTRAHDR = {"filename_prefix": "LEDiff/{workflow}_ultrahdr", "format": "ultrahdr", "reference_white": 1.0,
            "quality": 90, "headroom_stops": 3.0, "mastering_peak": 1000.0}

# The savers each workflow ends in, all fed the workflow's final linear HDR, each with the file name
# prefix LEDiff/<workflow name> unless the widgets give one ("{workflow}" is replaced): (node type,
# widgets[, image input name, default "images"]).
# Adding a saver to a workflow is one line in its list, e.g. for an Ultra HDR JPEG next to the EXR:
#     ("LEDiffSaveHDRImage", {"format": "ultrahdr"}),
# (its widgets by name, as the node defines them; filename_prefix is filled in).
SAVERS = {
    "text_to_hdr": [("LEDiffSaveEXR", SAVE), ("LEDiffSaveHDRImage", ULTRAHDR)],
    "photo_to_hdr": [("LEDiffSaveEXR", SAVE), ("LEDiffSaveHDRImage", ULTRAHDR)],
    "shadow_recovery": [("LEDiffSaveEXR", SAVE)],
    "hdr_panorama": [("LEDiffSaveEXR", {**SAVE, "envmap": "latlong"})],
    "any_model_to_hdr": [("LEDiffSaveEXR", SAVE), ("LEDiffSaveHDRImage", ULTRAHDR)],
    "sdxl_text_to_hdr": [("LEDiffSaveEXR", SAVE), ("LEDiffSaveHDRImage", ULTRAHDR)],
    "hdr_through_sdr_node": [("LEDiffSaveEXR", SAVE)],
    "hdr_depth_of_field": [("LEDiffSaveEXR", SAVE), ("LEDiffSaveHDRImage", ULTRAHDR)],
    # fps (and the master's audio) come from Get Video Components
    "video_to_hdr": [("LEDiffSaveEXRSequence", {"filename_prefix": "LEDiff/video_to_hdr/shot", "start_frame": 1001,
                                                "precision": "half", "compression": "zip"}),
                     ("LEDiffSaveHDRVideo", {"codec": "hevc", "transfer": "pq", "container": "mp4", "quality": 18,
                                             "reference_white": 1.0, "mastering_peak": 1000.0})],
}

# The extra layers of each workflow's EXR (EXR Layer nodes chained into its Save EXR), so that a
# compositor gets the whole LEDiff story in one file: every bracket the fusion used, decoded with the
# SD1.5 VAE (the brackets' latent space) as the sRGB previews VAE Decode makes, named after the
# fusion input it fed (sdxl_text_to_hdr's with the SDXL checkpoint's VAE, its brackets' latent
# space); and "clip_mask", Blend with LDR's over-exposure mask (1 where the generated HDR replaces
# the photo), in the workflows that blend. The others have no such mask: text_to_hdr and
# sdxl_text_to_hdr have no LDR photo, shadow_recovery recovers shadows and keeps the photo's
# highlights unblended; adding Blend with LDR only to get a mask would change their HDR.
# hdr_panorama's EXR is an HDRI, a plain RGB file: DCC APIs (Blender's bpy among them) read a
# multilayer EXR as a render layer stack with no pixels until rendered, so its brackets stay out.
FIVE_BRACKETS = ("darker", "dark", "mid", "bright", "brighter")
THREE_BRACKETS = ("dark", "mid", "bright")
EXR_LAYERS = {
    "text_to_hdr": [f"bracket_{b}" for b in FIVE_BRACKETS],
    "photo_to_hdr": [*(f"bracket_{b}" for b in THREE_BRACKETS), "clip_mask"],
    "shadow_recovery": [f"bracket_{b}" for b in THREE_BRACKETS],
    "hdr_panorama": [],  # an HDRI: plain RGB
    "any_model_to_hdr": [*(f"bracket_{b}" for b in FIVE_BRACKETS), "clip_mask"],
    "sdxl_text_to_hdr": [f"bracket_{b}" for b in FIVE_BRACKETS],
    "video_to_hdr": [],  # an EXR sequence: one image per frame
    "hdr_through_sdr_node": [],  # the upscaled HDR; the brackets are at the photo's size
    "hdr_depth_of_field": [],  # the HDR through the lens; the brackets are sharp and without glare
}

# The brackets are decoded tiled (core VAE Decode (Tiled), 512-pixel tiles): its memory does not
# grow with the photo, so a big photo cannot run the layers' decodes out of memory and stop the run
# before Save EXR (in ComfyUI an error anywhere stops the prompt).
TILED_DECODE = {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}

# Where the nodes go. The frontend fits a template to its window (zoom = 0.75 x the scale at which
# the graph's box fills the canvas), and LiteGraph hides titles and widgets below about 0.6: a
# workflow is readable when opened only if it is compact. A layout is a list of stacks placed left
# to right; a stack is a list of rows placed top to bottom; a row is a list of groups placed left to
# right; a group is (title, columns), each column a list of node ids placed top to bottom. The
# group titles name the stages. scripts/make_workflows.py measures each node in the frontend and
# places them; a node that shows images (an output node, Load Image, Load Video) is saved as tall
# as its widgets plus PREVIEW_HEIGHT, so previews arriving after a run cover nothing.
PREVIEW_HEIGHT = 512
NODE_WIDTH = 210  # the frontend's minimum for most nodes; it cuts titles over about 20 characters
NOTE_SIZE = (210, 240)


def _exr_layers(workflow, brackets, vae, mask=None, vae_name="SD1.5"):
    """Nodes, links and layout columns that decode each of ``brackets`` ({fusion input name: (node
    id, output name)}, darkest first) with ``vae`` (node id, output name), tiled, and chain them,
    then ``mask`` (node id, output name) if given, as EXR Layer nodes into the workflow's Save EXR
    ("save"); the layer names are EXR_LAYERS[workflow]. A column per bracket: its decode above its
    layer, in a group that names ``vae_name``."""
    nodes, links, columns, previous = [], [], [], None
    names = iter(EXR_LAYERS[workflow])
    for bracket, source in brackets.items():
        name = next(names)
        assert name == f"bracket_{bracket}", (workflow, name, bracket)
        nodes += [(f"dec_{bracket}", "VAEDecodeTiled", TILED_DECODE, f"Decode {bracket}"),
                  (f"layer_{bracket}", "LEDiffEXRLayer", {"name": name, "encoding": "sRGB"}, None)]
        links += [(*source, f"dec_{bracket}", "samples"), (*vae, f"dec_{bracket}", "vae"),
                  (f"dec_{bracket}", "IMAGE", f"layer_{bracket}", "image")]
        if previous:
            links.append((previous, "layers", f"layer_{bracket}", "layers"))
        previous = f"layer_{bracket}"
        columns.append([f"dec_{bracket}", f"layer_{bracket}"])
    if mask is not None:
        name = next(names)
        nodes.append(("layer_mask", "LEDiffEXRLayer", {"name": name, "encoding": "data"}, None))
        links += [(*mask, "layer_mask", "mask"), (previous, "layers", "layer_mask", "layers")]
        previous = "layer_mask"
        columns.append(["layer_mask"])
    assert next(names, None) is None, f"{workflow}: EXR_LAYERS lists more layers than the graph makes"
    links.append((previous, "layers", "save", "layers"))
    return nodes, links, (f"Bracket layers (EXR, {vae_name} VAE)", columns)


def _five(latent="ks"):
    """The fusion's five brackets, darkest first: {fusion input: (node id, output name)}."""
    return {"darker": ("hl", "dark"), "dark": ("hl", "mid"), "mid": (latent, "LATENT"),
            "bright": ("sh", "mid"), "brighter": ("sh", "bright")}


def _savers(workflow, source):
    """Nodes, links and the layout group of the workflow's SAVERS, fed by ``source`` = (node id,
    output name); the first saver's id is "save", the next "save2", ..., side by side."""
    nodes, links = [], []
    for index, (node_type, widgets, *input_name) in enumerate(SAVERS[workflow]):
        node_id = "save" if index == 0 else f"save{index + 1}"
        widgets = {"filename_prefix": "LEDiff/{workflow}", **widgets}
        widgets["filename_prefix"] = widgets["filename_prefix"].format(workflow=workflow)
        nodes.append((node_id, node_type, widgets, None))
        links.append((*source, node_id, input_name[0] if input_name else "images"))
    return nodes, links, ("Outputs", [[node_id] for node_id, *_ in nodes])


def _five_brackets(latent="ks", cond=("pos", "neg")):
    """Highlight and Shadow Bracket around the ``latent`` node's LATENT, fused as five brackets
    (Highlight's dark and mid as darker and dark, the latent itself as mid, Shadow's mid and bright
    as bright and brighter) and decoded; the bracket nodes' models are wired by each workflow."""
    pos, neg = cond
    return [
        *[(c, "CONDITIONING", b, i) for b in ("hl", "sh") for c, i in ((pos, "positive"), (neg, "negative"))],
        (latent, "LATENT", "hl", "latent"), (latent, "LATENT", "sh", "latent"),
        ("hdrvae", "hdr_vae", "fuse", "hdr_vae"),
        *[(*source, "fuse", name) for name, source in _five(latent).items()],
        ("hdrvae", "hdr_vae", "decode", "hdr_vae"), ("fuse", "latent", "decode", "latent"),
    ]


def _note(text):
    return ("note", "Note", {"text": text}, "Read me")


def _text_graph(name, note, checkpoint, models, size, sampler, decode, backbone="SD1.5"):
    """Text -> image latent (``checkpoint``) -> Highlight and Shadow brackets around it (``models`` =
    (highlight, shadow) folders; the HDR VAE from the first) -> five-bracket fusion -> HDR Decode
    (``decode`` widgets) -> the workflow's savers (each shows its image) and bracket layers."""
    highlight, shadow = models
    save_nodes, save_links, outputs = _savers(name, ("decode", "hdr"))
    layer_nodes, layer_links, layers = _exr_layers(name, _five(), ("ckpt", "VAE"), vae_name=backbone)
    nodes = [
        _note(note),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": checkpoint}, None),
        ("pos", "CLIPTextEncode", {"text": "a sunlit living room with large bright windows, photograph"},
         "Positive prompt"),
        ("neg", "CLIPTextEncode", {"text": "blurry, low quality"}, "Negative prompt"),
        ("empty", "EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}, None),
        ("ks", "KSampler", {"seed": 7, "control_after_generate": "fixed", "steps": 30, "cfg": 7.0,
                            "scheduler": "normal", "denoise": 1.0, **sampler}, None),
        ("hl_model", "LEDiffLoadDenoiser", {"model_name": highlight}, "Highlight denoiser"),
        ("sh_model", "LEDiffLoadDenoiser", {"model_name": shadow}, "Shadow denoiser"),
        ("hdrvae", "LEDiffLoadHDRVAE", {"model_name": highlight}, None),
        ("hl", "LEDiffHighlightBracket", BRACKET, None),
        ("sh", "LEDiffShadowBracket", BRACKET, None),
        ("fuse", "LEDiffLatentExposureFusion", {}, "Fusion (5 brackets)"),
        ("decode", "LEDiffHDRDecode", decode, None),
        *save_nodes,
        *layer_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("ckpt", "MODEL", "ks", "model"), ("pos", "CONDITIONING", "ks", "positive"),
        ("neg", "CONDITIONING", "ks", "negative"), ("empty", "LATENT", "ks", "latent_image"),
        ("hl_model", "MODEL", "hl", "model"), ("sh_model", "MODEL", "sh", "model"),
        *_five_brackets(), *save_links, *layer_links,
    ]
    layout = [
        [[("Input: prompt to image latent", [["note", "ckpt", "empty"], ["pos", "neg", "ks"]]),
          ("Brackets", [["hl_model", "sh_model", "hdrvae"], ["hl"], ["sh"]]),
          ("HDR", [["fuse", "decode"]])],
         [layers]],
        [[outputs]],
    ]
    return nodes, links, layout


def text_to_hdr():
    return _text_graph(
        "text_to_hdr",
        DOWNLOADS.format(extra=", UNet and VAE for the prompt image and the bracket layers") +
        "\nText -> SD1.5 image latent -> Highlight and Shadow brackets (two darker, two brighter exposures) "
        "-> five-bracket fusion -> linear HDR -> EXR in output/LEDiff/, with the five brackets (decoded "
        "previews) as layers bracket_darker ... bracket_brighter.",
        CHECKPOINT, (HIGHLIGHT, SHADOW), 512, {"sampler_name": "euler"}, {})


def sdxl_text_to_hdr():
    """text_to_hdr natively on SDXL: the SDXL KSampler's latent goes straight into SDXL LEDiff
    bracket denoisers (no decode and re-encode), at SDXL's 1024x1024, HDR Decode tiled. The prompts
    use CLIP Text Encode: with an SDXL checkpoint's CLIP it gives both text encoders and the pooled
    output, and ComfyUI fills SDXL's size conditioning from the latent (1024x1024, no crop: what
    CLIPTextEncodeSDXL's defaults set)."""
    return _text_graph(
        "sdxl_text_to_hdr",
        "Models needed (see the pack's README):\n"
        f"- models/checkpoints/{SDXL_CHECKPOINT}: SDXL base, or any SDXL fine-tune (Pony, Illustrious, "
        "Juggernaut...): its text encoders, UNet and VAE for the prompt image and the bracket layers.\n"
        f"- models/lediff/{SDXL_HIGHLIGHT}/ and models/lediff/{SDXL_SHADOW}/: SDXL LEDiff Highlight and Shadow "
        "models in the official layout (unet/, vae/ with merge_model.pth). None are published yet: train them "
        "with the pack's recipe, python -m lediff_train ... --model <your SDXL diffusers folder> "
        "(docs/training.md). SD1.5 LEDiff models do not work here (a clear error says so).\n"
        "\nText -> SDXL image latent (1024x1024) -> SDXL Highlight and Shadow brackets (two darker, two brighter "
        "exposures) -> five-bracket fusion -> HDR Decode (tiled at 512 px; float32, which SDXL's VAE needs) "
        "-> EXR in output/LEDiff/ with the five brackets (decoded by the SDXL VAE) as layers bracket_darker ... "
        "bracket_brighter, and an Ultra HDR JPEG.",
        SDXL_CHECKPOINT, (SDXL_HIGHLIGHT, SDXL_SHADOW), 1024,
        {"sampler_name": "dpmpp_2m", "scheduler": "karras"}, {"tile_size": 512}, "SDXL")


def _one_bracket(image):
    """Links of the photo path: ``image`` (node id, output name) -> VAE Encode (HDR VAE) -> one
    bracket node ("bracket", its model "model", prompts "pos"/"neg") -> fusion -> HDR Decode."""
    return [
        (*image, "encode", "pixels"), ("hdrvae", "vae", "encode", "vae"),
        ("model", "MODEL", "bracket", "model"), ("pos", "CONDITIONING", "bracket", "positive"),
        ("neg", "CONDITIONING", "bracket", "negative"), ("encode", "LATENT", "bracket", "latent"),
        ("hdrvae", "hdr_vae", "fuse", "hdr_vae"), ("bracket", "dark", "fuse", "dark"),
        ("bracket", "mid", "fuse", "mid"), ("bracket", "bright", "fuse", "bright"),
        ("hdrvae", "hdr_vae", "decode", "hdr_vae"), ("fuse", "latent", "decode", "latent"),
    ]


def _one_bracket_nodes(model=HIGHLIGHT, direction="highlight", bracket=None, encode_title=None, decode=None):
    """The nodes ``_one_bracket`` links: the HDR VAE and the ``direction`` denoiser of ``model``, VAE
    Encode (titled ``encode_title``), the bracket node (CFG 1, prompt-free, ``bracket`` widgets on
    top of BRACKET), fusion and HDR Decode (``decode`` widgets)."""
    kind = "LEDiffHighlightBracket" if direction == "highlight" else "LEDiffShadowBracket"
    return [
        ("hdrvae", "LEDiffLoadHDRVAE", {"model_name": model}, None),
        ("model", "LEDiffLoadDenoiser", {"model_name": model}, f"{direction.capitalize()} denoiser"),
        ("encode", "VAEEncode", {}, encode_title),
        ("bracket", kind, {**BRACKET, "cfg": 1.0, **(bracket or {})}, None),
        ("fuse", "LEDiffLatentExposureFusion", {}, "Fusion"),
        ("decode", "LEDiffHDRDecode", decode or {}, None),
    ]


def _photo_graph(name, direction, model, note, blend):
    hdr = ("blend", "hdr") if blend else ("decode", "hdr")
    save_nodes, save_links, outputs = _savers(name, hdr)
    layer_nodes, layer_links, layers = _exr_layers(name, {b: ("bracket", b) for b in THREE_BRACKETS},
                                                   ("ckpt", "VAE"), mask=("blend", "mask") if blend else None)
    nodes = [
        _note(note),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, "SD1.5 checkpoint"),
        ("photo", "LoadImage", {"image": PHOTO}, "Your photo"),
        ("pos", "CLIPTextEncode", {"text": ""}, "Prompt (empty)"),
        ("neg", "CLIPTextEncode", {"text": ""}, "Negative (unused)"),
        *_one_bracket_nodes(model, direction),
        *([("blend", "LEDiffBlendLDR", BLEND, None)] if blend else []),
        *save_nodes,
        *layer_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        *_one_bracket(("photo", "IMAGE")),
    ]
    if blend:
        links += [("photo", "IMAGE", "blend", "ldr"), ("decode", "hdr", "blend", "hdr")]
    links += [*save_links, *layer_links]
    layout = [
        [[("Input: your photo", [["note", "ckpt"], ["photo"], ["pos", "neg"]]),
          ("Brackets", [["model", "hdrvae", "encode"], ["bracket"]]),
          ("HDR", [["fuse", "decode", *(["blend"] if blend else [])]])],
         [layers]],
        [[outputs]],
    ]
    return nodes, links, layout


PHOTO_DOWNLOADS = DOWNLOADS.format(extra=" for the empty prompt, VAE for the bracket layers")


def photo_to_hdr():
    return _photo_graph("photo_to_hdr", "highlight", HIGHLIGHT, PHOTO_DOWNLOADS +
                        "\nPhoto -> VAE Encode (HDR VAE) -> Highlight Bracket (CFG 1, prompt-free) -> fusion -> "
                        "linear HDR -> Blend with LDR keeps the photo where it is not clipped -> EXR, with the "
                        "three brackets (decoded previews) and Blend's over-exposure mask as layers bracket_dark, "
                        "bracket_mid, bracket_bright, clip_mask.", True)


def shadow_recovery():
    return _photo_graph("shadow_recovery", "shadow", SHADOW, PHOTO_DOWNLOADS +
                        "\nAn under-exposed photo -> Shadow Bracket hallucinates two brighter exposures -> fusion "
                        "-> linear HDR with recovered shadows -> EXR, with the three brackets (decoded previews) as "
                        "layers bracket_dark, bracket_mid, bracket_bright. Load your own dark photo.", False)


def hdr_panorama():
    save_nodes, save_links, outputs = _savers("hdr_panorama", ("decode", "hdr"))
    nodes = [
        _note(DOWNLOADS.format(extra=", UNet and VAE") +
              "\nA seamless 2:1 panorama: Seamless Panorama wraps the generator and both bracket denoisers, HDR "
              "Decode wraps (and tiles above 512 px), Save EXR writes a plain RGB EXR (an HDRI every DCC reads) "
              "tagged as a lat-long environment map for Blender's World texture; Preview Lighting shows spheres "
              "lit by it."),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, None),
        ("wrap_gen", "LEDiffPanoramaWrap", {}, "Seamless (generator)"),
        ("pos", "CLIPTextEncode", {"text": "360 degree equirectangular panorama of a sunny meadow, blue sky, "
                                           "bright sun"}, "Positive prompt"),
        ("neg", "CLIPTextEncode", {"text": "blurry, seam"}, "Negative prompt"),
        ("empty", "EmptyLatentImage", {"width": 1024, "height": 512, "batch_size": 1}, None),
        ("ks", "KSampler", {"seed": 11, "control_after_generate": "fixed", "steps": 30, "cfg": 7.0,
                            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}, None),
        ("hl_model", "LEDiffLoadDenoiser", {"model_name": HIGHLIGHT}, "Highlight denoiser"),
        ("sh_model", "LEDiffLoadDenoiser", {"model_name": SHADOW}, "Shadow denoiser"),
        ("wrap_hl", "LEDiffPanoramaWrap", {}, "Seamless (highlight)"),
        ("wrap_sh", "LEDiffPanoramaWrap", {}, "Seamless (shadow)"),
        ("hdrvae", "LEDiffLoadHDRVAE", {"model_name": HIGHLIGHT}, None),
        ("hl", "LEDiffHighlightBracket", BRACKET, None),
        ("sh", "LEDiffShadowBracket", BRACKET, None),
        ("fuse", "LEDiffLatentExposureFusion", {}, "Fusion (5 brackets)"),
        ("decode", "LEDiffHDRDecode", {"wrap_x": True, "tile_size": 512}, None),
        *save_nodes,
        ("ibl", "LEDiffIBLPreview", {"size": 256, "exposure": 0.0}, None),
        ("ibl_prev", "PreviewImage", {}, "Lighting preview"),
    ]
    links = [
        ("ckpt", "MODEL", "wrap_gen", "model"), ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("wrap_gen", "MODEL", "ks", "model"), ("pos", "CONDITIONING", "ks", "positive"),
        ("neg", "CONDITIONING", "ks", "negative"), ("empty", "LATENT", "ks", "latent_image"),
        ("hl_model", "MODEL", "wrap_hl", "model"), ("sh_model", "MODEL", "wrap_sh", "model"),
        ("wrap_hl", "MODEL", "hl", "model"), ("wrap_sh", "MODEL", "sh", "model"),
        *_five_brackets(), *save_links, ("decode", "hdr", "ibl", "image"), ("ibl", "preview", "ibl_prev", "images"),
    ]
    title, columns = outputs
    layout = [
        [[("Input: prompt to panorama latent", [["note", "ckpt", "wrap_gen"], ["pos", "neg", "empty", "ks"]]),
          ("Brackets", [["hl_model", "wrap_hl", "hl"], ["sh_model", "wrap_sh", "sh"]]),
          ("HDR", [["hdrvae", "fuse", "decode"]]),
          (title, [*columns, ["ibl", "ibl_prev"]])]],
    ]
    return nodes, links, layout


def any_model_to_hdr():
    """The photo path for images from models whose latents LEDiff cannot read (SDXL, FLUX, video...):
    decode to pixels with the model's own VAE, encode with the HDR VAE, bracket, fuse and decode,
    tiled at LEDiff's 512-pixel training size because such images are large."""
    tiled = {"tile_size": 512}
    save_nodes, save_links, outputs = _savers("any_model_to_hdr", ("blend", "hdr"))
    # the brackets are SD1.5 latents (the HDR VAE encodes like SD1.5's): decode with SD1.5's VAE, not the model's
    layer_nodes, layer_links, layers = _exr_layers("any_model_to_hdr", _five("encode"), ("sd15", "VAE"),
                                                   mask=("blend", "mask"))
    nodes = [
        _note("Models needed (see the pack's README):\n"
              f"- models/checkpoints/{SDXL_CHECKPOINT}: your own model. Any checkpoint that makes images works "
              "(SDXL here; for FLUX, video or other models replace the loader, sampler and VAE Decode with their "
              "usual nodes: only the IMAGE goes on).\n"
              f"- models/checkpoints/{CHECKPOINT}: any SD1.5 checkpoint; its text encoder for the brackets' "
              "empty prompt, its VAE (the brackets' latent space) to decode the bracket layers.\n"
              f"- models/lediff/{HIGHLIGHT}/ and models/lediff/{SHADOW}/: the official LEDiff Highlight and Shadow "
              "downloads (https://lediff.mpi-inf.mpg.de/), extracted as they are (unet/, vae/ with merge_model.pth).\n"
              "\nYour model's image -> VAE Encode with the HDR VAE -> Highlight and Shadow brackets (CFG 1, "
              "prompt-free, tiled at 512 px) -> five-bracket fusion -> HDR Decode (tiled) -> Blend with LDR keeps "
              "your image where it is not clipped -> EXR in output/LEDiff/, with the five brackets (decoded "
              "previews) and Blend's over-exposure mask as layers bracket_darker ... bracket_brighter, "
              "clip_mask. Highlights the image clipped are hallucinated by LEDiff, not recovered."),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": SDXL_CHECKPOINT}, "Your model (SDXL)"),
        ("sd15", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, "SD1.5 checkpoint"),
        ("pos", "CLIPTextEncode", {"text": "a cozy cabin interior at dusk, warm lamps, a bright window "
                                           "onto a snowy sunset, photograph"}, "Positive prompt"),
        ("neg", "CLIPTextEncode", {"text": "blurry, low quality"}, "Negative prompt"),
        ("empty", "EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}, None),
        ("hl_pos", "CLIPTextEncode", {"text": ""}, "Bracket prompt"),
        ("hl_neg", "CLIPTextEncode", {"text": ""}, "Bracket negative"),
        ("ks", "KSampler", {"seed": 3, "control_after_generate": "fixed", "steps": 30, "cfg": 7.0,
                            "sampler_name": "dpmpp_2m", "scheduler": "karras", "denoise": 1.0}, None),
        ("image", "VAEDecode", {}, "Decode your image"),
        ("hl_model", "LEDiffLoadDenoiser", {"model_name": HIGHLIGHT}, "Highlight denoiser"),
        ("sh_model", "LEDiffLoadDenoiser", {"model_name": SHADOW}, "Shadow denoiser"),
        ("hdrvae", "LEDiffLoadHDRVAE", {"model_name": HIGHLIGHT}, None),
        ("encode", "VAEEncode", {}, "Encode (HDR VAE)"),
        ("hl", "LEDiffHighlightBracket", {**BRACKET, "cfg": 1.0, **tiled}, None),
        ("sh", "LEDiffShadowBracket", {**BRACKET, "cfg": 1.0, **tiled}, None),
        ("fuse", "LEDiffLatentExposureFusion", {}, "Fusion (5 brackets)"),
        ("decode", "LEDiffHDRDecode", tiled, None),
        ("blend", "LEDiffBlendLDR", BLEND, None),
        *save_nodes,
        *layer_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("ckpt", "MODEL", "ks", "model"), ("pos", "CONDITIONING", "ks", "positive"),
        ("neg", "CONDITIONING", "ks", "negative"), ("empty", "LATENT", "ks", "latent_image"),
        ("ks", "LATENT", "image", "samples"), ("ckpt", "VAE", "image", "vae"),
        ("sd15", "CLIP", "hl_pos", "clip"), ("sd15", "CLIP", "hl_neg", "clip"),
        ("image", "IMAGE", "encode", "pixels"), ("hdrvae", "vae", "encode", "vae"),
        ("hl_model", "MODEL", "hl", "model"), ("sh_model", "MODEL", "sh", "model"),
        *_five_brackets("encode", ("hl_pos", "hl_neg")),
        ("image", "IMAGE", "blend", "ldr"), ("decode", "hdr", "blend", "hdr"),
        *save_links, *layer_links,
    ]
    layout = [
        [[("Input: your model's image", [["note", "ckpt", "empty"], ["pos", "neg", "ks", "image"]]),
          ("Brackets", [["sd15", "hl_pos", "hl_neg"], ["hl_model", "sh_model", "hdrvae", "encode"], ["hl"], ["sh"]])],
         [layers]],
        [[("HDR", [["fuse", "decode"], ["blend"]])],
         [outputs]],
    ]
    return nodes, links, layout


def video_to_hdr():
    """A clip to HDR: the frames batch through the photo path with frames = video, into an EXR
    sequence and an HEVC PQ master with the clip's sound."""
    save_nodes, save_links, outputs = _savers("video_to_hdr", ("blend", "hdr"))
    nodes = [
        _note(PHOTO_DOWNLOADS.replace(", VAE for the bracket layers", "") +
              f"\nYour clip (put it in ComfyUI's input folder; {CLIP} here) -> Load Video -> Get Video Components "
              "(frames, sound, fps) -> VAE Encode (HDR VAE) -> Highlight Bracket with frames = video (the noise "
              "follows the clip's motion, measured on the frames connected to motion; tiled at 512 px) -> fusion "
              "-> HDR Decode -> Blend with LDR (frames = video: one fit for the shot) -> an EXR sequence in "
              "output/LEDiff/video_to_hdr/shot_00001/ (shot.1001.exr, ...) and an HEVC PQ (HDR10) MP4 with the "
              "clip's sound. Long clips: lower chunk_frames, or load them in parts (see docs/video.md)."),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, "SD1.5 checkpoint"),
        ("clip", "LoadVideo", {"file": CLIP}, "Your clip"),
        ("parts", "GetVideoComponents", {}, None),
        ("pos", "CLIPTextEncode", {"text": ""}, "Prompt (empty)"),
        ("neg", "CLIPTextEncode", {"text": ""}, "Negative (unused)"),
        *_one_bracket_nodes(bracket={"tile_size": 512, "frames": "video", "chunk_frames": 8},
                            encode_title="Encode (HDR VAE)", decode={"tile_size": 512}),
        ("blend", "LEDiffBlendLDR", {**BLEND, "frames": "video"}, None),
        *save_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        ("clip", "VIDEO", "parts", "video"),
        *_one_bracket(("parts", "images")), ("parts", "images", "bracket", "motion"),
        ("parts", "images", "blend", "ldr"), ("decode", "hdr", "blend", "hdr"),
        *save_links,
        ("parts", "fps", "save", "fps"), ("parts", "fps", "save2", "fps"), ("parts", "audio", "save2", "audio"),
    ]
    layout = [
        [[("Input: your clip", [["note", "ckpt"], ["clip"], ["parts", "pos", "neg"]]),
          ("Brackets", [["model", "hdrvae", "encode"], ["bracket"]]),
          ("HDR", [["fuse", "decode", "blend"]]),
          outputs]],
    ]
    return nodes, links, layout


# the log encoding hdr_through_sdr_node carries the HDR in: ACEScct keeps linear up to 222.9 under
# signal 1 (docs/color.md#log-encodings)
SDR_NODE_ENCODING = "ACEScct (AP1)"


def hdr_through_sdr_node():
    """HDR through a node that only knows 0..1: the photo path's linear HDR -> HDR Color Space into a
    log signal (ACEScct) -> core's Upscale Image By (Lanczos, which clamps to 0..1 and quantises to 8
    bits) -> HDR Color Space back to linear -> EXR. Without the encoding the upscale would clip every
    highlight to 1."""
    save_nodes, save_links, outputs = _savers("hdr_through_sdr_node", ("decode_log", "image"))
    to_log = {"source": "Linear Rec.709 (sRGB)", "target": SDR_NODE_ENCODING}
    nodes = [
        _note(PHOTO_DOWNLOADS.replace(", VAE for the bracket layers", "") +
              "\nHDR through a node that only knows 0..1 (upscalers, inpainting, face restorers clamp to 0..1; "
              "core's Lanczos upscale also keeps 8 bits): photo -> Highlight Bracket -> fusion -> linear HDR -> "
              f"HDR Color Space to {SDR_NODE_ENCODING} (a log signal: linear up to 222.9 fits in 0..1) -> "
              "Upscale Image By (core, any SDR-only node goes here) -> HDR Color Space back to linear -> EXR in "
              "output/LEDiff/, highlights far above 1 kept (within 5 % per 8-bit code). Other encodings "
              "(LogC3, S-Log3, the HDR LoRAs' signals...) and how far each reaches: docs/color.md."),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, "SD1.5 checkpoint"),
        ("photo", "LoadImage", {"image": PHOTO}, "Your photo"),
        ("pos", "CLIPTextEncode", {"text": ""}, "Prompt (empty)"),
        ("neg", "CLIPTextEncode", {"text": ""}, "Negative (unused)"),
        *_one_bracket_nodes(),
        ("encode_log", "LEDiffColorSpace", to_log, "To log (ACEScct)"),
        ("upscale", "ImageScaleBy", {"upscale_method": "lanczos", "scale_by": 2.0}, "Upscale (SDR-only)"),
        ("decode_log", "LEDiffColorSpace", {"source": to_log["target"], "target": to_log["source"]},
         "Back to linear"),
        *save_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        *_one_bracket(("photo", "IMAGE")),
        ("decode", "hdr", "encode_log", "image"), ("encode_log", "image", "upscale", "image"),
        ("upscale", "IMAGE", "decode_log", "image"),
        *save_links,
    ]
    layout = [
        [[("Input: your photo", [["note", "ckpt"], ["photo"], ["pos", "neg"]]),
          ("Brackets", [["model", "hdrvae", "encode"], ["bracket"]]),
          ("HDR", [["fuse", "decode"]]),
          ("SDR node, in log", [["encode_log", "upscale", "decode_log"]]),
          outputs]],
    ]
    return nodes, links, layout


# the lens hdr_depth_of_field renders: focus on the depth at the picture's centre, a blur of at most
# 16 px (only the depth map's shape matters, which suits an estimator's relative depth), and one
# 6-blade aperture for both the bokeh's polygon and the glare's streaks
DOF = {"depth_convention": "near = bright", "focus": "point", "focus_x": 0.5, "focus_y": 0.5,
       "aperture": "largest blur", "largest_blur": 16.0, "shape": "polygon", "blades": 6, "rotation": 0.0}
GLARE = {"intensity": 0.1, "threshold": 1.0, "radius": 128, "blades": 6, "rotation": 0.0}


def hdr_depth_of_field():
    """Depth of field and glare on the photo path's linear HDR: photo -> Highlight Bracket -> fusion
    -> HDR Decode -> Blend with LDR -> Lens Blur (HDR) with the user's depth map (a second Load
    Image) -> Glare (HDR) -> EXR + Ultra HDR JPEG. In linear light a highlight keeps its energy: it
    becomes a bright bokeh polygon and glares, where the 8-bit picture's would be a grey smudge."""
    save_nodes, save_links, outputs = _savers("hdr_depth_of_field", ("glare", "image"))
    nodes = [
        _note(PHOTO_DOWNLOADS.replace(", VAE for the bracket layers", "") +
              f"\nDepth map: a grey image of your photo, near = bright, in ComfyUI's input folder ({DEPTH} here). "
              "Make one with a depth estimator, e.g. the Depth Anything or MiDaS preprocessor of the "
              "comfyui_controlnet_aux node pack (or connect that node to Lens Blur's depth in place of Load Image).\n"
              "\nPhoto -> Highlight Bracket -> fusion -> HDR Decode -> Blend with LDR -> linear HDR -> Lens Blur "
              "(HDR: focus on the depth at the picture's centre, bokeh of a 6-blade aperture, at most 16 px) -> "
              "Glare (HDR, the same aperture's streaks) -> EXR + Ultra HDR JPEG in output/LEDiff/. In linear light "
              "the highlights keep their energy: bright bokeh, real glare. See docs/lens.md."),
        ("ckpt", "CheckpointLoaderSimple", {"ckpt_name": CHECKPOINT}, "SD1.5 checkpoint"),
        ("photo", "LoadImage", {"image": PHOTO}, "Your photo"),
        ("depth", "LoadImage", {"image": DEPTH}, "Your depth map"),
        ("pos", "CLIPTextEncode", {"text": ""}, "Prompt (empty)"),
        ("neg", "CLIPTextEncode", {"text": ""}, "Negative (unused)"),
        *_one_bracket_nodes(),
        ("blend", "LEDiffBlendLDR", BLEND, None),
        ("lens", "LEDiffLensBlur", DOF, None),
        ("glare", "LEDiffGlare", GLARE, None),
        *save_nodes,
    ]
    links = [
        ("ckpt", "CLIP", "pos", "clip"), ("ckpt", "CLIP", "neg", "clip"),
        *_one_bracket(("photo", "IMAGE")),
        ("photo", "IMAGE", "blend", "ldr"), ("decode", "hdr", "blend", "hdr"),
        ("blend", "hdr", "lens", "image"), ("depth", "IMAGE", "lens", "depth"),
        ("lens", "image", "glare", "image"),
        *save_links,
    ]
    layout = [
        [[("Input: your photo and its depth map", [["note", "ckpt", "pos", "neg"], ["photo"], ["depth"]]),
          ("Brackets", [["model", "hdrvae", "encode", "bracket"]]),
          ("HDR", [["fuse", "decode", "blend"]])]],
        [[("Lens", [["lens", "glare"]])]],
        [[outputs]],
    ]
    return nodes, links, layout


WORKFLOWS = {"text_to_hdr": text_to_hdr, "photo_to_hdr": photo_to_hdr, "shadow_recovery": shadow_recovery,
             "hdr_panorama": hdr_panorama, "any_model_to_hdr": any_model_to_hdr, "video_to_hdr": video_to_hdr,
             "sdxl_text_to_hdr": sdxl_text_to_hdr, "hdr_through_sdr_node": hdr_through_sdr_node,
             "hdr_depth_of_field": hdr_depth_of_field}


def placed_ids(layout) -> list[str]:
    """The node ids a layout places, in order."""
    return [node_id for stack in layout for row in stack for _, columns in row for column in columns
            for node_id in column]
