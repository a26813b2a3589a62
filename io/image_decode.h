// Decoding encoded images (JPEG through libjpeg-turbo, PNG through libpng) into 8-bit pixels,
// with JPEG's DCT-domain scaling and partial decoding of the rows and columns a crop needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/check.h"

namespace rn::io {

// A sample whose file cannot be used: unreadable, truncated, corrupt, or not an image this
// build decodes. The loader's bad-data policy decides what happens next (loader.h).
class BadSample : public Error {
 public:
  using Error::Error;
};

enum class ImageFormat { jpeg, png, unknown };

// By content (the first bytes), not by the file's name.
ImageFormat sniff_format(const uint8_t* data, size_t size);

struct ImageHeader {
  ImageFormat format = ImageFormat::unknown;
  int width = 0, height = 0;
  int channels = 0;  // as stored: 1 gray, 3 colour, 4 CMYK / YCCK (JPEG)
};

// The header only (size and colour space). Throws BadSample.
ImageHeader read_image_header(const uint8_t* data, size_t size);

// What to decode: the box (in the image's own pixels) that will be resampled to
// out_width x out_height, and the margin the resampling filter reads around it.
struct DecodeRequest {
  double x = 0, y = 0, w = 0, h = 0;  // w or h = 0: the whole image
  int out_width = 0, out_height = 0;  // 0: no DCT scaling
  bool partial = true;                // decode only the rows and columns the box needs
};

// Decoded pixels of (a window of) the image after DCT scaling: 1 channel (gray) or 3 (RGB),
// interleaved. The window's pixel (i, j) is pixel (x0 + i, y0 + j) of the scaled image, and
// the scaled image is the original shrunk by scaled_width / width (about 1 / scale_denom).
struct DecodedImage {
  int width = 0, height = 0, channels = 0;
  int x0 = 0, y0 = 0;
  int scaled_width = 0, scaled_height = 0;
  int original_width = 0, original_height = 0;
  int scale_denom = 1;
  std::vector<uint8_t> pixels;  // height * width * channels; capacity reused across calls

  // A box in original pixels, mapped into this window's pixel coordinates.
  double map_x(double x) const { return x * scaled_width / original_width - x0; }
  double map_y(double y) const { return y * scaled_height / original_height - y0; }
  double map_w(double w) const { return w * scaled_width / original_width; }
  double map_h(double h) const { return h * scaled_height / original_height; }
};

// The largest DCT scaling denominator (1, 2, 4 or 8) that keeps a w x h box at least
// out_width x out_height pixels: the factors libjpeg-turbo runs in SIMD or cheaper.
int dct_scale_denom(double w, double h, int out_width, int out_height);

// Decodes `data` per `req` into `out` (whose buffer is reused). JPEG: grayscale stays one
// channel, CMYK and YCCK become RGB as PIL converts them; a file whose entropy-coded data ends
// early is BadSample wherever the crop lies. PNG: decoded whole to RGB or gray (no scaling).
// Anything else, or a damaged file, throws BadSample with the reason.
void decode_image(const uint8_t* data, size_t size, const DecodeRequest& req, DecodedImage& out);

// JPEG bytes of an 8-bit image (channels 1, 3 or 4 = CMYK) at `quality` (TurboJPEG, 4:2:0 for
// colour). For `data pack --resize-shorter` and for tests that make their own files.
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels,
                                 int quality);

}  // namespace rn::io
