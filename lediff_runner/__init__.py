"""The runner: a genuine ComfyUI embedded in a process (``host.py``) that runs a workflow over a
folder of inputs, in-process or on a Ray cluster (``batch.py``, ``ray_pool.py``), and the evaluation
of a photo-to-HDR workflow against HDR references (``evaluate.py``). It reaches the pack's nodes only
through ComfyUI, never by importing them. Its command line is ``python -m lediff_runner
{batch,evaluate}`` (``cli.py``); see docs/batch.md.
"""
