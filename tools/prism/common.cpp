// tools/prism/common.cpp: helpers shared by the subcommands.
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"

#include <fmt/core.h>
#include <glob.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"
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
  Model model = read_model_file(path);
  if (model.has_random_weights()) {
    fmt::print(stderr,
               "note: {} holds RANDOM weights ({}); its classes and maps show the pipeline, not a trained network\n",
               path, model.weights_source);
  }
  return model;
}

void add_device_options(CLI::App* command, DeviceOptions& options) {
  command->add_option("--device", options.device, "cpu (default) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  command->add_flag("--tf32", options.tf32,
                    "cuda: let matrix products use TF32 tensor cores (faster; about 1e-3 relative error)");
}

std::string apply_device_options(const DeviceOptions& options, PlanOptions& plan_options) {
  if (options.device != "cuda") {
    if (options.tf32) throw Error("--tf32 applies to --device cuda only");
    plan_options.backend = Backend::cpu;
    return "cpu";
  }
  const std::string gpu = require_cuda();
  plan_options.backend = Backend::cuda;
  plan_options.tf32 = options.tf32;
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
