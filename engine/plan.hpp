// engine/plan.hpp: how a model runs on one input shape: the steps (nodes after folding and
// fusion), their weights prepared for the backend, and activation buffers reused as soon as the
// last reader is done. Taps are outputs the plan copies out; nothing else is kept.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/cuda/runtime.hpp"
#include "engine/model.hpp"

namespace prism {

// Which implementation of every op runs: the plain-loop references (slow, for tests), the fast
// CPU ones, or the CUDA ones (activations and weights in GPU memory).
enum class Backend { reference, cpu, cuda };

const char* backend_name(Backend backend);

struct PlanOptions {
  Backend backend = Backend::cpu;
  std::vector<std::string> taps;       // tap names, see Graph::resolve_tap: copied out in full
  std::vector<std::string> mean_taps;  // taps wanted only as their mean over channels (N, 1, H, W)
  int num_threads = 0;                 // 0: OpenMP's default (OMP_NUM_THREADS or every core)
  bool winograd = true;                // cpu: 3x3 stride-1 convolutions by Winograd F(4x4, 3x3) or F(2x2, 3x3)
  bool tf32 = false;                   // cuda: products on TF32 tensor cores (faster, less precise)
  // cpu: the GEMMs of im2col convolutions in bfloat16, summed in fp32 (AVX512_BF16; faster, less
  // precise; see GemmPrecision), and linear layers' weights in bf16 (half the bytes to read).
  // Winograd convolutions stay fp32.
  bool bf16 = false;
  // cuda: taps and channel means stay in GPU memory (Device::cuda tensors), for PRISM on the GPU;
  // otherwise they are copied to the host. The logits always come to the host.
  bool outputs_on_device = false;
  // Activation buffers and workspace beyond this many bytes: an Error before anything is
  // allocated, saying to use a smaller batch (0: no limit).
  int64_t memory_limit_bytes = 0;
};

// One kernel call. A step may stand for several graph nodes: a convolution with its batch norm
// folded in, its ReLU fused, and on the fast backends a residual add fused as well; a linear
// layer with its ReLU; a residual add with its ReLU.
struct Step {
  const Node* node = nullptr;            // the node whose op runs (a conv, a linear, ...)
  std::vector<std::string> fused_names;  // every node the step computes, e.g. conv1, bn1, relu
  bool relu = false;                     // a ReLU fused after the op
  bool residual = false;                 // conv: inputs[1] is added before the ReLU (a fused add)
  const MaxPool2dParams* max_pool = nullptr;  // conv: a max pool after the ReLU (its node's params)
  int channel_mean_value = -1;                // a value whose mean over channels the step writes for a mean tap:
                                              // with max_pool the convolution's own output (never stored), else
                                              // the step's output (step_writes_output_means)
  bool output_mean_tapped = false;            // the step's own output (no max pool) is a mean tap: known before the
                                              // weights are prepared, so that the CPU's choice of algorithm
                                              // can favour one that writes the mean (conv2d_choose_algorithm_cpu)
  const float* weight = nullptr;         // conv/linear: the prepared weight, in Step's tensors or
  const float* bias = nullptr;           //   the model's; nullptr bias: none
  Shape weight_shape;
  BatchNorm2dWeights batch_norm{};    // an unfolded batch norm's running statistics
  Tensor folded_weight, folded_bias;  // owned when batch norm was folded in
  Conv2dPreparedCpu conv2d_cpu;       // cpu backend: the weight packed or Winograd-transformed
  Tensor linear_bf16;                 // cpu backend, PlanOptions::bf16: a linear layer's weight in bf16
  // cuda backend: the weight and bias in GPU memory (an unfolded batch norm: scale and shift).
  Tensor device_weight, device_bias;
  std::vector<int> inputs;            // value indices
  int output = 0;                     // value index
};

struct RunResult {
  Tensor output;                                // the last node's output: logits (N, classes)
  std::map<std::string, Tensor> taps;           // by requested name
  std::map<std::string, Tensor> channel_means;  // PlanOptions::mean_taps, each (N, 1, H, W)
};

class Plan {
 public:
  // The model must outlive the plan: unfolded weights are read from it, not copied.
  Plan(const Model& model, const Shape& input_shape, const PlanOptions& options = {});

  // step_seconds, when given, receives each step's wall time (one entry per step), for profiles.
  RunResult run(ConstTensorView input, std::vector<double>* step_seconds = nullptr);

  Backend backend() const { return backend_; }
  const std::vector<Step>& steps() const { return steps_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& step_input_shape(size_t step) const { return values_.at(steps_.at(step).inputs.at(0)).shape; }
  const Shape& step_output_shape(size_t step) const { return values_.at(steps_.at(step).output).shape; }
  // Whether a step writes its output over the buffer of its input `input` (an element-wise step,
  // or on the CPU a residual added in place).
  bool step_writes_over_input(size_t step, size_t input) const {
    return values_.at(steps_.at(step).output).buffer == values_.at(steps_.at(step).inputs.at(input)).buffer;
  }
  Shape tap_shape(const std::string& tap) const;  // the tapped activation's shape (mean taps too)
  int64_t activation_bytes() const;               // every buffer and the workspace, as allocated
  int64_t prepared_weight_bytes() const;          // weights the plan holds itself: folded, packed
  // cuda backend: its stream and cuBLAS handle, for work that follows on the same GPU (PRISM).
  const CudaContext* cuda_context() const { return cuda_.get(); }

 private:
  // An intermediate tensor: a buffer (or the network input) and the shape it is seen with.
  // flatten and dropout make a new value over the same buffer.
  struct Value {
    int root = 0;       // the value whose memory this one shares (itself unless an alias)
    int producer = -1;  // the step that writes the root; -1: the caller's input
    int buffer = -1;    // index into buffers_; -1: the caller's input
    Shape shape;
  };
  std::vector<int> make_steps(const Model& model, const std::vector<Shape>& shapes, const std::vector<bool>& kept,
                              const std::vector<bool>& mean_tapped_only, const PlanOptions& options);
  void assign_buffers(int64_t memory_limit_bytes);
  ConstTensorView value_view(int value, ConstTensorView input) const;

  Backend backend_;
  std::unique_ptr<CudaContext> cuda_;  // cuda backend only
  bool outputs_on_device_ = false;
  int num_threads_;
  Shape input_shape_;
  std::vector<Step> steps_;
  std::vector<Value> values_;
  std::vector<Tensor> buffers_;
  Tensor workspace_;
  Tensor device_input_;  // cuda backend: the input, copied up
  std::vector<std::pair<std::string, int>> taps_, mean_taps_;  // (name, value)
  int output_value_ = 0;
};

}  // namespace prism
