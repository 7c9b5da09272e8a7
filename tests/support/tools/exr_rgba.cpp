// Test helper built against Debian's OpenEXR C++ library (libopenexr-dev): converts between RGBA and
// luminance/chroma files through the library's own RGBA interface (RgbaInputFile/RgbaOutputFile),
// so the tests compare our YC reader with the C++ library's reconstruction.
//
//   exr_rgba yc   IN OUT   read IN as RGBA, write OUT with WRITE_YCA (WRITE_YC when IN has no
//                          alpha): Y full resolution, RY and BY sampled 2x2, as the library does
//   exr_rgba rgba IN OUT   read IN as RGBA (a YC file is reconstructed by the library), write OUT
//                          as plain half RGBA
// OUT is written without compression (lossless, so it carries exactly what the library produced);
// the rest of IN's header (windows, chromaticities) is kept.
#include <ImfRgbaFile.h>
#include <ImfArray.h>
#include <ImfHeader.h>
#include <ImfCompression.h>
#include <cstdio>
#include <cstring>
#include <exception>

using namespace Imf;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: exr_rgba yc|rgba IN OUT\n");
    return 2;
  }
  try {
    RgbaInputFile in(argv[2]);
    const Imath::Box2i dw = in.dataWindow();
    const int w = dw.max.x - dw.min.x + 1, h = dw.max.y - dw.min.y + 1;
    Array2D<Rgba> px(h, w);
    in.setFrameBuffer(&px[0][0] - dw.min.x - dw.min.y * w, 1, w);
    in.readPixels(dw.min.y, dw.max.y);
    const bool alpha = (in.channels() & WRITE_A) != 0;
    RgbaChannels out_channels;
    if (std::strcmp(argv[1], "yc") == 0) {
      out_channels = alpha ? WRITE_YCA : WRITE_YC;
    } else if (std::strcmp(argv[1], "rgba") == 0) {
      out_channels = WRITE_RGBA;
    } else {
      std::fprintf(stderr, "unknown mode %s\n", argv[1]);
      return 2;
    }
    Header header = in.header();
    header.compression() = NO_COMPRESSION;
    RgbaOutputFile out(argv[3], header, out_channels);
    out.setFrameBuffer(&px[0][0] - dw.min.x - dw.min.y * w, 1, w);
    out.writePixels(h);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "exr_rgba: %s\n", e.what());
    return 1;
  }
  return 0;
}
