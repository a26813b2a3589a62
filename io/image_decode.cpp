// JPEG decoding through libjpeg's own API (the TurboJPEG 2.x API has no partial decoding),
// PNG through libpng's simplified API, JPEG encoding through TurboJPEG.
#include "io/image_decode.h"

#include <jpeglib.h>
#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

// jerror.h's codes: JWRN_JPEG_EOF is "Premature end of JPEG file".
#include <jerror.h>

namespace rn::io {
namespace {

// libjpeg reports errors through a callback that must not return: it jumps back to the
// setjmp in the function that called into libjpeg. Warnings are counted, the first one kept.
struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool hit_eof;  // data ended early: the file is truncated
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<JpegErrors*>(cinfo->err);
  // Corrupt-data warnings (extraneous bytes, a bad Huffman code) still give an image, as they
  // do for PIL; data that stops short of the image does not.
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->hit_eof = true;
  ++cinfo->err->num_warnings;
}

// A decompressor with its error manager, destroyed on every path.
struct Jpeg {
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  Jpeg() {
    cinfo.err = jpeg_std_error(&errors.mgr);
    errors.mgr.error_exit = jpeg_on_error;
    errors.mgr.emit_message = jpeg_on_message;
    errors.message[0] = '\0';
    errors.hit_eof = false;
    jpeg_create_decompress(&cinfo);
  }
  ~Jpeg() { jpeg_destroy_decompress(&cinfo); }
  Jpeg(const Jpeg&) = delete;
  Jpeg& operator=(const Jpeg&) = delete;
};

bool is_cmyk(J_COLOR_SPACE s) {
  return s == JCS_CMYK || s == JCS_YCCK;
}

// CMYK to RGB as PIL's convert("RGB") does: R = (255 - C)(255 - K) / 255. Adobe's files store
// the inverted values (PIL reads them as "CMYK;I"), so there R = C' K' / 255.
void cmyk_row_to_rgb(const uint8_t* in, int n, bool inverted, uint8_t* out) {
  for (int i = 0; i < n; ++i, in += 4, out += 3) {
    const int k = inverted ? in[3] : 255 - in[3];
    for (int c = 0; c < 3; ++c) {
      const int v = inverted ? in[c] : 255 - in[c];
      // Rounded like PIL's MULDIV255.
      const int t = v * k + 128;
      out[c] = static_cast<uint8_t>((t + (t >> 8)) >> 8);
    }
  }
}

// Whether the data ends with an EOI marker, allowing trailing padding. Most truncated files
// fail this; the rest are caught by libjpeg's end-of-data warning during a full decode.
bool ends_with_eoi(const uint8_t* data, size_t size) {
  size_t n = size;
  while (n > 2 &&
         (data[n - 1] == 0 || data[n - 1] == '\n' || data[n - 1] == '\r' || data[n - 1] == ' '))
    --n;
  return n >= 2 && data[n - 2] == 0xFF && data[n - 1] == 0xD9;
}

// The rows and columns [x0, x1) x [y0, y1) of the W x H image scaled to sw x sh that the
// request's bw x bh box and the filter's margin touch (all of it unless a partial decode).
struct Window {
  int x0, x1, y0, y1;
};

Window touched_window(const DecodeRequest& req, double bw, double bh, int W, int H, int sw,
                      int sh) {
  if (!(req.partial && req.w > 0 && req.h > 0)) return {0, sw, 0, sh};
  const double fx = static_cast<double>(sw) / W, fy = static_cast<double>(sh) / H;
  const double mx = std::max(1.0, req.out_width > 0 ? bw * fx / req.out_width : 1.0) + 1;
  const double my = std::max(1.0, req.out_height > 0 ? bh * fy / req.out_height : 1.0) + 1;
  Window w;
  w.x0 = std::clamp(static_cast<int>(std::floor(req.x * fx - mx)), 0, sw);
  w.x1 = std::clamp(static_cast<int>(std::ceil((req.x + bw) * fx + mx)), w.x0, sw);
  w.y0 = std::clamp(static_cast<int>(std::floor(req.y * fy - my)), 0, sh);
  w.y1 = std::clamp(static_cast<int>(std::ceil((req.y + bh) * fy + my)), w.y0, sh);
  return w;
}

// Returns false and leaves the message in `j.errors` when libjpeg failed. No C++ object with a
// destructor lives in this frame between setjmp and the calls that may jump.
bool jpeg_decode(Jpeg& j, const uint8_t* data, size_t size, const DecodeRequest& req,
                 bool full_rows, DecodedImage& out, std::vector<uint8_t>& cmyk_row) {
  jpeg_decompress_struct& c = j.cinfo;
  if (setjmp(j.errors.jump)) return false;
  jpeg_mem_src(&c, data, static_cast<unsigned long>(size));
  jpeg_read_header(&c, TRUE);
  const int W = static_cast<int>(c.image_width), H = static_cast<int>(c.image_height);
  const double bw = req.w > 0 ? req.w : W, bh = req.h > 0 ? req.h : H;
  const int denom = req.out_width > 0 ? dct_scale_denom(bw, bh, req.out_width, req.out_height) : 1;
  const bool cmyk = is_cmyk(c.jpeg_color_space);
  c.out_color_space = cmyk                                  ? JCS_CMYK
                      : c.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE
                                                            : JCS_RGB;
  c.scale_num = 1;
  c.scale_denom = static_cast<unsigned>(denom);
  c.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&c);
  const int sw = static_cast<int>(c.output_width), sh = static_cast<int>(c.output_height);
  out.original_width = W, out.original_height = H;
  out.scaled_width = sw, out.scaled_height = sh;
  out.scale_denom = denom;
  out.channels = c.out_color_space == JCS_GRAYSCALE ? 1 : 3;

