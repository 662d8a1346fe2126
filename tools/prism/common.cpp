// tools/prism/common.cpp: helpers shared by the subcommands.
#include "tools/prism/common.hpp"

#include <fmt/core.h>
#include <glob.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"
#include "layers/cpu/gemm.hpp"
#include "tools/image/image.hpp"
#include "tools/prism/subcommands.hpp"
#include "weights/model_file.hpp"

namespace prism {

namespace fs = std::filesystem;

std::vector<std::string> expand_image_arguments(const std::vector<std::string>& arguments) {
  static const std::vector<std::string> extensions = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".ppm", ".pgm"};
  std::vector<std::string> files;
  for (const std::string& argument : arguments) {
    std::error_code error;
    if (fs::is_directory(argument, error)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::directory_iterator(argument, error)) {
        std::string extension = entry.path().extension().string();
        std::transform(extension.begin(), extension.end(), extension.begin(), ::tolower);
        if (entry.is_regular_file() && std::find(extensions.begin(), extensions.end(), extension) != extensions.end()) {
          found.push_back(entry.path().string());
        }
      }
      if (found.empty()) throw Error(argument + ": the folder holds no image files");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(argument, error)) {
      files.push_back(argument);
    } else if (argument.find_first_of("*?[") != std::string::npos) {
      // A quoted glob the shell did not expand, as TorchPRISM's --input "samples/*.jpg".
      glob_t matches{};
      const int status = ::glob(argument.c_str(), 0, nullptr, &matches);
      for (size_t i = 0; status == 0 && i < matches.gl_pathc; ++i) files.push_back(matches.gl_pathv[i]);
      ::globfree(&matches);
      if (status != 0) throw Error(argument + ": no files match this pattern");
    } else {
      throw Error(argument + ": no such file or folder");
    }
  }
  if (files.empty()) throw Error("no images given");
  return files;
}

Model load_model_for_cli(const std::string& path) {
  Model model = read_model_file_isolated(path);
  if (model.has_random_weights()) {
    fmt::print(stderr,
               "note: {} holds RANDOM weights ({}); its classes and maps show the pipeline, not a trained network\n",
               path, model.weights_source);
  }
  return model;
}

void add_image_read_options(CLI::App* command, ImageReadOptions& options) {
  command->add_flag("--skip-bad", options.skip_bad,
                    "Leave out images that cannot be read (and say which) instead of stopping");
  command->add_option("--max-image-pixels", options.max_pixels,
                      "Refuse images larger than this many pixels, from their header (decompression bombs)")
      ->check(CLI::PositiveNumber);
}

std::vector<Image> read_images(std::vector<std::string>& files, bool skip_bad, int64_t max_pixels,
                               std::vector<std::pair<std::string, std::string>>& skipped) {
  std::vector<Image> images;
  std::vector<std::string> kept;
  for (const std::string& file : files) {
    try {
      images.push_back(read_image(file, max_pixels));
      kept.push_back(file);
    } catch (const Error& error) {
      if (!skip_bad) throw;
      fmt::print(stderr, "skipped {}\n", error.what());
      skipped.emplace_back(file, error.what());
    }
  }
  if (images.empty()) throw Error("none of the " + std::to_string(files.size()) + " images could be read");
  files = std::move(kept);
  return images;
}

void add_device_options(CLI::App* command, DeviceOptions& options) {
  command->add_option("--device", options.device, "cpu (default) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_flag("--tf32", options.tf32,
                    "cuda: let matrix products use TF32 tensor cores (faster; about 1e-3 relative error)");
  command->add_flag("--bf16", options.bf16,
                    "cpu: convolutions' matrix products and linear layers' weights in bfloat16, summed in fp32 "
                    "(AVX512_BF16; faster; about 1e-2 relative error)");
  command->add_option("--max-memory", options.max_memory_gib,
                      "GiB a batch's activations may take (default: 90% of the memory there is)")
      ->check(CLI::PositiveNumber);
}

std::string apply_device_options(const DeviceOptions& options, PlanOptions& plan_options) {
  constexpr double gib = 1024.0 * 1024.0 * 1024.0;
  if (options.device != "cuda") {
    if (options.tf32) throw Error("--tf32 applies to --device cuda only");
    if (options.bf16 && !gemm_bf16_available()) {
      throw Error(
          "--bf16 needs a CPU with AVX512_BF16 (AMD Zen 4 or later, Intel Sapphire Rapids or later) and a "
          "build for it (cmake -DPRISM_NATIVE=ON on such a machine); this build has none");
    }
    plan_options.backend = Backend::cpu;
    plan_options.bf16 = options.bf16;
    const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
    plan_options.memory_limit_bytes =
        static_cast<int64_t>(options.max_memory_gib > 0 ? options.max_memory_gib * gib : 0.9 * physical);
    return "cpu";
  }
  if (options.bf16) throw Error("--bf16 applies to --device cpu only (on a GPU see --tf32)");
  const std::string gpu = require_cuda();
  plan_options.backend = Backend::cuda;
  plan_options.tf32 = options.tf32;
  plan_options.memory_limit_bytes = static_cast<int64_t>(
      options.max_memory_gib > 0 ? options.max_memory_gib * gib : 0.9 * static_cast<double>(cuda_free_bytes()));
  return gpu;
}

int use_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  return omp_get_max_threads();
}

std::vector<std::vector<RankedClass>> top_classes(const Tensor& logits, const std::vector<std::string>& labels,
                                                  int64_t k) {
  const int64_t rows = logits.dim(0), classes = logits.dim(1);
  k = std::min(k, classes);
  std::vector<std::vector<RankedClass>> ranked(rows);
  for (int64_t n = 0; n < rows; ++n) {
    const float* row = logits.data() + n * classes;
    const double largest = *std::max_element(row, row + classes);
    std::vector<double> probability(classes);
    double total = 0.0;
    for (int64_t c = 0; c < classes; ++c) total += probability[c] = std::exp(row[c] - largest);
    std::vector<int64_t> order(classes);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return probability[a] > probability[b]; });
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = order[i];
      const std::string label = c < static_cast<int64_t>(labels.size()) ? labels[c] : "class " + std::to_string(c);
      ranked[n].push_back({c, label, static_cast<float>(probability[c] / total)});
    }
  }
  return ranked;
}

nlohmann::json top_classes_json(const std::vector<RankedClass>& ranked) {
  nlohmann::json list = nlohmann::json::array();
  for (const RankedClass& entry : ranked) {
    list.push_back({{"index", entry.index}, {"label", entry.label}, {"prob", entry.probability}});
  }
  return list;
}

}  // namespace prism
