// engine/plan.cpp: turning a graph into steps (folding batch norm, fusing ReLU), assigning
// activation buffers, and the forward loop, the only loop over a network in the engine.
#include "engine/plan.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "engine/dispatch.hpp"
#include "engine/error.hpp"

namespace prism {

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::reference: return "reference";
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "?";
}

Plan::Plan(const Model& model, const Shape& input_shape, const PlanOptions& options)
    : backend_(options.backend),
      num_threads_(options.num_threads > 0 ? options.num_threads : omp_get_max_threads()),
      input_shape_(input_shape) {
  if (input_shape.size() != 4 || input_shape[1] != 3 || input_shape[0] <= 0) {
    throw Error("the network takes images of shape (N, 3, H, W), not " + shape_to_string(input_shape));
  }
  const Graph& graph = model.graph;
  const std::vector<Shape> shapes = graph.infer_shapes(input_shape);
  if (backend_ == Backend::cuda) {
    cuda_ = std::make_unique<CudaContext>(options.tf32);  // throws a clear Error without CUDA or a GPU
    outputs_on_device_ = options.outputs_on_device;
  }

  // A node whose output is tapped must really be computed: nothing may be folded or fused into it.
  // Nodes wanted only as channel means may still be computed inside a fused step that writes their
  // mean (a max pool joining ResNet's stem).
  std::vector<bool> kept(graph.nodes.size(), false), mean_tapped_only(graph.nodes.size(), false);
  std::vector<std::pair<std::string, int>> tapped_nodes, mean_tapped_nodes;
  auto keep = [&](const std::vector<std::string>& taps, std::vector<std::pair<std::string, int>>& nodes, bool mean) {
    for (const std::string& tap : taps) {
      const int node = graph.value_of(graph.resolve_tap(tap));
      if (node != graph_input) mean_tapped_only[node] = mean && (mean_tapped_only[node] || !kept[node]);
      if (node != graph_input) kept[node] = true;
      nodes.emplace_back(tap, node);
    }
  };
  keep(options.taps, tapped_nodes, false);
  keep(options.mean_taps, mean_tapped_nodes, true);
  const std::vector<int> node_value = make_steps(model, shapes, kept, mean_tapped_only, options);
  for (const auto& [tap, node] : tapped_nodes) taps_.emplace_back(tap, node == graph_input ? 0 : node_value[node]);
  for (const auto& [tap, node] : mean_tapped_nodes) {
    mean_taps_.emplace_back(tap, node == graph_input ? 0 : node_value[node]);
  }
  output_value_ = node_value.back();
  // Steps whose own output is a mean tap, known before their weights are prepared: the CPU's choice
  // of convolution algorithm may favour one that writes the means.
  for (const auto& [tap, value] : mean_taps_) {
    const int producer = values_[value].producer;
    if (producer >= 0 && steps_[producer].output == value && !steps_[producer].max_pool) {
      steps_[producer].output_mean_tapped = true;
    }
  }
  // Weights in the backend's own layout, once (after folding, which changes them).
  for (Step& step : steps_) prepare_step(backend_, step, values_[step.inputs[0]].shape, options, num_threads_);
  // A convolution whose output is a mean tap writes that mean itself where it can, while its
  // results are in cache (ResNet's stage outputs, which PRISM keeps as means).
  for (Step& step : steps_) {
    if (step.output_mean_tapped &&
        step_writes_output_means(backend_, step, values_[step.inputs[0]].shape, num_threads_)) {
      step.channel_mean_value = step.output;
    }
  }
  assign_buffers(options.memory_limit_bytes);
}

