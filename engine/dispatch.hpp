// engine/dispatch.hpp: the one place that picks an op's implementation for a backend.
#pragma once

#include <vector>

#include "engine/plan.hpp"

namespace prism {

// Runs one step. inputs are the step's input tensors in the node's order; workspace holds at
// least what the step's op asked for when the plan was made. On the cuda backend every view is
// GPU memory and the kernels are queued on `cuda`'s stream (nullptr on the other backends).
// channel_means: where a step with channel_mean_value writes that mean (nullptr otherwise).
void execute_step(Backend backend, const Step& step, const std::vector<ConstTensorView>& inputs, TensorView output,
                  float* workspace, int num_threads, const CudaContext* cuda, float* channel_means = nullptr);

// Puts the step's weights into the layout its op wants on this backend (the CPU convolution's
// packed or Winograd-transformed matrices; on the cuda backend, copies in GPU memory); done once,
// when the plan is made.
void prepare_step(Backend backend, Step& step, const Shape& input_shape, const PlanOptions& options, int num_threads);

// Whether a max pool reading only a convolution step's output can join that step: on the CPU,
// where the convolution runs direct (ResNet's stem) or by Winograd's F(4x4) with a 2x2 pool of
// stride 2 (VGG's), which then pools its results while they are in cache instead of writing them
// all out for a pass of their own. with_channel_mean: the convolution's output is wanted as its
// mean over channels (a PRISM capture), which the step must then write as well.
bool max_pool_fuses_into(Backend backend, const Step& conv_step, const Shape& input_shape, const MaxPool2dParams& pool,
                         bool with_channel_mean, const PlanOptions& options, int num_threads);

// Whether a prepared convolution step (without a max pool) can write its output's mean over
// channels as it goes, for a mean tap on that output, instead of a pass of its own reading the
// output back: on the CPU, on the GEMM path in tasks of whole pixels (see
// conv2d_gemm_writes_channel_means).
bool step_writes_output_means(Backend backend, const Step& conv_step, const Shape& input_shape, int num_threads);

// Whether a convolution step with a fused residual may write its sums over the residual (when
// nothing reads it afterwards): on the CPU, which reads each element of the residual before
// writing that element of the output. The CUDA convolution writes its product before adding the
// residual.
bool residual_sum_in_place(Backend backend);

// Scratch floats the step needs on this backend.
int64_t step_workspace_floats(Backend backend, const Step& step, const Shape& input_shape, int num_threads);

}  // namespace prism
