// tools/image/read_jpeg.cpp: decoding JPEG files with libjpeg-turbo, the library PIL itself calls,
// set up as PIL sets it up (its default inverse DCT and fancy upsampling), so the pixels are PIL's
// exactly. Leaves out ICC profiles and EXIF rotation, as PIL's plain open() does.
//
// stb_image decoded JPEGs until the fuzzer found undefined behaviour in stb a third time on damaged
// files (a shift by 33 in its JPEG bit reader; prism had worked around the first two, a JPEG
// Huffman table overrun and an int overflow in PNM headers). libjpeg-turbo is fuzzed continuously
// upstream (OSS-Fuzz) and checks its input itself.
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t without including them
#include <string>
#include <utility>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "engine/error.hpp"
#include "tools/image/decoders.hpp"

namespace prism {

namespace {

// A valid progressive JPEG has about ten scans. Damaged or hostile files can hold thousands, and
// libjpeg passes over every coefficient of the image in each; more than this is refused.
constexpr int jpeg_most_scans = 500;

// libjpeg reports a fatal error by calling error_exit, which must not return. It longjmps back to
// `decode` with the message kept here: the frames it skips are libjpeg's C frames and these
// callbacks, none of which owns anything to destroy.
struct JpegErrors {
  jpeg_error_mgr library;  // first, so that the pointer libjpeg holds is also this struct's
  std::jmp_buf escape;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  info->err->format_message(info, errors->message);
  std::longjmp(errors->escape, 1);
}

// On damaged data libjpeg warns and goes on, filling what it could not decode with grey (PIL
// refuses some such files, "image file is truncated" or "broken data stream", and shows others).
// A warning that pixels were lost is an error here: an explanation of grey filler would mislead.
// The warnings that lose nothing pass: bytes between segments, an unknown Adobe transform code or
// JFIF version, a damaged ICC profile (which PIL's plain open() does not apply either).
void warn(j_common_ptr info, int level) {
  if (level >= 0) return;  // advisory and trace messages; -1 is a warning
  switch (info->err->msg_code) {
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_ADOBE_XFORM:
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC: return;
    default: fail(info);
  }
}

void count_scans(j_common_ptr info) {
  auto* decompress = reinterpret_cast<j_decompress_ptr>(info);
  if (decompress->input_scan_number <= jpeg_most_scans) return;
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  std::snprintf(errors->message, sizeof errors->message, "more than %d scans", jpeg_most_scans);
  std::longjmp(errors->escape, 1);
}

// Everything libjpeg touches, owned by read_jpeg_bytes's frame rather than by `decode`'s: after a
// longjmp the locals of the function that called setjmp may hold stale values, so `decode` has
// none that it changes.
struct JpegDecoding {
  jpeg_decompress_struct info = {};  // zeroed: jpeg_destroy_decompress is safe on it even before create
  JpegErrors errors;
  jpeg_progress_mgr progress = {};
  std::vector<uint8_t> row;  // a grey or CMYK row as libjpeg writes it: (width, components)
  Image image;
  ~JpegDecoding() { jpeg_destroy_decompress(&info); }
};

// PIL's convert("RGB") of a CMYK pixel (Pillow's cmyk2rgb), after PIL's JPEG reader has inverted
// the stored values ("CMYK;I": it assumes Adobe's convention, that CMYK JPEGs hold 255 - ink).
uint8_t cmyk_to_rgb(uint8_t stored_ink, uint8_t stored_black) {
  const int ink = 255 - stored_ink, not_black = stored_black;
  const int product = ink * not_black + 128;  // Pillow's MULDIV255: ink * not_black / 255, rounded
  return static_cast<uint8_t>(not_black - (((product >> 8) + product) >> 8));
}

// A grey or CMYK row as libjpeg writes it (width, components) to RGB. RGB rows need nothing: libjpeg
// writes them into the image itself.
void to_rgb(const uint8_t* row, int components, int64_t width, uint8_t* rgb) {
  for (int64_t x = 0; x < width; ++x, rgb += 3, row += components) {
    if (components == 1) {
      rgb[0] = rgb[1] = rgb[2] = row[0];
    } else {
      for (int c = 0; c < 3; ++c) rgb[c] = cmyk_to_rgb(row[c], row[3]);
    }
  }
}

// Returns false, with the reason in d.errors.message, when libjpeg gives up; throws an Error for
// what prism refuses itself.
bool decode(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels, JpegDecoding& d) {
  if (setjmp(d.errors.escape)) return false;
  jpeg_create_decompress(&d.info);
  d.progress.progress_monitor = count_scans;
  d.info.progress = &d.progress;
  jpeg_mem_src(&d.info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d.info, TRUE);
  const int64_t width = d.info.image_width, height = d.info.image_height;
  check_pixel_count(name, width, height, max_pixels);
  // PIL reads 1, 3 and 4 components as L, RGB (from YCbCr or RGB) and CMYK (from CMYK or YCCK).
  switch (d.info.num_components) {
    case 1: d.info.out_color_space = JCS_GRAYSCALE; break;
    case 3: d.info.out_color_space = JCS_RGB; break;
    case 4: d.info.out_color_space = JCS_CMYK; break;
    default:
      throw Error(name + ": cannot read the image (a JPEG with " + std::to_string(d.info.num_components) +
                  " colour components; PIL reads 1, 3 or 4)");
  }
  jpeg_start_decompress(&d.info);
  const int components = d.info.output_components;
  if (components != 3) d.row.resize(static_cast<size_t>(width) * components);
  d.image.width = width;
  d.image.height = height;
  d.image.rgb.resize(static_cast<size_t>(width * height * 3));
  while (d.info.output_scanline < d.info.output_height) {
    uint8_t* rgb = d.image.rgb.data() + static_cast<int64_t>(d.info.output_scanline) * width * 3;
    JSAMPROW row = components == 3 ? rgb : d.row.data();
    jpeg_read_scanlines(&d.info, &row, 1);
    if (components != 3) to_rgb(d.row.data(), components, width, rgb);
  }
  jpeg_finish_decompress(&d.info);
  return true;
}

}  // namespace

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;  // PIL's test: SOI, then a marker
}

Image read_jpeg_bytes(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  JpegDecoding decoding;
  decoding.info.err = jpeg_std_error(&decoding.errors.library);
  decoding.errors.library.error_exit = fail;
  decoding.errors.library.emit_message = warn;
  if (!decode(data, size, name, max_pixels, decoding)) {
    throw Error(name + ": cannot read the image (a damaged JPEG: " + decoding.errors.message + ")");
  }
  return std::move(decoding.image);
}

}  // namespace prism
