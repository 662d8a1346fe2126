// tools/prism/info.cpp: `prism info MODEL.h5`: what a model file holds and what every layer
// computes for a given input size.
#include <fmt/core.h>

#include "engine/plan.hpp"
#include "tools/prism/common.hpp"
#include "tools/prism/subcommands.hpp"
#include "weights/model_file.hpp"

namespace prism {
namespace {

struct InfoOptions {
  std::string model_path;
  std::vector<int64_t> input_size;
  int64_t batch = 1;
};

void run_info(const InfoOptions& options) {
  const Model model = read_model_file_isolated(options.model_path);
  const Graph& graph = model.graph;
  const int64_t height = options.input_size.empty() ? model.preprocessing.input_height : options.input_size[0];
  const int64_t width = options.input_size.empty() ? model.preprocessing.input_width : options.input_size[1];
  const Shape input_shape = {options.batch, 3, height, width};
  const std::vector<Shape> shapes = graph.infer_shapes(input_shape);

  const int64_t parameters = model.parameter_count();
  fmt::print("model:        {}\n", options.model_path);
  fmt::print("architecture: {}\n", graph.architecture);
  std::string first_labels;
  for (size_t i = 0; i < model.labels.size() && i < 3; ++i) first_labels += (i ? ", " : "") + model.labels[i];
  fmt::print("classes:      {}{}\n", model.num_classes(),
             model.labels.empty() ? " (no labels)" : " (" + first_labels + ", ...)");
  fmt::print("weights:      {}{}\n", model.weights_source.empty() ? "unknown source" : model.weights_source,
             model.has_random_weights() ? "  [RANDOM: not a trained network]" : "");
  fmt::print("parameters:   {} ({:.1f} MiB as float32)\n", parameters, parameters * 4.0 / (1 << 20));
  const Preprocessing& pre = model.preprocessing;
  fmt::print("input:        {}x{} (height x width){}, mean ({:.3f}, {:.3f}, {:.3f}), std ({:.3f}, {:.3f}, {:.3f})\n",
             pre.input_height, pre.input_width, pre.grey ? ", grey" : "", pre.mean[0], pre.mean[1], pre.mean[2],
             pre.std[0], pre.std[1], pre.std[2]);
  if (model.recorded_accuracy >= 0)
    fmt::print("accuracy:     {:.4f} on the training script's test set\n", model.recorded_accuracy);
  fmt::print("\nlayers for input {}:\n", shape_to_string(input_shape));
  fmt::print("  {:<28} {:<18} {:<22} {:>12} {:>10}\n", "name (tap)", "op", "output shape", "parameters", "MFLOP");
  int64_t total_multiply_adds = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const Shape& in = node.inputs[0] == graph_input ? input_shape : shapes[node.inputs[0]];
    const int64_t multiply_adds = node_multiply_adds(node, in);
    total_multiply_adds += multiply_adds;
    int64_t count = 0;
    for (const ParameterSpec& spec : node_parameters(node)) count += shape_numel(spec.shape);
    fmt::print("  {:<28} {:<18} {:<22} {:>12} {:>10.1f}\n", node.name, op_kind_name(node.kind),
               shape_to_string(shapes[i]), count, 2.0 * multiply_adds / 1e6);
  }
  fmt::print("\ntotal: {:.2f} GFLOP for the batch ({:.2f} GFLOP per image; a multiply-add counts as 2)\n",
             2.0 * total_multiply_adds / 1e9, 2.0 * total_multiply_adds / 1e9 / options.batch);
  const Plan plan(model, input_shape);
  fmt::print("activation memory of the CPU plan: {:.1f} MiB in {} steps\n", plan.activation_bytes() / 1048576.0,
             plan.steps().size());
  fmt::print(
      "taps: any name above is a tap (its output); a container such as layer4, layer4.2 or features\n"
      "gives its last layer's output; NAME:input gives a layer's input.\n");
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* command = app.add_subcommand("info", "Describe a model file: architecture, classes, layers, shapes, FLOPs");
  command->add_option("model", options->model_path, "Model file (.h5)")->required();
  command->add_option("--input-size", options->input_size, "Input height and width (default: the model's)")
      ->expected(2)
      ->check(CLI::PositiveNumber);
  command->add_option("--batch", options->batch, "Batch size for the shapes")->check(CLI::PositiveNumber);
  command->callback([options] { run_info(*options); });
}

}  // namespace prism
