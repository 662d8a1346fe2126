// tests/fuzz/fuzz_image.cpp: libFuzzer target for image decoding and preprocessing: bytes of any
// format through read_image_bytes (stb_image, compiled into this target with the sanitizers, and
// Debian's libjpeg-turbo), PIL's bilinear resize to both of prism's input modes, ToTensor and
// Normalize. Any input must end in a tensor or a prism::Error.
#include <cstddef>
#include <cstdint>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // A smaller pixel limit than the tool's: the fuzzer's memory limit would stop it first.
    const prism::Image image = prism::read_image_bytes(data, size, "input", int64_t{1} << 22);
    prism::Preprocessing preprocessing;
    preprocessing.input_height = 37, preprocessing.input_width = 53;
    for (prism::ResizeMode mode : {prism::ResizeMode::stretch, prism::ResizeMode::center_crop}) {
      prism::images_to_batch({prism::resize_for_model(image, preprocessing, mode)}, preprocessing);
    }
  } catch (const prism::Error&) {
  }
  return 0;
}