std::vector<int> Plan::make_steps(const Model& model, const std::vector<Shape>& shapes, const std::vector<bool>& kept,
                                  const std::vector<bool>& mean_tapped_only, const PlanOptions& options) {
  const Graph& graph = model.graph;
  values_.push_back(Value{0, -1, -1, input_shape_});  // value 0: the caller's input
  std::vector<int> node_value(graph.nodes.size(), -1);
  auto value_of_node = [&](int node) { return node == graph_input ? 0 : node_value[node]; };
  std::vector<int> readers(graph.nodes.size(), 0);
  for (const Node& node : graph.nodes) {
    for (int input : node.inputs) {
      if (input != graph_input) ++readers[input];
    }
  }
  // The step that computes `node` if another node may join it: the node is read once, is not a
  // tap (or only a mean tap, where the joining step can provide it), and its value is that step's
  // own output (not a view of it).
  auto joinable_step = [&](int node, bool mean_tap_allowed = false) -> Step* {
    if (node == graph_input || readers[node] != 1 || (kept[node] && !(mean_tap_allowed && mean_tapped_only[node]))) {
      return nullptr;
    }
    const Value& value = values_[node_value[node]];
    if (value.producer < 0 || value.root != node_value[node]) return nullptr;
    return &steps_[value.producer];
  };

  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    const int source = node.inputs.at(0);
    if (node.kind == OpKind::flatten || node.kind == OpKind::dropout) {
      const Value& input = values_[value_of_node(source)];
      values_.push_back(Value{input.root, input.producer, -1, shapes[i]});
      node_value[i] = static_cast<int>(values_.size()) - 1;
      continue;
    }
    Step* previous = joinable_step(source);
    if (node.kind == OpKind::batch_norm2d && previous && previous->node->kind == OpKind::conv2d && !previous->relu &&
        previous->folded_weight.empty()) {
      // Fold: the convolution then computes the batch norm's output directly.
      const Node& conv = *previous->node;
      const std::string key = node.name;
      const BatchNorm2dWeights bn{model.parameter(key + ".weight").data(), model.parameter(key + ".bias").data(),
                                  model.parameter(key + ".running_mean").data(),
                                  model.parameter(key + ".running_var").data()};
      previous->folded_weight = model.parameter(conv.name + ".weight").clone();
      previous->folded_bias = Tensor({conv.conv2d.out_channels});
      if (conv.conv2d.bias) {
        std::memcpy(previous->folded_bias.data(), previous->bias, conv.conv2d.out_channels * sizeof(float));
      }
      batch_norm2d_fold_into_conv(node.batch_norm2d, bn, previous->folded_weight.view(), previous->folded_bias.data());
      previous->weight = previous->folded_weight.data();
      previous->bias = previous->folded_bias.data();
      previous->fused_names.push_back(node.name);
      node_value[i] = node_value[source];
      continue;
    }
    if (node.kind == OpKind::add && backend_ != Backend::reference) {
      // A residual connection: the convolution computing one operand adds the other in its
      // epilogue, saving a pass over memory. It must be the later of the two steps, so that the
      // other operand exists when it runs (a downsample shortcut comes after the block's conv3).
      Step* later = nullptr;
      int other = -1;
      for (int which : {0, 1}) {
        Step* step = joinable_step(node.inputs[which]);
        if (step && step->node->kind == OpKind::conv2d && !step->relu && !step->residual && (!later || step > later)) {
          later = step;
          other = node.inputs[1 - which];
        }
      }
      if (later && (other == graph_input || values_[value_of_node(other)].producer < later - steps_.data())) {
        later->inputs.push_back(value_of_node(other));
        later->residual = true;
        later->fused_names.push_back(node.name);
        node_value[i] = later->output;
        continue;
      }
    }
    if (node.kind == OpKind::max_pool2d) {
      const bool mean_tapped = source != graph_input && mean_tapped_only[source];
      Step* conv = joinable_step(source, true);
      if (conv && !conv->max_pool &&
          max_pool_fuses_into(backend_, *conv, values_[conv->inputs[0]].shape, node.max_pool2d, mean_tapped, options,
                              num_threads_)) {
        // The convolution's output is then never stored (no step writes its value, so it gets no
        // buffer); the step writes the pool's, and the channel mean where it is a mean tap.
        conv->max_pool = &node.max_pool2d;
        conv->fused_names.push_back(node.name);
        if (mean_tapped) conv->channel_mean_value = conv->output;
        const int pooled = static_cast<int>(values_.size());
        values_.push_back(Value{pooled, static_cast<int>(conv - steps_.data()), -1, shapes[i]});
        conv->output = pooled;
        node_value[i] = pooled;
        continue;
      }
    }
    if (node.kind == OpKind::relu && previous && !previous->relu &&
        (previous->node->kind == OpKind::conv2d || previous->node->kind == OpKind::linear ||
         previous->node->kind == OpKind::add)) {
      previous->relu = true;
      previous->fused_names.push_back(node.name);
      node_value[i] = node_value[source];
      continue;
    }

    Step step;
    step.node = &node;
    step.fused_names = {node.name};
    for (int input : node.inputs) step.inputs.push_back(value_of_node(input));
    if (node.kind == OpKind::conv2d || node.kind == OpKind::linear) {
      const Tensor& weight = model.parameter(node.name + ".weight");
      step.weight = weight.data();
      step.weight_shape = weight.shape();
      const bool has_bias = node.kind == OpKind::conv2d ? node.conv2d.bias : node.linear.bias;
      if (has_bias) step.bias = model.parameter(node.name + ".bias").data();
    } else if (node.kind == OpKind::batch_norm2d) {
      step.batch_norm = {model.parameter(node.name + ".weight").data(), model.parameter(node.name + ".bias").data(),
                         model.parameter(node.name + ".running_mean").data(),
                         model.parameter(node.name + ".running_var").data()};
    }
    const int value = static_cast<int>(values_.size());
    values_.push_back(Value{value, static_cast<int>(steps_.size()), -1, shapes[i]});
    step.output = value;
    node_value[i] = value;
    steps_.push_back(std::move(step));
  }
  return node_value;
}