  auto [x0, x1, y0, y1] = touched_window(req, bw, bh, W, H, sw, sh);
  if (x1 - x0 < sw) {
    // Rounds the window out to whole iMCU columns and says where it begins.
    JDIMENSION xoff = static_cast<JDIMENSION>(x0), width = static_cast<JDIMENSION>(x1 - x0);
    jpeg_crop_scanline(&c, &xoff, &width);
    x0 = static_cast<int>(xoff);
    x1 = x0 + static_cast<int>(width);
  }
  const int ow = static_cast<int>(c.output_width);  // the cropped width now
  out.x0 = x0, out.y0 = y0;
  out.width = ow, out.height = y1 - y0;
  const size_t stride = static_cast<size_t>(ow) * out.channels;
  out.pixels.resize(stride * static_cast<size_t>(out.height));
  if (y0 > 0) jpeg_skip_scanlines(&c, static_cast<JDIMENSION>(y0));
  if (cmyk) cmyk_row.resize(static_cast<size_t>(ow) * 4);
  const bool inverted = c.saw_Adobe_marker;
  for (int y = 0; y < out.height; ++y) {
    JSAMPROW row = cmyk ? cmyk_row.data() : out.pixels.data() + stride * static_cast<size_t>(y);
    if (jpeg_read_scanlines(&c, &row, 1) != 1) {
      std::snprintf(j.errors.message, sizeof j.errors.message, "no data for row %d of %d", y0 + y,
                    sh);
      return false;
    }
    if (cmyk)
      cmyk_row_to_rgb(cmyk_row.data(), ow, inverted,
                      out.pixels.data() + stride * static_cast<size_t>(y));
  }
  if (full_rows && y1 < sh) {
    // Reads on to the end, so that data stopping early is seen whatever rows the box needs.
    jpeg_skip_scanlines(&c, static_cast<JDIMENSION>(sh - y1));
  }
  if (static_cast<int>(c.output_scanline) >= sh)
    jpeg_finish_decompress(&c);
  else
    jpeg_abort_decompress(&c);
  return true;
}

bool jpeg_header(Jpeg& j, const uint8_t* data, size_t size, ImageHeader& h) {
  if (setjmp(j.errors.jump)) return false;
  jpeg_mem_src(&j.cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&j.cinfo, TRUE);
  h.width = static_cast<int>(j.cinfo.image_width);
  h.height = static_cast<int>(j.cinfo.image_height);
  h.channels = j.cinfo.num_components;
  return true;
}

