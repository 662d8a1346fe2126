// tools/prism/evaluate.cpp: `prism evaluate`: accuracy and confusion matrix on a labelled IDX
// test set (Fashion-MNIST's, from Debian's dataset-fashion-mnist), and `prism extract`, which
// writes chosen images of such a set as PNG files, e.g. for `prism run`.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "engine/plan.hpp"
#include "tools/image/idx.hpp"
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"
#include "tools/report/report.hpp"

namespace prism {
namespace {

struct LabelledSet {
  IdxArray images;
  IdxArray labels;
};

LabelledSet read_labelled_set(const std::string& images_path, const std::string& labels_path) {
  LabelledSet set{read_idx(images_path), read_idx(labels_path)};
  if (set.images.dims.size() != 3) throw Error(images_path + ": expected images (N, H, W)");
  if (set.labels.dims.size() != 1 || set.labels.dims[0] != set.images.dims[0]) {
    throw Error(labels_path + ": holds " + std::to_string(set.labels.dims[0]) + " labels for " +
                std::to_string(set.images.dims[0]) + " images in " + images_path);
  }
  return set;
}

struct EvaluateOptions {
  std::string model_path, images_path, labels_path;
  int64_t first = 0, limit = 0, batch = 64;
  int threads = 0;
  bool json = false;
};

void run_evaluate(const EvaluateOptions& options) {
  const int threads = use_threads(options.threads);
  const Model model = load_model_for_cli(options.model_path);
  const LabelledSet set = read_labelled_set(options.images_path, options.labels_path);
  const int64_t available = set.images.dims[0];
  if (options.first >= available)
    throw Error("--first " + std::to_string(options.first) + " is past the " + std::to_string(available) + " images");
  const int64_t count =
      options.limit > 0 ? std::min(options.limit, available - options.first) : available - options.first;
  const int64_t classes = model.num_classes();
  std::vector<int64_t> confusion(classes * classes, 0), predictions;
  const bool progress = ::isatty(STDERR_FILENO);
  std::unique_ptr<Plan> plan;
  for (int64_t done = 0; done < count; done += options.batch) {
    const int64_t n = std::min(options.batch, count - done);
    std::vector<Image> inputs;
    for (Image& image : idx_images(set.images, options.first + done, n)) {
      inputs.push_back(resize_for_model(image, model.preprocessing, ResizeMode::stretch));
    }
    const Tensor batch = images_to_batch(inputs, model.preprocessing);
    if (!plan || plan->input_shape() != batch.shape()) plan = std::make_unique<Plan>(model, batch.shape());
    const Tensor logits = plan->run(batch.view()).output;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * classes;
      const int64_t predicted = std::max_element(row, row + classes) - row;  // the first of equal maxima, as argmax
      const int64_t truth = set.labels.values[options.first + done + i];
      if (truth >= classes)
        throw Error(options.labels_path + ": label " + std::to_string(truth) + " but the model has " +
                    std::to_string(classes) + " classes");
      ++confusion[truth * classes + predicted];
      predictions.push_back(predicted);
    }
    if (progress) fmt::print(stderr, "\rprism evaluate: {}/{} images", done + n, count);
  }
  if (progress) fmt::print(stderr, "\n");
  int64_t correct = 0;
  for (int64_t c = 0; c < classes; ++c) correct += confusion[c * classes + c];
  const double accuracy = static_cast<double>(correct) / count;
  auto label = [&](int64_t c) {
    return c < static_cast<int64_t>(model.labels.size()) ? model.labels[c] : std::to_string(c);
  };

