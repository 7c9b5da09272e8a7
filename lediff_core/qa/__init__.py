"""Quality assessment of linear HDR images: PU21 encoding, full-reference metrics, exposure strips
and dynamic-range statistics (numpy/torch/PIL only, no ComfyUI import)."""