void Plan::assign_buffers(int64_t memory_limit_bytes) {
  // The last step that reads each root value; the network's output is never released.
  std::vector<int> last_reader(values_.size(), -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    for (int input : steps_[s].inputs) last_reader[values_[input].root] = static_cast<int>(s);
  }
  last_reader[values_[output_value_].root] = static_cast<int>(steps_.size());

  std::vector<int64_t> capacity;  // floats, per buffer
  std::vector<int> free_buffers;
  int64_t workspace_floats = 0;
  for (size_t s = 0; s < steps_.size(); ++s) {
    Step& step = steps_[s];
    const int64_t need = shape_numel(values_[step.output].shape);
    const Shape& input_shape = values_[step.inputs[0]].shape;
    workspace_floats = std::max(workspace_floats, step_workspace_floats(backend_, step, input_shape, num_threads_));
    int buffer = -1;
    int handed_over = -1;
    // Inputs the step may write its output over when nobody reads them afterwards: any input of
    // an element-wise step; a fused residual where the backend allows (each sum lands where its
    // shortcut value was read, which spares the memory traffic of a fresh buffer; see
    // residual_sum_in_place), and no step may write over its own input.
    std::vector<int> writable;
    const OpKind kind = step.node->kind;
    if (kind == OpKind::relu || kind == OpKind::batch_norm2d || kind == OpKind::add) {
      writable = step.inputs;
    } else if (kind == OpKind::conv2d && step.residual && residual_sum_in_place(backend_) &&
               values_[step.inputs[1]].root != values_[step.inputs[0]].root) {
      writable = {step.inputs[1]};
    }
    for (int input : writable) {
      const Value& root = values_[values_[input].root];
      if (root.buffer >= 0 && last_reader[values_[input].root] == static_cast<int>(s)) {
        buffer = root.buffer;
        handed_over = values_[input].root;
        break;
      }
    }
    if (buffer < 0 && !free_buffers.empty()) {
      // The smallest free buffer that fits; if none fits, the largest one, grown.
      auto best = free_buffers.end();
      for (auto it = free_buffers.begin(); it != free_buffers.end(); ++it) {
        if (capacity[*it] >= need && (best == free_buffers.end() || capacity[*it] < capacity[*best])) best = it;
      }
      if (best == free_buffers.end()) {
        best = std::max_element(free_buffers.begin(), free_buffers.end(),
                                [&](int a, int b) { return capacity[a] < capacity[b]; });
      }
      buffer = *best;
      free_buffers.erase(best);
    }
    if (buffer < 0) {
      buffer = static_cast<int>(capacity.size());
      capacity.push_back(0);
    }
    capacity[buffer] = std::max(capacity[buffer], need);
    values_[step.output].buffer = buffer;
    for (int input : step.inputs) {
      const int root = values_[input].root;
      if (root != handed_over && last_reader[root] == static_cast<int>(s) && values_[root].buffer >= 0 &&
          std::find(free_buffers.begin(), free_buffers.end(), values_[root].buffer) == free_buffers.end()) {
        free_buffers.push_back(values_[root].buffer);
      }
    }
  }
  for (Value& value : values_) value.buffer = values_[value.root].buffer;
  int64_t floats = workspace_floats;
  for (int64_t buffer_floats : capacity) floats += buffer_floats;
  if (memory_limit_bytes > 0 && floats * 4 > memory_limit_bytes) {
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    char message[256];
    std::snprintf(message, sizeof(message),
                  "a batch of %lld images of %lldx%lld needs %.2f GiB for activations, more than the %.2f GiB allowed: "
                  "use a smaller --batch (or raise --max-memory)",
                  static_cast<long long>(input_shape_[0]), static_cast<long long>(input_shape_[2]),
                  static_cast<long long>(input_shape_[3]), floats * 4 / gib, memory_limit_bytes / gib);
    throw Error(message);
  }
  // Every buffer is written by its step before anything reads it: no need to zero them.
  const Device device = backend_ == Backend::cuda ? Device::cuda : Device::cpu;
  for (int64_t floats : capacity) buffers_.push_back(Tensor::uninitialized({floats}, device, Lifetime::lasting));
  if (workspace_floats > 0) workspace_ = Tensor::uninitialized({workspace_floats}, device, Lifetime::lasting);
  if (device == Device::cuda) device_input_ = Tensor::uninitialized(input_shape_, device);
}

ConstTensorView Plan::value_view(int value, ConstTensorView input) const {
  const Value& v = values_[value];
  if (v.buffer >= 0) return {buffers_[v.buffer].data(), v.shape};
  return {device_input_.empty() ? input.data : device_input_.data(), v.shape};
}