  if (options.json) {
    nlohmann::json matrix = nlohmann::json::array();
    for (int64_t t = 0; t < classes; ++t)
      matrix.push_back(std::vector<int64_t>(confusion.begin() + t * classes, confusion.begin() + (t + 1) * classes));
    nlohmann::json document = {{"model", options.model_path}, {"images", count},           {"first", options.first},
                               {"correct", correct},          {"accuracy", accuracy},      {"labels", model.labels},
                               {"confusion", matrix},         {"predictions", predictions}};
    document["recorded_accuracy"] =
        model.recorded_accuracy >= 0 ? nlohmann::json(model.recorded_accuracy) : nlohmann::json();
    fmt::print("{}\n", document.dump());
    return;
  }
  fmt::print("{}: {} of {} images right, accuracy {:.4f} ({} threads)\n", options.model_path, correct, count, accuracy,
             threads);
  if (model.recorded_accuracy >= 0)
    fmt::print("the training script recorded {:.4f} on its test set\n", model.recorded_accuracy);
  fmt::print("\nconfusion matrix (rows: true class, columns: predicted)\n{:>14}", "");
  for (int64_t c = 0; c < classes; ++c) fmt::print("{:>6}", c);
  fmt::print("\n");
  for (int64_t t = 0; t < classes; ++t) {
    fmt::print("{:>2} {:<11}", t, label(t).substr(0, 11));
    for (int64_t p = 0; p < classes; ++p) fmt::print("{:>6}", confusion[t * classes + p]);
    fmt::print("\n");
  }
}

struct ExtractOptions {
  std::string images_path, labels_path, out_dir, model_path;
  std::vector<int64_t> classes;
  int64_t per_class = 3;
};

void run_extract(const ExtractOptions& options) {
  const LabelledSet set = read_labelled_set(options.images_path, options.labels_path);
  std::vector<std::string> names;
  if (!options.model_path.empty()) names = load_model_for_cli(options.model_path).labels;
  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) throw Error(options.out_dir + ": cannot create the folder (" + error.message() + ")");
  int64_t written = 0;
  for (int64_t wanted : options.classes) {
    int64_t found = 0;
    for (int64_t n = 0; n < set.images.dims[0] && found < options.per_class; ++n) {
      if (set.labels.values[n] != wanted) continue;
      std::string name = wanted < static_cast<int64_t>(names.size()) ? names[wanted] : "class" + std::to_string(wanted);
      std::replace_if(
          name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
      const std::string file = fmt::format("{}/{}_{:05}.png", options.out_dir, name, n);
      write_file_atomically(file, png_bytes(idx_images(set.images, n, 1)[0]));
      ++found, ++written;
    }
    if (found == 0) throw Error(options.labels_path + ": no image of class " + std::to_string(wanted));
  }
  fmt::print("wrote {} images to {}\n", written, options.out_dir);
}

}  // namespace

void add_evaluate_commands(CLI::App& app) {
  auto options = std::make_shared<EvaluateOptions>();
  CLI::App* command = app.add_subcommand("evaluate", "Accuracy and confusion matrix on a labelled IDX test set");
  command->add_option("--model", options->model_path, "Model file (.h5)")->required();
  command->add_option("--idx-images", options->images_path, "IDX images, e.g. t10k-images-idx3-ubyte.gz")->required();
  command->add_option("--idx-labels", options->labels_path, "IDX labels, e.g. t10k-labels-idx1-ubyte.gz")->required();
  command->add_option("--first", options->first, "Index of the first image")->check(CLI::NonNegativeNumber);
  command->add_option("--limit", options->limit, "How many images (default: all)")->check(CLI::PositiveNumber);
  command->add_option("--batch", options->batch, "Images per forward pass")->check(CLI::PositiveNumber);
  command->add_option("--threads", options->threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
  command->add_flag("--json", options->json, "One JSON document, with every prediction");
  command->callback([options] { run_evaluate(*options); });

  auto extract = std::make_shared<ExtractOptions>();
  CLI::App* extract_command = app.add_subcommand("extract", "Write chosen images of a labelled IDX set as PNG files");
  extract_command->add_option("--idx-images", extract->images_path, "IDX images")->required();
  extract_command->add_option("--idx-labels", extract->labels_path, "IDX labels")->required();
  extract_command->add_option("--classes", extract->classes, "Class numbers to take images of")
      ->required()
      ->delimiter(',');
  extract_command->add_option("--per-class", extract->per_class, "Images per class (the first ones)")
      ->check(CLI::PositiveNumber);
  extract_command->add_option("--model", extract->model_path, "Name the files by this model's labels");
  extract_command->add_option("--out", extract->out_dir, "Output folder")->required();
  extract_command->callback([extract] { run_extract(*extract); });
}

}  // namespace prism
