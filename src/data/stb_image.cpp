// stb_image's implementation, compiled once and alone: it is third-party code, so the sanitizer
// builds exempt it from the checks of arithmetic that kiln's own code obeys (see CMakeLists.txt).
// STBI_FAILURE_USERMSG: stbi_failure_reason() gives the long, readable reasons kiln's errors quote.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
