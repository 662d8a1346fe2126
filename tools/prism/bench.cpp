// tools/prism/bench.cpp: `prism bench`: checks the fast path against the plain-loop reference on
// one image, then times warm forward passes and the PRISM step, with a per-step profile. Nothing
// here is a test; the numbers are for people (compare ratios measured in one run).
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"
#include "engine/plan.hpp"
#include "prism/capture_points.hpp"
#include "prism/prism.hpp"
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"

namespace prism {
namespace {

struct BenchOptions {
  std::string model_path;
  int64_t batch = 8;
  int threads = 0;
  DeviceOptions device;
  int runs = 5;
  int warmup = 1;
  std::vector<int64_t> input_size;
  bool skip_validation = false;
  int profile_rows = 20;
};

Tensor seeded_input(const Shape& shape) {
  Tensor input(shape);
  std::mt19937 generator(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < input.numel(); ++i) input.data()[i] = normal(generator);
  return input;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double peak_resident_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // Linux reports kilobytes
}

// Largest |fast - reference| relative to the reference's largest magnitude.
double relative_difference(const Tensor& fast, const Tensor& reference) {
  double worst = 0.0, scale = 0.0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(fast.data()[i] - reference.data()[i])));
    scale = std::max(scale, static_cast<double>(std::abs(reference.data()[i])));
  }
  return scale > 0 ? worst / scale : worst;
}

// bf16's error where it shows: the bench's whole batch through every layer as the timed plan runs
// it, against the same plan in fp32: logits, top classes and PRISM's colours.
void report_bf16_error(const Model& model, const PlanOptions& bf16_options, const std::vector<std::string>& captures,
                       const Tensor& input) {
  PlanOptions fp32_options = bf16_options;
  fp32_options.bf16 = false;
  RunResult results[2];
  PrismResult maps[2];
  for (int i = 0; i < 2; ++i) {
    Plan plan(model, input.shape(), i == 0 ? fp32_options : bf16_options);
    results[i] = plan.run(input.view());
    PrismCollector collector(captures, input.dim(0));
    collector.add(results[i]);
    maps[i] = compute_prism(collector, PrismOptions{}, input.dim(2), input.dim(3), nullptr);
  }
  // The top class as `prism classify` ranks it, for each image in both precisions.
  const auto top_fp32 = top_classes(results[0].output, model.labels, 1);
  const auto top_bf16 = top_classes(results[1].output, model.labels, 1);
  int64_t same_top_class = 0;
  for (size_t n = 0; n < top_fp32.size(); ++n) same_top_class += top_fp32[n][0].index == top_bf16[n][0].index;
  double colour_sum = 0.0, colour_worst = 0.0;
  const Tensor& exact = maps[0].maps;
  for (int64_t i = 0; i < exact.numel(); ++i) {
    const double difference = std::abs(exact.data()[i] - maps[1].maps.data()[i]);
    colour_sum += difference;
    colour_worst = std::max(colour_worst, difference);
  }
  fmt::print(
      "bf16 against fp32 (batch {}): logits within {:.2e} of their scale, the same top class for {} of {} images, "
      "PRISM's colours (0-1) {:.2e} apart on average, {:.2e} at most\n",
      input.dim(0), relative_difference(results[1].output, results[0].output), same_top_class, input.dim(0),
      colour_sum / exact.numel(), colour_worst);
}

