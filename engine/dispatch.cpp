// engine/dispatch.cpp: a plain switch from (backend, op) to the kernel. Flatten and dropout never
// reach here: the plan turns them into views of their input.
#include "engine/dispatch.hpp"

#include "engine/error.hpp"
#include "layers/adaptive_avg_pool2d.hpp"
#include "layers/add.hpp"
#include "layers/batch_norm2d.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/relu.hpp"

namespace prism {

namespace {

// The cuda backend's switch: the same ops, on the GPU, on the plan's stream. A build without the
// backend has no CUDA kernels to name (and no plan gets this far: its CudaContext throws).
void execute_step_cuda(const Step& step, const std::vector<ConstTensorView>& inputs, TensorView output,
                       float* workspace, const CudaContext& cuda) {
  const Node& node = *step.node;
#if PRISM_WITH_CUDA
  const ConstTensorView& x = inputs.at(0);
  const ConstTensorView weight(step.device_weight.data(), step.weight_shape);
  const float* bias = step.device_bias.empty() ? nullptr : step.device_bias.data();
  switch (node.kind) {
    case OpKind::conv2d:
      conv2d_forward_cuda(node.conv2d, x, weight, bias, step.residual ? inputs.at(1).data : nullptr, step.relu,
                          output, workspace, cuda);
      return;
    case OpKind::batch_norm2d:
      batch_norm2d_forward_cuda(node.batch_norm2d, step.device_weight.data(), step.device_bias.data(), x, output,
                                cuda);
      return;
    case OpKind::relu: relu_forward_cuda(x, output, cuda); return;
    case OpKind::max_pool2d: max_pool2d_forward_cuda(node.max_pool2d, x, output, cuda); return;
    case OpKind::adaptive_avg_pool2d:
      adaptive_avg_pool2d_forward_cuda(node.adaptive_avg_pool2d, x, output, cuda);
      return;
    case OpKind::linear: linear_forward_cuda(node.linear, x, weight, bias, step.relu, output, cuda); return;
    case OpKind::add: add_forward_cuda(x, inputs.at(1), step.relu, output, cuda); return;
    case OpKind::flatten:
    case OpKind::dropout: break;
  }
#else
  (void)inputs, (void)output, (void)workspace, (void)cuda;
#endif
  throw Error(std::string("no CUDA kernel for ") + op_kind_name(node.kind) + " at " + node.name);
}

}  // namespace

void execute_step(Backend backend, const Step& step, const std::vector<ConstTensorView>& inputs, TensorView output,
                  float* workspace, int num_threads, const CudaContext* cuda, float* channel_means) {
  if (backend == Backend::cuda) {
    execute_step_cuda(step, inputs, output, workspace, *cuda);
    return;
  }
  const Node& node = *step.node;
  const ConstTensorView& x = inputs.at(0);
  const ConstTensorView weight(step.weight, step.weight_shape);
  const bool reference = backend == Backend::reference;
  switch (node.kind) {
    case OpKind::conv2d:
      if (reference) {
        conv2d_forward_ref(node.conv2d, x, weight, step.bias, step.relu, output);
      } else {
        const float* residual = step.residual ? inputs.at(1).data : nullptr;
        conv2d_forward_cpu(node.conv2d, x, step.conv2d_cpu, step.bias, residual, step.relu, output, workspace,
                           num_threads, channel_means);
      }
      return;
    case OpKind::batch_norm2d:
      reference ? batch_norm2d_forward_ref(node.batch_norm2d, step.batch_norm, x, output)
                : batch_norm2d_forward_cpu(node.batch_norm2d, step.batch_norm, x, output);
      return;
    case OpKind::relu: reference ? relu_forward_ref(x, output) : relu_forward_cpu(x, output); return;
    case OpKind::max_pool2d:
      reference ? max_pool2d_forward_ref(node.max_pool2d, x, output)
                : max_pool2d_forward_cpu(node.max_pool2d, x, output);
      return;
    case OpKind::adaptive_avg_pool2d:
      reference ? adaptive_avg_pool2d_forward_ref(node.adaptive_avg_pool2d, x, output)
                : adaptive_avg_pool2d_forward_cpu(node.adaptive_avg_pool2d, x, output);
      return;
    case OpKind::linear:
      reference ? linear_forward_ref(node.linear, x, weight, step.bias, step.relu, output)
                : linear_forward_cpu(node.linear, x, weight, step.bias, step.relu, output,
                                     step.linear_bf16.empty() ? nullptr : &step.linear_bf16);
      return;
    case OpKind::add:
      reference ? add_forward_ref(x, inputs.at(1), step.relu, output)
                : add_forward_cpu(x, inputs.at(1), step.relu, output);
      return;
    case OpKind::flatten:
    case OpKind::dropout: break;
  }
  throw Error(std::string("no kernel for ") + op_kind_name(node.kind) + " at " + node.name);
}

namespace {

GemmPrecision cpu_precision(const PlanOptions& options) {
  return options.bf16 ? GemmPrecision::bf16 : GemmPrecision::fp32;
}

// The algorithm the CPU runs a convolution step with: what prepare_step packs its weights for, and
// what max_pool_fuses_into asks about (while the steps are made, before output_mean_tapped is
// known; it is never set on a step with a pool).
Conv2dAlgorithm cpu_conv_algorithm(const Step& step, const Shape& input_shape, const PlanOptions& options,
                                   int num_threads) {
  return conv2d_choose_algorithm_cpu(step.node->conv2d, input_shape, options.winograd, num_threads,
                                     cpu_precision(options), step.output_mean_tapped);
}

}  // namespace

void prepare_step(Backend backend, Step& step, const Shape& input_shape, const PlanOptions& options, int num_threads) {
  if (backend == Backend::cuda) {
    const OpKind kind = step.node->kind;
    if (kind == OpKind::conv2d || kind == OpKind::linear) {
      const int64_t outputs = step.weight_shape.at(0);
      step.device_weight = Tensor::from_data(step.weight_shape, step.weight).to(Device::cuda);
      if (step.bias) step.device_bias = Tensor::from_data({outputs}, step.bias).to(Device::cuda);
    } else if (kind == OpKind::batch_norm2d) {
      const int64_t channels = step.node->batch_norm2d.channels;
      Tensor scale({channels}), shift({channels});
      batch_norm2d_scale_shift(step.node->batch_norm2d, step.batch_norm, scale.data(), shift.data());
      step.device_weight = scale.to(Device::cuda);
      step.device_bias = shift.to(Device::cuda);
    }
    return;
  }
  if (backend == Backend::cpu && step.node->kind == OpKind::linear && options.bf16) {
    step.linear_bf16 = linear_weights_bf16(step.node->linear, step.weight);
  }
  if (backend == Backend::cpu && step.node->kind == OpKind::conv2d) {
    step.conv2d_cpu =
        conv2d_prepare_cpu(step.node->conv2d, ConstTensorView(step.weight, step.weight_shape), input_shape,
                           cpu_conv_algorithm(step, input_shape, options, num_threads), cpu_precision(options));
    if (step.max_pool) step.conv2d_cpu.max_pool = *step.max_pool;
  }
}

bool max_pool_fuses_into(Backend backend, const Step& conv_step, const Shape& input_shape, const MaxPool2dParams& pool,
                         bool with_channel_mean, const PlanOptions& options, int num_threads) {
  if (backend != Backend::cpu || conv_step.node->kind != OpKind::conv2d || conv_step.residual) return false;
  const Conv2dParams& params = conv_step.node->conv2d;
  switch (cpu_conv_algorithm(conv_step, input_shape, options, num_threads)) {
    case Conv2dAlgorithm::direct:
      return !with_channel_mean || conv2d_direct_writes_channel_means(params, pool, input_shape);
    case Conv2dAlgorithm::winograd:
      return conv2d_winograd_fuses_max_pool(pool) &&
             (!with_channel_mean || conv2d_winograd_writes_channel_means(params, input_shape, num_threads));
    default: return false;
  }
}

bool step_writes_output_means(Backend backend, const Step& conv_step, const Shape& input_shape, int num_threads) {
  return backend == Backend::cpu && conv_step.node->kind == OpKind::conv2d && !conv_step.max_pool &&
         conv_step.conv2d_cpu.algorithm == Conv2dAlgorithm::im2col_gemm &&
         conv2d_gemm_writes_channel_means(conv_step.node->conv2d, input_shape, num_threads);
}

bool residual_sum_in_place(Backend backend) {
  return backend == Backend::cpu;
}

int64_t step_workspace_floats(Backend backend, const Step& step, const Shape& input_shape, int num_threads) {
#if PRISM_WITH_CUDA
  if (backend == Backend::cuda && step.node->kind == OpKind::conv2d) {
    return conv2d_workspace_floats_cuda(step.node->conv2d, input_shape);
  }
#endif
  if (backend == Backend::cpu && step.node->kind == OpKind::conv2d) {
    return conv2d_workspace_floats_cpu(step.node->conv2d, step.conv2d_cpu, input_shape, num_threads);
  }
  return 0;
}

}  // namespace prism
