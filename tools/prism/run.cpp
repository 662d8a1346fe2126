// tools/prism/run.cpp: `prism run`: PRISM on a set of images, written as maps.npy, one PNG map per
// image, grid.png, variance.svg and summary.json. Images go through the network --batch at a time;
// the PCA covers all of them, so colours compare across the whole set.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "engine/plan.hpp"
#include "prism/capture_points.hpp"
#include "prism/prism.hpp"
#include "tools/image/image.hpp"
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"
#include "tools/report/report.hpp"

namespace prism {
namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string model_path;
  std::string out_dir;
  std::vector<std::string> images;
  bool no_gradual_extrapolation = false;
  bool inclusive = false;
  bool exclusive = false;
  bool split_rgb = false;
  std::string layer;
  std::string components = "1,2,3";
  std::string captures = "auto";
  std::string resize = "stretch";
  int64_t batch = 8;
  int threads = 0;
  DeviceOptions device;
  ImageReadOptions reading;
};

std::vector<int> parse_components(const std::string& text) {
  std::vector<int> components;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int value = 0;
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || (value = std::stoi(item)) < 1) {
      throw Error("--components takes three component numbers from 1, like 1,2,3; got '" + text + "'");
    }
    components.push_back(value - 1);
    start = comma + 1;
  }
  if (components.size() != 3)
    throw Error("--components needs exactly three numbers (red, green, blue), got '" + text + "'");
  return components;
}

// Output names from image file names; the same stem twice gets _2, _3...
std::vector<std::string> unique_stems(const std::vector<std::string>& files) {
  std::map<std::string, int> seen;
  std::vector<std::string> stems;
  for (const std::string& file : files) {
    const std::string stem = fs::path(file).stem().string();
    const int count = ++seen[stem];
    stems.push_back(count == 1 ? stem : stem + "_" + std::to_string(count));
  }
  return stems;
}

void prepare_output_folder(const std::string& dir) {
  std::error_code error;
  if (fs::exists(dir, error) && !fs::is_directory(dir, error))
    throw Error(dir + ": the output path is a file, not a folder");
  fs::create_directories(dir, error);
  if (error) throw Error(dir + ": cannot create the output folder (" + error.message() + ")");
  if (::access(dir.c_str(), W_OK) != 0) throw Error(dir + ": the output folder is not writable");
}

