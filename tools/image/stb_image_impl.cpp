// tools/image/stb_image_impl.cpp: stb_image's decoders compiled here, not taken from Debian's
// libstb, so that every block they allocate starts zeroed. stb keeps a JPEG's Huffman tables in
// one malloc'd decoder state and never clears it, so a damaged file whose scans use a table it
// never defined decodes with whatever an earlier image left in that memory. CI's fuzz run found an
// index past a table's 256 values on a 900-byte progressive JPEG that did not fail when replayed
// alone, which is how such leftovers would show (the likeliest reading; not reproduced). Zeroed,
// such a table decodes every code as symbol 0 of length 0: the same pixels in every process. The
// fuzz target compiles this file too (tests/fuzz/), under the sanitizers.
#include <cstdlib>

#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
