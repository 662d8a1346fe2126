// tools/image/stb_image_impl.cpp: stb_image's decoders compiled here, not taken from Debian's
// libstb: every format but JPEG, which libjpeg-turbo decodes (read_jpeg.cpp). Every block stb
// allocates starts zeroed: stb's decoders do not always set what they allocate (its JPEG decoder,
// no longer built, read Huffman tables a damaged file never defined), and zeroed memory makes a
// damaged file decode the same way in every process. The fuzz target compiles this file too
// (tests/fuzz/), under the sanitizers.
#include <cstdlib>

#define STBI_NO_JPEG
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