void decode_png(const uint8_t* data, size_t size, DecodedImage& out) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, data, size))
    throw BadSample(str_cat("PNG: ", img.message));
  const bool gray = (img.format & PNG_FORMAT_FLAG_COLOR) == 0;
  const bool alpha = (img.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  // With alpha, the 8-bit values are read as stored (not premultiplied) and the alpha channel
  // is dropped, as PIL's convert("RGB") does.
  img.format =
      gray ? (alpha ? PNG_FORMAT_GA : PNG_FORMAT_GRAY) : (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB);
  const int stored = (gray ? 1 : 3) + (alpha ? 1 : 0);
  out.channels = gray ? 1 : 3;
  out.width = out.scaled_width = out.original_width = static_cast<int>(img.width);
  out.height = out.scaled_height = out.original_height = static_cast<int>(img.height);
  out.x0 = out.y0 = 0;
  out.scale_denom = 1;
  out.pixels.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out.pixels.data(), 0, nullptr)) {
    const std::string message = img.message;
    png_image_free(&img);
    throw BadSample("PNG: " + message);
  }
  if (alpha) {
    const size_t n = static_cast<size_t>(out.width) * out.height;
    uint8_t* p = out.pixels.data();
    for (size_t i = 0; i < n; ++i)
      for (int c = 0; c < out.channels; ++c) p[i * out.channels + c] = p[i * stored + c];
    out.pixels.resize(n * out.channels);
  }
}

std::string first_bytes(const uint8_t* data, size_t size) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%zu bytes starting %02x %02x %02x %02x", size,
                size > 0 ? data[0] : 0, size > 1 ? data[1] : 0, size > 2 ? data[2] : 0,
                size > 3 ? data[3] : 0);
  return buf;
}

}  // namespace

ImageFormat sniff_format(const uint8_t* data, size_t size) {
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return ImageFormat::jpeg;
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_magic, 8) == 0) return ImageFormat::png;
  return ImageFormat::unknown;
}

ImageHeader read_image_header(const uint8_t* data, size_t size) {
  ImageHeader h;
  h.format = sniff_format(data, size);
  if (h.format == ImageFormat::jpeg) {
    Jpeg j;
    if (!jpeg_header(j, data, size, h)) throw BadSample(str_cat("JPEG: ", j.errors.message));
  } else if (h.format == ImageFormat::png) {
    png_image img;
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size))
      throw BadSample(str_cat("PNG: ", img.message));
    h.width = static_cast<int>(img.width), h.height = static_cast<int>(img.height);
    h.channels = (img.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
    png_image_free(&img);
  } else {
    throw BadSample("not a JPEG or PNG image (" + first_bytes(data, size) + ")");
  }
  if (h.width < 1 || h.height < 1)
    throw BadSample(str_cat("image of ", h.width, "x", h.height, " pixels"));
  return h;
}

int dct_scale_denom(double w, double h, int out_width, int out_height) {
  for (int d : {8, 4, 2})
    if (w / d >= out_width && h / d >= out_height) return d;
  return 1;
}

void decode_image(const uint8_t* data, size_t size, const DecodeRequest& req, DecodedImage& out) {
  switch (sniff_format(data, size)) {
    case ImageFormat::jpeg: {
      thread_local std::vector<uint8_t> cmyk_row;
      const bool complete = ends_with_eoi(data, size);
      Jpeg j;
      if (!jpeg_decode(j, data, size, req, /*full_rows=*/!complete, out, cmyk_row))
        throw BadSample(str_cat("JPEG: ", j.errors.message));
      if (j.errors.hit_eof)
        throw BadSample("JPEG: truncated (the data ends before the image does)");
      return;
    }
    case ImageFormat::png:
      decode_png(data, size, out);
      return;
    case ImageFormat::unknown:
      break;
  }
  throw BadSample("not a JPEG or PNG image (" + first_bytes(data, size) + ")");
}

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels,
                                 int quality) {
  RN_CHECK(channels == 1 || channels == 3 || channels == 4, "[jpeg] " << channels << " channels");
  RN_CHECK(quality >= 1 && quality <= 100, "[jpeg] quality " << quality);
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitCompress(), tjDestroy);
  RN_CHECK(tj, "[jpeg] tjInitCompress: " << tjGetErrorStr());
  const int format = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_CMYK;
  const int subsamp = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  if (tjCompress2(tj.get(), pixels, width, 0, height, format, &buf, &len, subsamp, quality,
                  TJFLAG_ACCURATEDCT) != 0) {
    const std::string message = tjGetErrorStr2(tj.get());
    tjFree(buf);
    RN_FAIL("JPEG encoding of a " << width << "x" << height << " image: " << message);
  }
  std::vector<uint8_t> bytes(buf, buf + len);
  tjFree(buf);
  return bytes;
}

}  // namespace rn::io
