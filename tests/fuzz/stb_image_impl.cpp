// tests/fuzz/stb_image_impl.cpp: stb_image's implementation, compiled into the image fuzz target
// so that its decoders run with the sanitizers too (the prism binary links Debian's libstb).
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
