// tools/download/download.cpp: libcurl for the transfer, OpenSSL's EVP for SHA-256.
#include "tools/download/download.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "engine/error.hpp"

namespace prism {
namespace {

namespace fs = std::filesystem;

constexpr int attempts = 4;  // one try and three resumptions after a dropped connection

struct CurlCloser {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

size_t write_to_file(char* data, size_t size, size_t count, void* file) {
  return std::fwrite(data, size, count, static_cast<std::FILE*>(file)) * size;
}

enum class Outcome { complete, dropped, cannot_resume };

// One transfer into `part`, appended from its current size when `resume` (a Range request).
Outcome transfer(const std::string& url, const std::string& part, bool resume, const std::string& offline_advice) {
  const uint64_t have = resume && fs::exists(part) ? fs::file_size(part) : 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(part.c_str(), have > 0 ? "ab" : "wb"));
  if (!file) throw Error(part + ": cannot write the download here (is the folder writable?)");
  std::unique_ptr<CURL, CurlCloser> curl(curl_easy_init());
  if (!curl) throw Error("cannot start libcurl");
  char problem[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, problem);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled transfer counts as dropped
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, write_to_file);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, file.get());
  if (have > 0) curl_easy_setopt(curl.get(), CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
  const CURLcode code = curl_easy_perform(curl.get());
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (std::fflush(file.get()) != 0) throw Error(part + ": cannot write the download (is the disk full?)");
  const std::string reason = problem[0] ? problem : curl_easy_strerror(code);
  switch (code) {
    case CURLE_OK: return Outcome::complete;
    case CURLE_RANGE_ERROR: return Outcome::cannot_resume;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR: return Outcome::dropped;
    case CURLE_HTTP_RETURNED_ERROR:
      if (status == 416 && have > 0) return Outcome::complete;  // asked past the end: it was whole already
      throw Error("cannot download " + url + ": the server answered " + std::to_string(status) +
                  (status == 404 ? " (not found: is the address right?)" : ""));
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      throw Error("cannot download " + url + " (" + reason + "). " + offline_advice);
    default: throw Error("cannot download " + url + ": " + reason);
  }
}

}  // namespace

std::string sha256_of_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot read the file");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) throw Error("cannot start SHA-256");
  std::vector<char> buffer(1 << 20);
  while (file) {
    file.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (file.gcount() > 0) EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(file.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  std::string hex;
  char pair[3];
  for (unsigned int i = 0; i < length; ++i) {
    std::snprintf(pair, sizeof(pair), "%02x", digest[i]);
    hex += pair;
  }
  return hex;
}

void download_file(const std::string& url, const std::string& destination, const std::string& sha256_prefix,
                   const std::string& offline_advice) {
  static const CURLcode started = curl_global_init(CURL_GLOBAL_DEFAULT);  // once per process, as libcurl asks
  if (started != CURLE_OK) throw Error("cannot start libcurl");
  const std::string part = destination + ".part";
  bool resume = true;
  Outcome outcome = Outcome::dropped;
  try {
    for (int attempt = 0; attempt < attempts && outcome != Outcome::complete; ++attempt) {
      outcome = transfer(url, part, resume, offline_advice);
      resume = outcome != Outcome::cannot_resume;  // that server sends everything again: start over
      if (outcome == Outcome::cannot_resume) outcome = transfer(url, part, false, offline_advice);
    }
  } catch (const Error&) {
    std::error_code error;
    if (fs::exists(part, error) && fs::file_size(part, error) == 0) fs::remove(part, error);  // nothing to resume
    throw;
  }
  if (outcome != Outcome::complete) {
    throw Error("the download of " + url + " kept stopping (" + std::to_string(fs::exists(part) ? fs::file_size(part) : 0) +
                " bytes so far, kept in " + part + "); run the same command again to resume it");
  }
  const std::string sha256 = sha256_of_file(part);
  if (sha256.compare(0, sha256_prefix.size(), sha256_prefix) != 0) {
    std::remove(part.c_str());
    throw Error("the download of " + url + " is not the expected file: its SHA-256 is " + sha256 +
                ", which does not start with " + sha256_prefix + " (deleted; try again, or check the address)");
  }
  std::error_code error;
  fs::rename(part, destination, error);
  if (error) throw Error(destination + ": cannot move the download into place (" + error.message() + ")");
}

}  // namespace prism