void run_prism(const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int threads = use_threads(options.threads);
  PlanOptions plan_options;
  const std::string runs_on = apply_device_options(options.device, plan_options);
  plan_options.outputs_on_device = plan_options.backend == Backend::cuda;  // PRISM on the GPU too
  PrismOptions prism_options;
  prism_options.gradual_extrapolation = !options.no_gradual_extrapolation;
  prism_options.inclusive = options.inclusive;
  prism_options.exclusive = options.exclusive;
  prism_options.components = parse_components(options.components);
  std::vector<std::string> files = expand_image_arguments(options.images);
  prepare_output_folder(options.out_dir);
  const Model model = load_model_for_cli(options.model_path);
  const ResizeMode mode = options.resize == "center-crop" ? ResizeMode::center_crop : ResizeMode::stretch;

  const CaptureSet capture_set = parse_capture_set(options.captures);
  const std::vector<std::string> captures = options.layer.empty()
                                                ? capture_points(model.graph, capture_set)
                                                : capture_points_ending_at(model.graph, capture_set, options.layer);
  request_captures(plan_options, captures);
  // Decode everything first: a bad image stops the run before any work or any output (or, with
  // --skip-bad, is left out and named).
  std::vector<std::pair<std::string, std::string>> skipped;
  std::vector<Image> inputs = read_images(files, options.reading.skip_bad, options.reading.max_pixels, skipped);
  for (Image& image : inputs) image = resize_for_model(image, model.preprocessing, mode);
  PrismCollector collector(captures, static_cast<int64_t>(files.size()));

  const bool progress = ::isatty(STDERR_FILENO);
  std::vector<std::vector<RankedClass>> classes;
  std::unique_ptr<Plan> plan;
  std::vector<Shape> capture_shapes;
  double forward_seconds = 0.0;
  for (size_t first = 0; first < inputs.size(); first += options.batch) {
    const size_t count = std::min<size_t>(options.batch, inputs.size() - first);
    const Tensor batch = images_to_batch({inputs.begin() + first, inputs.begin() + first + count}, model.preprocessing);
    if (!plan || plan->input_shape() != batch.shape())
      plan = std::make_unique<Plan>(model, batch.shape(), plan_options);
    const auto forward_start = std::chrono::steady_clock::now();
    RunResult result = plan->run(batch.view());
    forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - forward_start).count();
    for (auto& ranked : top_classes(result.output, model.labels, 5)) classes.push_back(std::move(ranked));
    collector.add(std::move(result));
    if (capture_shapes.empty()) {
      for (const std::string& capture : captures) {
        capture_shapes.push_back(plan->tap_shape(capture));
        capture_shapes.back()[0] = static_cast<int64_t>(inputs.size());  // shapes for the whole set
      }
    }
    if (progress)
      fmt::print(stderr, "\rprism: {}/{} images through {}", first + count, inputs.size(), model.graph.architecture);
  }
  if (progress) fmt::print(stderr, "\n");

  const auto prism_start = std::chrono::steady_clock::now();
  const int64_t height = model.preprocessing.input_height, width = model.preprocessing.input_width;
  const PrismResult result = compute_prism(collector, prism_options, height, width, plan->cuda_context());
  const double prism_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - prism_start).count();

  // Everything is computed; now the files, each written whole or not at all.
  const int64_t n = static_cast<int64_t>(files.size());
  const std::vector<std::string> stems = unique_stems(files);
  const Tensor hwc = nchw_to_nhwc(result.maps.view());  // maps.npy is (N, H, W, 3), as TorchPRISM's maps
  const fs::path out(options.out_dir);
  write_file_atomically((out / "maps.npy").string(), npy_bytes(hwc.data(), hwc.shape()));
  std::vector<std::vector<Image>> rows(options.split_rgb ? 5 : 2);
  // Grid cells at least 160 pixels wide, so small inputs and their captions stay readable.
  const int64_t zoom = std::max<int64_t>(1, (160 + width - 1) / width);
  auto cell = [zoom](const Image& image) { return zoom > 1 ? upscale_nearest(image, zoom) : image; };
  const char* channel_names[3] = {"r", "g", "b"};
  for (int64_t i = 0; i < n; ++i) {
    const Image map = colours_to_image(result.maps, i);
    write_file_atomically((out / (stems[i] + ".prism.png")).string(), png_bytes(map));
    rows[0].push_back(cell(inputs[i]));
    rows[1].push_back(cell(map));
    if (!options.split_rgb) continue;
    for (int c = 0; c < 3; ++c) {
      Image channel = channel_to_image(result.maps, i, c);
      write_file_atomically((out / (stems[i] + ".prism." + channel_names[c] + ".png")).string(), png_bytes(channel));
      rows[2 + c].push_back(cell(channel));
    }
  }
  std::vector<std::vector<std::string>> captions(n);
  for (int64_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < 3 && k < classes[i].size(); ++k) {
      captions[i].push_back(fmt::format("{:.3f} {}", classes[i][k].probability, classes[i][k].label.substr(0, 30)));
    }
  }
  const std::string banner = model.has_random_weights()
                                 ? "RANDOM WEIGHTS (" + model.weights_source + "): the pipeline, not a trained network"
                                 : "";
  write_file_atomically((out / "grid.png").string(), png_bytes(grid(rows, captions, banner)));
  const std::string title = fmt::format("PRISM explained variance: {} ({}){}", model.graph.architecture,
                                        captures.back(), model.has_random_weights() ? ", RANDOM weights" : "");
  write_file_atomically((out / "variance.svg").string(), variance_svg(result.explained_variance_ratio, title));

  nlohmann::json images = nlohmann::json::array();
  for (int64_t i = 0; i < n; ++i) {
    images.push_back({{"file", files[i]}, {"map", stems[i] + ".prism.png"}, {"top5", top_classes_json(classes[i])}});
  }
  nlohmann::json skipped_list = nlohmann::json::array();
  for (const auto& [file, reason] : skipped) skipped_list.push_back({{"file", file}, {"reason", reason}});
  nlohmann::json capture_list = nlohmann::json::array();
  for (size_t i = 0; i < captures.size(); ++i)
    capture_list.push_back({{"name", captures[i]}, {"shape", capture_shapes[i]}});
  const nlohmann::json summary = {
      {"model", options.model_path},
      {"architecture", model.graph.architecture},
      {"weights_source", model.weights_source},
      {"random_weights", model.has_random_weights()},
      {"options",
       {{"gradual_extrapolation", prism_options.gradual_extrapolation},
        {"inclusive", options.inclusive},
        {"exclusive", options.exclusive},
        {"split_rgb", options.split_rgb},
        {"layer", options.layer.empty() ? captures.back() : options.layer},
        {"captures", capture_set_name(capture_set)},
        {"components",
         {prism_options.components[0] + 1, prism_options.components[1] + 1, prism_options.components[2] + 1}},
        {"resize", options.resize},
        {"batch", options.batch},
        {"threads", threads},
        {"device", runs_on},
        {"tf32", options.device.tf32},
        {"bf16", options.device.bf16}}},
      {"capture_points", capture_list},
      {"explained_variance_ratio", result.explained_variance_ratio},
      {"images", images},
      {"skipped", skipped_list},
      {"seconds",
       {{"forward", forward_seconds},
        {"prism", prism_seconds},
        {"total", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}}},
  };
  write_file_atomically((out / "summary.json").string(), summary.dump(2) + "\n");
  const auto& ratios = result.explained_variance_ratio;
  auto ratio = [&](size_t i) { return i < ratios.size() ? ratios[i] : 0.0; };
  fmt::print("{} images, {} ({}); first components explain {:.3f}, {:.3f}, {:.3f} of the variance\n", n,
             model.graph.architecture, captures.back(), ratio(0), ratio(1), ratio(2));
  fmt::print("wrote {}/: maps.npy, grid.png, variance.svg, summary.json, {} maps (forward {:.2f} s, PRISM {:.3f} s)\n",
             options.out_dir, n, forward_seconds, prism_seconds);
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* command = app.add_subcommand("run", "PRISM: colour what the network sees in a set of images");
  command->add_option("--model", options->model_path, "Model file (.h5)")->required();
  command->add_option("--out", options->out_dir, "Output folder (created if missing)")->required();
  command->add_option("images", options->images, "Image files or folders")->required();
  command->add_flag("--no-gradual-extrapolation", options->no_gradual_extrapolation,
                    "Show the analysed layer's maps resized to the image, without gradual extrapolation");
  command->add_flag("--inclusive", options->inclusive, "Quantise colours; keep only those every image shows");
  command->add_flag("--exclusive", options->exclusive, "Quantise colours; keep only those not every image shows");
  command->add_flag("--split-rgb", options->split_rgb, "Also write each component as its own map");
  command->add_option("--layer", options->layer,
                      "Analyse this tap instead of the last capture (e.g. layer3, features.23)");
  command->add_option("--components", options->components, "Principal components shown as red, green, blue")
      ->default_str("1,2,3");
  command
      ->add_option("--captures", options->captures,
                   "Capture points: torchprism (TorchPRISM's hooks), stages (ResNet stage outputs), auto")
      ->check(CLI::IsMember({"torchprism", "stages", "auto"}))
      ->default_str("auto");
  command
      ->add_option("--resize", options->resize,
                   "stretch: Resize((H, W)) as TorchPRISM; center-crop: Resize + CenterCrop")
      ->check(CLI::IsMember({"stretch", "center-crop"}));
  command->add_option("--batch", options->batch, "Images per forward pass (the PCA still covers all)")
      ->check(CLI::PositiveNumber);
  command->add_option("--threads", options->threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
  add_device_options(command, options->device);
  add_image_read_options(command, options->reading);
  command->callback([options] { run_prism(*options); });
}

}  // namespace prism