Shape Plan::tap_shape(const std::string& tap) const {
  for (const auto* list : {&taps_, &mean_taps_}) {
    for (const auto& [name, value] : *list) {
      if (name == tap) return values_[value].shape;
    }
  }
  throw Error("tap " + tap + " was not requested when the plan was made");
}

int64_t Plan::prepared_weight_bytes() const {
  int64_t floats = 0;
  for (const Step& step : steps_) {
    floats += step.folded_weight.numel() + step.folded_bias.numel() + step.device_weight.numel() +
              step.device_bias.numel();
    for (const PackedMatrix& matrix : step.conv2d_cpu.matrices) floats += matrix.data.numel();
    floats += step.conv2d_cpu.direct.data.numel() + step.linear_bf16.numel();
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

int64_t Plan::activation_bytes() const {
  int64_t floats = workspace_.empty() ? 0 : workspace_.numel();
  for (const Tensor& buffer : buffers_) floats += buffer.numel();
  return floats * static_cast<int64_t>(sizeof(float));
}

RunResult Plan::run(ConstTensorView input, std::vector<double>* step_seconds) {
  if (input.shape != input_shape_) {
    throw Error("the plan was made for input " + shape_to_string(input_shape_) + ", got " +
                shape_to_string(input.shape));
  }
  RunResult result;
  const bool on_gpu = backend_ == Backend::cuda;
  if (on_gpu) cuda_upload(device_input_.data(), input.data, input.numel());
  // A copy of a value: on the GPU kept there or brought to the host, as the options asked.
  auto copy_out = [&](ConstTensorView view) {
    if (!on_gpu) return Tensor::from_data(view.shape, view.data);
    Tensor copy = Tensor::uninitialized(view.shape, outputs_on_device_ ? Device::cuda : Device::cpu);
    outputs_on_device_ ? cuda_copy(copy.data(), view.data, view.numel())
                       : cuda_download(copy.data(), view.data, view.numel());
    return copy;
  };
  // Taps are copied (or reduced) as soon as their value is written: a later step may reuse the buffer.
  // `step_means`: the means a step wrote itself of a value it never stored (channel_mean_value),
  // handed to the first tap naming that value and copied for any other.
  auto copy_taps_of = [&](int producer, Tensor step_means) {
    const Tensor* handed = nullptr;
    for (const auto& [name, value] : taps_) {
      if (values_[value].producer == producer) result.taps[name] = copy_out(value_view(value, input));
    }
    for (const auto& [name, value] : mean_taps_) {
      if (values_[value].producer != producer) continue;
      if (producer >= 0 && value == steps_[producer].channel_mean_value) {
        Tensor& means = result.channel_means[name];
        means = handed ? handed->clone() : std::move(step_means);
        handed = &means;
        continue;
      }
      const ConstTensorView view = value_view(value, input);
      if (!on_gpu) {
        result.channel_means[name] = channel_mean(view);
        continue;
      }
      Tensor means = Tensor::uninitialized({view.dim(0), 1, view.dim(2), view.dim(3)}, Device::cuda);
      channel_mean_cuda(view, means.view(), *cuda_);
      result.channel_means[name] = outputs_on_device_ ? std::move(means) : means.to(Device::cpu);
    }
  };
  copy_taps_of(-1, Tensor());
  if (step_seconds) step_seconds->assign(steps_.size(), 0.0);
  std::vector<ConstTensorView> inputs;
  for (size_t s = 0; s < steps_.size(); ++s) {
    const double start = step_seconds ? omp_get_wtime() : 0.0;
    const Step& step = steps_[s];
    inputs.clear();
    for (int value : step.inputs) inputs.push_back(value_view(value, input));
    const Value& out = values_[step.output];
    TensorView output{buffers_[out.buffer].data(), out.shape};
    Tensor step_means;
    if (step.channel_mean_value >= 0) {
      const Shape& unstored = values_[step.channel_mean_value].shape;
      step_means = Tensor::uninitialized({unstored[0], 1, unstored[2], unstored[3]});
    }
    execute_step(backend_, step, inputs, output, workspace_.empty() ? nullptr : workspace_.data(), num_threads_,
                 cuda_.get(), step_means.empty() ? nullptr : step_means.data());
    if (step_seconds) {
      if (on_gpu) cuda_->synchronize();  // a profile times each kernel, not its launch
      (*step_seconds)[s] = omp_get_wtime() - start;
    }
    copy_taps_of(static_cast<int>(s), std::move(step_means));
  }
  ConstTensorView logits = value_view(output_value_, input);
  if (on_gpu) {
    cuda_->synchronize();  // reports a failed kernel by name of the failure, not as wrong logits
    result.output = Tensor::uninitialized(logits.shape);
    cuda_download(result.output.data(), logits.data, logits.numel());
  } else {
    result.output = Tensor::from_data(logits.shape, logits.data);
  }
  return result;
}

}  // namespace prism
