// tools/prism/classify.cpp: `prism classify`: the top-5 classes of each image, as text or JSON.
#include <fmt/core.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "engine/plan.hpp"
#include "tools/image/image.hpp"
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"

namespace prism {
namespace {

struct ClassifyOptions {
  std::string model_path;
  std::vector<std::string> images;
  bool json = false;
  int64_t batch = 8;
  int threads = 0;
  std::string resize = "stretch";
  bool timing = false;
  DeviceOptions device;
  ImageReadOptions reading;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_classify(const ClassifyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int threads = use_threads(options.threads);
  PlanOptions plan_options;
  const std::string runs_on = apply_device_options(options.device, plan_options);
  std::vector<std::string> files = expand_image_arguments(options.images);
  const Model model = load_model_for_cli(options.model_path);
  const double load_seconds = seconds_since(start);
  const ResizeMode mode = options.resize == "center-crop" ? ResizeMode::center_crop : ResizeMode::stretch;

  nlohmann::json images = nlohmann::json::array();
  double decode_seconds = 0.0, forward_seconds = 0.0;
  std::unique_ptr<Plan> plan;
  for (size_t first = 0; first < files.size(); first += options.batch) {
    const size_t count = std::min<size_t>(options.batch, files.size() - first);
    auto decode_start = std::chrono::steady_clock::now();
    std::vector<std::string> batch_files(files.begin() + first, files.begin() + first + count);
    std::vector<std::pair<std::string, std::string>> skipped;
    std::vector<Image> batch_images;
    try {
      batch_images = read_images(batch_files, options.reading.skip_bad, options.reading.max_pixels, skipped);
    } catch (const Error&) {
      if (!options.reading.skip_bad) throw;
      continue;  // every image of this batch was bad, and each was named
    }
    for (Image& image : batch_images) image = resize_for_model(image, model.preprocessing, mode);
    const Tensor input = images_to_batch(batch_images, model.preprocessing);
    decode_seconds += seconds_since(decode_start);

    if (!plan || plan->input_shape() != input.shape())
      plan = std::make_unique<Plan>(model, input.shape(), plan_options);
    const auto forward_start = std::chrono::steady_clock::now();
    const RunResult result = plan->run(input.view());
    forward_seconds += seconds_since(forward_start);

    const auto ranked = top_classes(result.output, model.labels, 5);
    for (size_t i = 0; i < batch_files.size(); ++i) {
      images.push_back({{"file", batch_files[i]}, {"top5", top_classes_json(ranked[i])}});
      if (!options.json) {
        fmt::print("{}\n", batch_files[i]);
        for (const RankedClass& entry : ranked[i]) {
          fmt::print("  {:7.4f}  {:4}  {}\n", entry.probability, entry.index, entry.label);
        }
      }
    }
  }
  if (options.json) {
    const nlohmann::json document = {{"model", options.model_path},
                                     {"architecture", model.graph.architecture},
                                     {"weights_source", model.weights_source},
                                     {"images", images}};
    fmt::print("{}\n", document.dump(2));
  }
  if (options.timing) {
    fmt::print(stderr,
               "timing: load {:.3f} s, decode + resize {:.3f} s, forward {:.3f} s ({:.2f} images/s), "
               "{} images, batch {}, {} threads, on {}\n",
               load_seconds, decode_seconds, forward_seconds, files.size() / forward_seconds, files.size(),
               options.batch, threads, runs_on);
  }
}

}  // namespace

void add_classify_command(CLI::App& app) {
  auto options = std::make_shared<ClassifyOptions>();
  CLI::App* command = app.add_subcommand("classify", "Top-5 classes of each image");
  command->add_option("--model", options->model_path, "Model file (.h5)")->required();
  command->add_option("images", options->images, "Image files or folders")->required();
  command->add_flag("--json", options->json, "Print one JSON document instead of text");
  command->add_option("--batch", options->batch, "Images per forward pass")->check(CLI::PositiveNumber);
  command->add_option("--threads", options->threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
  command
      ->add_option("--resize", options->resize,
                   "stretch: Resize((H, W)) as TorchPRISM; center-crop: Resize(256) + CenterCrop(224)")
      ->check(CLI::IsMember({"stretch", "center-crop"}));
  command->add_flag("--timing", options->timing, "Print load, decode and forward times on stderr");
  add_device_options(command, options->device);
  add_image_read_options(command, options->reading);
  command->callback([options] { run_classify(*options); });
}

}  // namespace prism
