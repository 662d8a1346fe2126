// tools/prism/convert.cpp: `prism convert` (a PyTorch checkpoint to a model file, without Python)
// and `prism fetch` (torchvision's official ImageNet weights, downloaded, checked and converted).
#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/error.hpp"
#include "engine/models/models.hpp"
#include "tools/download/download.hpp"
#include "tools/prism/subcommands.hpp"
#include "weights/convert.hpp"
#include "weights/model_file.hpp"

namespace prism {
namespace {

namespace fs = std::filesystem;

// Where torchvision's IMAGENET1K_V1 weights live; PRISM_WEIGHTS_URL or --base-url replace it
// (a mirror, or a local server in tests).
constexpr const char* torchvision_models_url = "https://download.pytorch.org/models/";

// torchvision's file for each architecture's IMAGENET1K_V1 weights. The hex after the last '-'
// is the start of the file's SHA-256, which torch.hub checks and so do we.
const std::map<std::string, std::string>& torchvision_files() {
  static const std::map<std::string, std::string> files = {
      {"vgg11", "vgg11-8a719046.pth"},
      {"vgg11_bn", "vgg11_bn-6002323d.pth"},
      {"vgg13", "vgg13-19584684.pth"},
      {"vgg13_bn", "vgg13_bn-abd245e5.pth"},
      {"vgg16", "vgg16-397923af.pth"},
      {"vgg16_bn", "vgg16_bn-6c64b313.pth"},
      {"vgg19", "vgg19-dcbb9e9d.pth"},
      {"vgg19_bn", "vgg19_bn-c79401a0.pth"},
      {"resnet18", "resnet18-f37072fd.pth"},
      {"resnet34", "resnet34-b627a593.pth"},
      {"resnet50", "resnet50-0676ba61.pth"},
      {"resnet101", "resnet101-63fe2227.pth"},
      {"resnet152", "resnet152-394f9c45.pth"},
      {"wide_resnet50_2", "wide_resnet50_2-95faca4d.pth"},
      {"wide_resnet101_2", "wide_resnet101_2-32ee1156.pth"},
      {"resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth"},
      {"resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth"},
      {"resnext101_64x4d", "resnext101_64x4d-173b62eb.pth"},
  };
  return files;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error(path + ": cannot read the labels file");
  std::vector<std::string> labels;
  for (std::string line; std::getline(file, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) labels.push_back(line);  // as the Python converter
  }
  return labels;
}

void check_output_path(const std::string& output) {
  const fs::path folder = fs::absolute(output).parent_path();
  std::error_code error;
  if (fs::is_directory(output, error)) throw Error(output + ": a folder; give the model file's name");
  if (!fs::is_directory(folder, error)) throw Error(output + ": the folder " + folder.string() + " does not exist");
}

struct ConvertCommand {
  std::string checkpoint, output, architecture, labels;
  std::vector<int64_t> input_size;
};

void write_converted(const std::string& checkpoint, const std::string& output, ConvertOptions options,
                     const std::string& labels_path, const std::string& weights_source) {
  const auto start = std::chrono::steady_clock::now();
  if (!labels_path.empty()) options.labels = read_labels(labels_path);
  Model model = convert_checkpoint(checkpoint, options);
  if (!weights_source.empty()) model.weights_source = weights_source;
  write_model_file(model, output);
  fmt::print(stderr, "wrote {}: {}, {} classes, {} ({:.1f} s)\n", output, model.graph.architecture,
             model.num_classes(), model.weights_source,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

void run_convert(const ConvertCommand& command) {
  check_output_path(command.output);
  ConvertOptions options;
  options.architecture = command.architecture;
  if (!command.input_size.empty()) options.input_height = command.input_size[0], options.input_width = command.input_size[1];
  write_converted(command.checkpoint, command.output, options, command.labels, "");
}

struct FetchCommand {
  std::string architecture, output, base_url, file;
  bool keep_checkpoint = false;
};

void run_fetch(const FetchCommand& command) {
  const auto file = torchvision_files().find(command.architecture);
  if (file == torchvision_files().end()) build_architecture(command.architecture, 1);  // throws, listing them
  const std::string& name = command.file.empty() ? file->second : command.file;
  const size_t dash = name.rfind('-'), dot = name.rfind(".pth");
  if (dash == std::string::npos || dot == std::string::npos || dot <= dash + 1 ||
      name.find_first_not_of("0123456789abcdef", dash + 1) != dot) {
    throw Error("--file " + name + ": torchvision's file names end in -HASH.pth, HASH the start of their SHA-256");
  }
  const std::string sha256_prefix = name.substr(dash + 1, dot - dash - 1);
  check_output_path(command.output);
  std::string base = command.base_url;
  if (base.empty() && std::getenv("PRISM_WEIGHTS_URL")) base = std::getenv("PRISM_WEIGHTS_URL");
  if (base.empty()) base = torchvision_models_url;
  if (base.back() != '/') base += '/';
  // The checkpoint is downloaded beside the output; one already there and whole is used as it is.
  const std::string checkpoint = (fs::absolute(command.output).parent_path() / name).string();
  if (fs::exists(checkpoint) && sha256_of_file(checkpoint).rfind(sha256_prefix, 0) != 0) {
    throw Error(checkpoint + ": already there but not the expected file (its SHA-256 does not start with " +
                sha256_prefix + "); move it away and run again");
  }
  if (!fs::exists(checkpoint)) {
    fmt::print(stderr, "downloading {}{}\n", base, name);
    download_file(base + name, checkpoint, sha256_prefix,
                  "Without the internet, download that file on another machine, copy it here and run `prism convert " +
                      name + " --arch " + command.architecture + " -o " + command.output + "`");
  }
  ConvertOptions options;
  options.architecture = command.architecture;
  const std::string source = command.file.empty() ? "torchvision " + command.architecture + " IMAGENET1K_V1"
                                                  : "torchvision " + command.architecture + " " + name;
  write_converted(checkpoint, command.output, options, "", source);
  if (!command.keep_checkpoint) fs::remove(checkpoint);
}

}  // namespace

void add_convert_commands(CLI::App& app) {
  auto convert = std::make_shared<ConvertCommand>();
  CLI::App* command = app.add_subcommand(
      "convert", "A PyTorch checkpoint (.pth, from torch.save) to a model file, without Python and without running "
                 "the pickle's code");
  command->add_option("checkpoint", convert->checkpoint, "The .pth file: a state_dict or a training checkpoint")
      ->required();
  command->add_option("-o,--output", convert->output, "The model file to write (.h5)")->required();
  command->add_option("--arch", convert->architecture, "torchvision architecture (default: inferred from the weights)");
  command->add_option("--labels", convert->labels, "Class names, one per line (default: ImageNet's for 1000 classes)");
  command->add_option("--input-size", convert->input_size, "Input height and width (default: 224 224)")
      ->expected(2)
      ->check(CLI::PositiveNumber);
  command->callback([convert] { run_convert(*convert); });

  auto fetch = std::make_shared<FetchCommand>();
  command = app.add_subcommand("fetch", "Download torchvision's ImageNet weights for an architecture and convert them");
  command->add_option("arch", fetch->architecture, "torchvision architecture, e.g. vgg16")->required();
  command->add_option("-o,--output", fetch->output, "The model file to write (.h5)")->required();
  command->add_option("--base-url", fetch->base_url,
                      std::string("Where the .pth files are (default: $PRISM_WEIGHTS_URL, else ") +
                          torchvision_models_url + ")");
  command->add_option("--file", fetch->file,
                      "Another file of the same architecture there, named NAME-HASH.pth (e.g. resnet50-11ad3fa6.pth, "
                      "torchvision's IMAGENET1K_V2)");
  command->add_flag("--keep-checkpoint", fetch->keep_checkpoint, "Keep the downloaded .pth beside the output");
  command->callback([fetch] { run_fetch(*fetch); });
}

}  // namespace prism
