"""Save HDR Video: an IMAGE batch as an HDR10 (PQ) or HLG master: 10-bit 4:2:0 HEVC or AV1 in MP4/MKV
for delivery, HEVC 4:4:4 10/12-bit or ProRes 4444 (XQ) in MOV for grading and compositing."""

from __future__ import annotations

import json
import logging

import comfy.model_management as mm
from comfy_api.latest import io, ui

from ...lediff_core.io import video
from .savers import check_images, frame_progress, save_numbered, workflow_metadata

log = logging.getLogger("lediff")


class SaveHDRVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffSaveHDRVideo",
            display_name="Save HDR Video",
            category="LEDiff/image",
            description="Saves an IMAGE batch (the frames) as an HDR video master, BT.2020 with the "
            "PQ curve (HDR10) or HLG: 10-bit 4:2:0 HEVC or AV1 (MP4/MKV) for delivery, HEVC 4:4:4 "
            "10/12-bit (MP4/MKV/MOV) or ProRes 4444 / 4444 XQ (MOV) for grading and compositing; "
            "optional audio.",
            inputs=[
                io.Image.Input("images", tooltip="The frames: linear HDR in the working space (linear "
                               "Rec.709), as HDR Decode or Blend with LDR give them. At least 16 "
                               "pixels a side for the HEVC codecs, 4 for av1; even width and height "
                               "for the 4:2:0 codecs (hevc, av1)."),
                io.String.Input(
                    "filename_prefix", default="LEDiff/hdr_video",
                    tooltip="Prefix of the file name, relative to the output folder; may contain "
                    "subfolders and tokens such as %date:yyyy-MM-dd%.",
                ),
                io.Float.Input("fps", default=24.0, min=0.01, max=1000.0, step=0.001,
                               tooltip="Frames per second; 23.976, 29.97 and 59.94 are written as "
                               "24000/1001, 30000/1001 and 60000/1001."),
                io.Combo.Input("codec", options=list(video.CODECS), default="hevc",
                               tooltip="hevc: HEVC Main 10 4:2:0 (libx265), what TVs and YouTube take "
                               "for HDR10. av1: AV1 10-bit 4:2:0 (libsvtav1), smaller files, newer "
                               "players. hevc_444_10 / hevc_444_12: HEVC Main 4:4:4 10 / 12 (full "
                               "chroma, grading masters). prores_4444 / prores_4444xq: Apple ProRes "
                               "4444 / 4444 XQ, 10-bit 4:4:4 in MOV (what Resolve, Nuke and editors "
                               "exchange; HDR10 metadata in the MOV's boxes, not the ProRes bitstream)."),
                io.Combo.Input("transfer", options=list(video.TRANSFERS), default="pq",
                               tooltip="pq: HDR10, absolute (reference white at 203 cd/m2, clipped at "
                               "mastering_peak), with HDR10 metadata. hlg: broadcast HLG, relative to "
                               "the display's peak (reference white at 75 % signal), no metadata."),
                io.Combo.Input("container", options=list(video.CONTAINERS), default="mp4",
                               tooltip="mp4 (plays in browsers, phones, TVs), mkv (Matroska) or mov "
                               "(QuickTime: ProRes needs it; HEVC too). Audio is AAC in all."),
                io.Int.Input(
                    "quality", default=video.DEFAULT_QUALITY, min=0, max=63,
                    tooltip="CRF: lower is better and larger. hevc 0..51 (18 ~ visually "
                    "transparent, 22-28 for delivery), av1 1..63 (18 is a high-quality master, "
                    "25-35 for delivery). Ignored for ProRes, whose profile sets the data rate.",
                ),
                io.Float.Input(
                    "reference_white", default=1.0, min=1e-6, max=1e6, step=0.01,
                    tooltip="The linear value that is diffuse (SDR) white. It lands on BT.2408's "
                    "reference white: 203 cd/m2 for PQ, 75 % signal for HLG.",
                ),
                io.Float.Input(
                    "mastering_peak", default=1000.0, min=100.0, max=10000.0, step=10.0,
                    tooltip="pq only: peak luminance in cd/m2 of the mastering display the file "
                    "announces; brighter values are clipped to it (1000 suits most HDR displays; "
                    "10000 keeps everything PQ can hold).",
                ),
                io.Audio.Input("audio", optional=True,
                               tooltip="Sound to mux (AAC), cut to the video's length. Mono, "
                               "stereo or 5.1; the first item of an audio batch."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix, fps, codec, transfer, container, quality,
                reference_white, mastering_peak, audio=None) -> io.NodeOutput:
        known = codec in video.MIN_SIZE  # an unknown codec is refused by video.analyse
        # NaN/Inf are counted by video.analyse, which names the frames
        check_images("Save HDR Video", images, noun="frame", finite=False,
                     min_size=video.MIN_SIZE[codec] if known else 1,
                     min_size_reason=video.min_size_note(codec) if known else "")
        settings = video.VideoSettings(fps=fps, codec=codec, transfer=transfer, container=container,
                                       quality=quality, reference_white=reference_white,
                                       mastering_peak=mastering_peak)
        frames = images[..., :3]  # each frame goes to the device as float32 when its turn comes
        # the per-frame colour conversion runs there if it is a CUDA GPU, else on the CPU
        device = video.conversion_device(mm.get_torch_device())
        try:
            # refuses bad input before anything is written
            report = video.analyse(frames, settings, device,
                                   on_frame=lambda _i: mm.throw_exception_if_processing_interrupted())
        except video.VideoError as e:
            raise ValueError(f"Save HDR Video: {e}") from None
        prompt, info = workflow_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo)
        metadata = {key: json.dumps(value) for key, value in info.items()}
        if prompt is not None:
            metadata["prompt"] = json.dumps(prompt)
        def write(_, path):
            try:
                return video.write_video(path, frames, settings, audio=audio, metadata=metadata,
                                         report=report, on_frame=frame_progress(report.frames),
                                         device=device)
            except video.VideoError as e:
                raise ValueError(f"Save HDR Video: {e}") from None
            except OSError as e:
                raise OSError(f"Save HDR Video: writing the video failed ({e}); nothing was saved. "
                              "Free disk space or choose another output folder.") from e

        [(result, _)] = save_numbered("Save HDR Video", filename_prefix, 1, report.width,
                                      report.height, "." + container, write)
        light = (f", MaxCLL {report.max_cll} cd/m2, MaxFALL {report.max_fall} cd/m2"
                 if report.max_cll is not None else "")
        if light and video.CODEC_SPECS[codec].hdr10_boxes:
            light += " (in the MOV's mdcv/clli boxes)"
        log.info("Save HDR Video: %s, %d frame(s) at %s fps, %s %s%s; %d pixel(s) above the peak "
                 "of %s%s, %d pixel(s) with negative BT.2020 components%s", result.filename,
                 report.frames, report.rate, codec, transfer, light, report.over, report.peak,
                 " (clipped)" if report.over else "", report.negative,
                 " (clipped to 0)" if report.negative else "")
        return io.NodeOutput(ui=ui.PreviewVideo([result]))


NODES = [SaveHDRVideo]
