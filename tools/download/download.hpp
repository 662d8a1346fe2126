// tools/download/download.hpp: fetching a file over HTTP(S) with libcurl, safely: it is written
// under a .part name beside the destination, resumed (or restarted, where the server cannot
// resume) after a dropped connection, checked against the SHA-256 prefix it should have, and only
// then renamed into place. A failure never leaves a file under the final name.
#pragma once

#include <string>

namespace prism {

// Downloads `url` to `destination` and checks that its SHA-256 starts with `sha256_prefix` (hex;
// torchvision names its files NAME-PREFIX.pth). A .part file from an interrupted earlier run is
// resumed. Throws prism::Error: offline (with `offline_advice`, what to do by hand), HTTP errors
// such as 404, a connection that keeps dropping (what arrived stays in the .part, for the next run
// to resume), a checksum that does not match (the .part is deleted).
void download_file(const std::string& url, const std::string& destination, const std::string& sha256_prefix,
                   const std::string& offline_advice);

// The SHA-256 of a file's contents in lower-case hex.
std::string sha256_of_file(const std::string& path);

}  // namespace prism