void run_bench(const BenchOptions& options) {
  const int threads = use_threads(options.threads);
  PlanOptions plan_options;
  const std::string runs_on = apply_device_options(options.device, plan_options);
  const bool on_gpu = plan_options.backend == Backend::cuda;
  plan_options.outputs_on_device = on_gpu;  // PRISM on the GPU, as `prism run` does
  const auto load_start = std::chrono::steady_clock::now();
  const Model model = load_model_for_cli(options.model_path);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  const int64_t height = options.input_size.empty() ? model.preprocessing.input_height : options.input_size[0];
  const int64_t width = options.input_size.empty() ? model.preprocessing.input_width : options.input_size[1];
  fmt::print("{} ({}), batch {}, {}x{}, on {}{}, {} threads, model loaded in {:.2f} s\n", model.graph.architecture,
             options.model_path, options.batch, height, width, runs_on,
             options.device.tf32   ? " (TF32)"
             : options.device.bf16 ? " (bf16)"
                                   : "",
             threads, load_seconds);

  const std::vector<std::string> captures = capture_points(model.graph, CaptureSet::automatic);
  request_captures(plan_options, captures);
  if (!options.skip_validation) {
    // One image through the plain-loop reference: slow, but it is the definition.
    const Tensor one = seeded_input({1, 3, height, width});
    PlanOptions reference_options;
    reference_options.backend = Backend::reference;
    PlanOptions fast_options;
    fast_options.backend = plan_options.backend;
    fast_options.tf32 = plan_options.tf32;
    fast_options.bf16 = plan_options.bf16;
    Plan reference(model, one.shape(), reference_options);
    Plan fast(model, one.shape(), fast_options);
    const double difference = relative_difference(fast.run(one.view()).output, reference.run(one.view()).output);
    // TF32 keeps 10 bits of mantissa, bf16 7.
    const double bound = options.device.tf32 ? 1e-2 : options.device.bf16 ? 5e-2 : 1e-4;
    fmt::print("validation: logits of one image within {:.2e} of the reference path (of their scale): {}\n", difference,
               difference < bound ? "ok" : "MISMATCH");
    if (!(difference < bound)) throw Error("the fast path disagrees with the reference path; not timing it");
  }

  const Tensor input = seeded_input({options.batch, 3, height, width});
  if (!options.skip_validation && plan_options.bf16) report_bf16_error(model, plan_options, captures, input);
  if (on_gpu) cuda_reset_peak_allocated();  // the validation's plans are gone
  const auto plan_start = std::chrono::steady_clock::now();
  Plan plan(model, input.shape(), plan_options);
  fmt::print("plan made in {:.2f} s (weights packed and transformed for this backend)\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - plan_start).count());
  // Each time covers the input going up and the results coming down on the GPU (Plan::run returns
  // the logits on the host; compute_prism the maps). On the GPU the profile comes from separate
  // runs, because timing each step there means waiting for it, which the timed runs must not do.
  std::vector<double> forward, prism_step, total_steps(plan.steps().size(), 0.0), step_seconds;
  for (int run = 0; run < options.warmup + options.runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    RunResult result = plan.run(input.view(), on_gpu ? nullptr : &step_seconds);
    const auto middle = std::chrono::steady_clock::now();
    PrismCollector collector(captures, options.batch);
    collector.add(std::move(result));
    const PrismResult maps = compute_prism(collector, PrismOptions{}, height, width, plan.cuda_context());
    const auto end = std::chrono::steady_clock::now();
    if (run < options.warmup) continue;
    forward.push_back(std::chrono::duration<double>(middle - start).count());
    prism_step.push_back(std::chrono::duration<double>(end - middle).count());
    for (size_t s = 0; s < step_seconds.size(); ++s) total_steps[s] += step_seconds[s];
  }
  for (int run = 0; on_gpu && options.profile_rows > 0 && run < options.runs; ++run) {
    plan.run(input.view(), &step_seconds);
    for (size_t s = 0; s < step_seconds.size(); ++s) total_steps[s] += step_seconds[s];
  }

  // Per-step profile, slowest first.
  int64_t total_multiply_adds = 0;
  std::vector<size_t> order(plan.steps().size());
  for (size_t s = 0; s < order.size(); ++s) {
    order[s] = s;
    total_multiply_adds += node_multiply_adds(*plan.steps()[s].node, plan.step_input_shape(s));
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return total_steps[a] > total_steps[b]; });
  double all_steps = 0.0;
  for (double t : total_steps) all_steps += t;
  if (options.profile_rows > 0) {
    fmt::print("\n{:<36} {:<22} {:<11} {:>9} {:>9} {:>7}\n", "step (fused nodes)", "output", "algorithm", "ms",
               "GFLOP/s", "share");
  }
  for (size_t i = 0; i < order.size() && static_cast<int>(i) < options.profile_rows; ++i) {
    const size_t s = order[i];
    const Step& step = plan.steps()[s];
    std::string name;
    for (const std::string& part : step.fused_names) name += (name.empty() ? "" : "+") + part;
    const double ms = total_steps[s] / options.runs * 1e3;
    const double flops = 2.0 * node_multiply_adds(*step.node, plan.step_input_shape(s));
    // Which of the CPU convolution's algorithms the plan chose for this shape.
    const bool cpu_convolution = plan.backend() == Backend::cpu && step.node->kind == OpKind::conv2d;
    fmt::print("{:<36} {:<22} {:<11} {:>9.2f} {:>9.1f} {:>6.1f}%\n", name.substr(0, 36),
               shape_to_string(plan.step_output_shape(s)),
               cpu_convolution ? conv2d_algorithm_name(step.conv2d_cpu.algorithm) : "", ms,
               ms > 0 ? flops / (ms * 1e-3) / 1e9 : 0.0, 100.0 * total_steps[s] / all_steps);
  }
  if (static_cast<int>(order.size()) > options.profile_rows) {
    fmt::print("... {} more steps (--profile-rows to see them)\n", order.size() - options.profile_rows);
  }
  const double forward_s = median(forward), prism_s = median(prism_step);
  fmt::print("\nforward:  {:.2f} ms median of {} runs, {:.1f} GFLOP/s, {:.2f} images/s\n", forward_s * 1e3,
             options.runs, 2.0 * total_multiply_adds / forward_s / 1e9, options.batch / forward_s);
  fmt::print("PRISM:    {:.2f} ms ({:.1f}% of the forward pass; captures {})\n", prism_s * 1e3,
             100 * prism_s / forward_s, captures.back());
  fmt::print("together: {:.2f} images/s\n", options.batch / (forward_s + prism_s));
  // Peak = the model's weights + the plan's prepared copies + activation buffers and workspace +
  // what PRISM keeps (the analysed capture, a plane per earlier capture) + the program itself.
  fmt::print("memory:   weights {:.1f} MiB, prepared (folded, packed, Winograd{}) {:.1f} MiB, activations and "
             "workspace{} {:.1f} MiB, peak resident {:.1f} MiB\n",
             model.parameter_count() * 4.0 / 1048576, on_gpu ? "; on the GPU: every weight" : "",
             plan.prepared_weight_bytes() / 1048576.0, on_gpu ? " (on the GPU)" : "",
             plan.activation_bytes() / 1048576.0, peak_resident_mib());
  if (on_gpu) {
    fmt::print(
        "GPU memory: peak allocated {:.1f} MiB (weights, activations, PRISM's scratch; not the CUDA "
        "context or cuBLAS's workspace)\n",
        cuda_peak_allocated_bytes() / 1048576.0);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command = app.add_subcommand("bench", "Time the forward pass and the PRISM step, with a per-step profile");
  command->add_option("--model", options->model_path, "Model file (.h5)")->required();
  command->add_option("--batch", options->batch, "Images per forward pass")->check(CLI::PositiveNumber);
  command->add_option("--threads", options->threads, "CPU threads (default: all cores)")->check(CLI::PositiveNumber);
  add_device_options(command, options->device);
  command->add_option("--runs", options->runs, "Timed runs (the median is reported)")->check(CLI::PositiveNumber);
  command->add_option("--warmup", options->warmup, "Untimed runs first")->check(CLI::NonNegativeNumber);
  command->add_option("--input-size", options->input_size, "Input height and width (default: the model's)")
      ->expected(2)
      ->check(CLI::PositiveNumber);
  command->add_flag("--skip-validation", options->skip_validation, "Do not check against the reference path first");
  command->add_option("--profile-rows", options->profile_rows, "Steps shown in the profile (0: none)")
      ->check(CLI::NonNegativeNumber);
  command->callback([options] { run_bench(*options); });
}

}  // namespace prism
