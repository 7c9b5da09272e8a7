"""Files in and out: every byte the pack reads or writes goes through here.

Owns OpenEXR reading and writing (``exr``; luminance/chroma reconstruction in ``exr_yc``; the file
layout read without decoding, for per-chunk bounds and reading one part alone, in ``exr_layout``), Radiance
``.hdr`` (``radiance``), reading a linear image by file extension (``readers``), EXR image sequences
(``sequence``), HDR10/HLG video masters (``video``), which files may be opened (``access``: inside
their folder after links are followed, regular files only, checked before opening), publishing a
file or a folder without ever overwriting or leaving a partial one (``publish``), and the display
formats that screens show as HDR: Ultra HDR, AVIF PQ/HLG, JPEG XL, with their metadata boxes
(``display``). OpenCV, used for
optical flow, is imported through ``opencv``.
May import ``lediff_core.color``; never ``model``, ComfyUI, ``nodes`` or ``lediff_runner``.
"""
