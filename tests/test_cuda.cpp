// tests/test_cuda.cpp: the CUDA backend against the CPU: every op on awkward shapes, every
// architecture's logits and taps, and PRISM's maps. Built into prism_cuda_tests, whose main
// (test_cuda_main.cpp) reports the whole program as skipped where there is no GPU to run it.
#include <catch2/catch.hpp>

#include "engine/cuda/runtime.hpp"
#include "engine/plan.hpp"
#include "layers/adaptive_avg_pool2d.hpp"
#include "layers/add.hpp"
#include "layers/batch_norm2d.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/relu.hpp"
#include "prism/capture_points.hpp"
#include "prism/prism.hpp"
#include "tests/helpers.hpp"

using namespace prism;

namespace {

// Ops and plans compare within this mixed tolerance (see helpers.hpp): cuBLAS sums in another
// order than the CPU, so fp32 rounding differs, far below it.
constexpr double op_tolerance = 1e-5;
constexpr double model_tolerance = 1e-4;  // the bound on logits and taps

Tensor up(const Tensor& host) { return host.to(Device::cuda); }

void check_close(const Tensor& on_gpu, const Tensor& expected, double tolerance, const std::string& what) {
  REQUIRE(on_gpu.device() == Device::cuda);
  const Tensor actual = on_gpu.to(Device::cpu);
  const test::Difference d = test::compare(actual.view(), expected.view());
  INFO(what << ": " << d.describe());
  CHECK(test::close_enough(d, tolerance));
}

}  // namespace

TEST_CASE("cuda: convolutions equal the reference on awkward shapes", "[cuda][ops]") {
  CudaContext context;
  struct Case {
    Shape input;
    Conv2dParams p;
    bool relu, residual;
  };
  auto conv = [](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding, int64_t dilation, int64_t groups,
                 bool bias) {
    Conv2dParams p;
    p.in_channels = in, p.out_channels = out, p.kernel_h = k, p.kernel_w = k, p.stride_h = stride,
    p.stride_w = stride, p.padding_h = padding, p.padding_w = padding, p.dilation_h = dilation,
    p.dilation_w = dilation, p.groups = groups, p.bias = bias;
    return p;
  };
  Conv2dParams rectangular = conv(5, 7, 3, 1, 1, 1, 1, true);
  rectangular.kernel_w = 5, rectangular.stride_w = 2, rectangular.padding_h = 0, rectangular.padding_w = 2;
  const std::vector<Case> cases = {
      {{2, 3, 13, 11}, conv(3, 8, 3, 1, 1, 1, 1, true), false, false},
      {{3, 16, 9, 7}, conv(16, 12, 3, 2, 1, 1, 1, false), true, false},
      {{2, 6, 17, 19}, conv(6, 10, 7, 2, 3, 1, 1, true), true, false},
      {{1, 8, 12, 10}, conv(8, 8, 3, 1, 2, 2, 1, true), false, true},
      {{2, 32, 6, 5}, conv(32, 16, 3, 1, 1, 1, 4, true), true, false},
      {{3, 24, 5, 9}, conv(24, 40, 1, 1, 0, 1, 1, false), true, true},
      {{2, 24, 8, 8}, conv(24, 48, 1, 2, 0, 1, 2, true), false, false},
      {{2, 5, 11, 14}, rectangular, true, false},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const Conv2dParams& p = c.p;
    const Tensor x = test::random_tensor(c.input, seed++);
    const Tensor w = test::random_tensor({p.out_channels, p.in_channels / p.groups, p.kernel_h, p.kernel_w}, seed++);
    const Tensor b = test::random_tensor({p.out_channels}, seed++);
    const Shape out_shape = conv2d_output_shape(p, c.input);
    const Tensor residual = test::random_tensor(out_shape, seed++);
    Tensor expected(out_shape);
    conv2d_forward_ref(p, x.view(), w.view(), p.bias ? b.data() : nullptr, false, expected.view());
    for (int64_t i = 0; i < expected.numel(); ++i) {
      float value = expected.data()[i] + (c.residual ? residual.data()[i] : 0.0f);
      expected.data()[i] = c.relu && value < 0.0f ? 0.0f : value;
    }
    const Tensor x_gpu = up(x), w_gpu = up(w), b_gpu = up(b), residual_gpu = up(residual);
    Tensor out = Tensor::uninitialized(out_shape, Device::cuda);
    Tensor workspace = Tensor::uninitialized({std::max<int64_t>(1, conv2d_workspace_floats_cuda(p, c.input))}, Device::cuda);
    conv2d_forward_cuda(p, x_gpu.view(), w_gpu.view(), p.bias ? b_gpu.data() : nullptr,
                        c.residual ? residual_gpu.data() : nullptr, c.relu, out.view(), workspace.data(), context);
    context.synchronize();
    check_close(out, expected, op_tolerance, "conv " + shape_to_string(c.input) + " -> " + shape_to_string(out_shape));
  }
}

TEST_CASE("cuda: the other ops equal the reference", "[cuda][ops]") {
  CudaContext context;
  const Tensor x = test::random_tensor({3, 5, 11, 13}, 21);
  const Tensor x_gpu = up(x);

  SECTION("relu and add") {
    Tensor expected(x.shape()), out = Tensor::uninitialized(x.shape(), Device::cuda);
    relu_forward_ref(x.view(), expected.view());
    relu_forward_cuda(x_gpu.view(), out.view(), context);
    check_close(out, expected, 0.0, "relu");
    const Tensor y = test::random_tensor(x.shape(), 22);
    const Tensor y_gpu = up(y);
    for (bool relu : {false, true}) {
      add_forward_ref(x.view(), y.view(), relu, expected.view());
      add_forward_cuda(x_gpu.view(), y_gpu.view(), relu, out.view(), context);
      check_close(out, expected, 0.0, relu ? "add + relu" : "add");
    }
  }
  SECTION("batch norm") {
    const BatchNorm2dParams p{5, 1e-5f};
    const Tensor weight = test::random_tensor({5}, 23), bias = test::random_tensor({5}, 24);
    const Tensor mean = test::random_tensor({5}, 25), var = test::random_tensor({5}, 26, 0.1f, 2.0f);
    const BatchNorm2dWeights w{weight.data(), bias.data(), mean.data(), var.data()};
    Tensor expected(x.shape()), scale({5}), shift({5});
    batch_norm2d_forward_ref(p, w, x.view(), expected.view());
    batch_norm2d_scale_shift(p, w, scale.data(), shift.data());
    const Tensor scale_gpu = up(scale), shift_gpu = up(shift);
    Tensor out = Tensor::uninitialized(x.shape(), Device::cuda);
    batch_norm2d_forward_cuda(p, scale_gpu.data(), shift_gpu.data(), x_gpu.view(), out.view(), context);
    check_close(out, expected, op_tolerance, "batch norm");
  }
  SECTION("max pooling: padding, dilation, ceil mode") {
    for (const MaxPool2dParams& p : {MaxPool2dParams{3, 3, 2, 2, 1, 1, 1, 1, false},
                                     MaxPool2dParams{2, 2, 2, 2, 0, 0, 1, 1, true},
                                     MaxPool2dParams{3, 2, 2, 1, 1, 0, 2, 1, true}}) {
      const Shape shape = max_pool2d_output_shape(p, x.shape());
      Tensor expected(shape), out = Tensor::uninitialized(shape, Device::cuda);
      max_pool2d_forward_ref(p, x.view(), expected.view());
      max_pool2d_forward_cuda(p, x_gpu.view(), out.view(), context);
      check_close(out, expected, 0.0, "max pool to " + shape_to_string(shape));
    }
  }
  SECTION("adaptive average pooling, overlapping and repeated bins") {
    for (const AdaptiveAvgPool2dParams& p : {AdaptiveAvgPool2dParams{7, 7}, AdaptiveAvgPool2dParams{1, 1},
                                             AdaptiveAvgPool2dParams{3, 5}, AdaptiveAvgPool2dParams{17, 4}}) {
      const Shape shape = adaptive_avg_pool2d_output_shape(p, x.shape());
      Tensor expected(shape), out = Tensor::uninitialized(shape, Device::cuda);
      adaptive_avg_pool2d_forward_ref(p, x.view(), expected.view());
      adaptive_avg_pool2d_forward_cuda(p, x_gpu.view(), out.view(), context);
      check_close(out, expected, 0.0, "adaptive pool to " + shape_to_string(shape));
    }
  }
  SECTION("linear, with and without bias and ReLU") {
    const LinearParams p{715, 37, true};
    const Tensor input = test::random_tensor({3, 715}, 27), weight = test::random_tensor({37, 715}, 28);
    const Tensor bias = test::random_tensor({37}, 29);
    const Tensor input_gpu = up(input), weight_gpu = up(weight), bias_gpu = up(bias);
    for (bool relu : {false, true}) {
      for (bool with_bias : {false, true}) {
        Tensor expected({3, 37}), out = Tensor::uninitialized({3, 37}, Device::cuda);
        linear_forward_ref(p, input.view(), weight.view(), with_bias ? bias.data() : nullptr, relu, expected.view());
        linear_forward_cuda(p, input_gpu.view(), weight_gpu.view(), with_bias ? bias_gpu.data() : nullptr, relu,
                            out.view(), context);
        check_close(out, expected, op_tolerance, "linear");
      }
    }
  }
  SECTION("channel means") {
    Tensor out = Tensor::uninitialized({3, 1, 11, 13}, Device::cuda);
    channel_mean_cuda(x_gpu.view(), out.view(), context);
    check_close(out, channel_mean(x.view()), 0.0, "channel mean");
  }
  context.synchronize();
}

TEST_CASE("cuda: every architecture's logits and PRISM captures equal the CPU backend's", "[cuda][models]") {
  for (const char* architecture :
       {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet18", "resnet34",
        "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2", "resnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d"}) {
    const Model model = test::random_model(architecture, 10, 31);
    const Tensor x = test::random_tensor({2, 3, 67, 45}, 32);
    PlanOptions cpu_options;
    cpu_options.taps = capture_points(model.graph, CaptureSet::torchprism);
    PlanOptions cuda_options = cpu_options;
    cuda_options.backend = Backend::cuda;
    const RunResult expected = Plan(model, x.shape(), cpu_options).run(x.view());
    const RunResult actual = Plan(model, x.shape(), cuda_options).run(x.view());
    const test::Difference d = test::compare(actual.output.view(), expected.output.view());
    INFO(architecture << " logits: " << d.describe());
    CHECK(test::close_enough(d, model_tolerance));
    for (const std::string& tap : cpu_options.taps) {
      REQUIRE(actual.taps.at(tap).device() == Device::cpu);
      const test::Difference t = test::compare(actual.taps.at(tap).view(), expected.taps.at(tap).view());
      INFO(architecture << " tap " << tap << ": " << t.describe());
      CHECK(test::close_enough(t, model_tolerance));
    }
  }
}

TEST_CASE("cuda: PRISM maps on the GPU equal the CPU's", "[cuda][prism]") {
  // resnet18 at 64x64 analyses (N, 512, 2, 2): 16 samples, so the sample side of the Gram matrix
  // in double; vgg11 at 96x96 analyses (N, 512, 3, 3) of 24 images: 216 samples, the float
  // sample side; resnet50 at 64x64 with stage captures, (N, 2048, 2, 2) of 40 images: 160
  // samples; vgg11 at 224 with 12 images: (12, 512, 7, 7), 588 samples, the channel side.
  struct Case {
    const char* architecture;
    int64_t images, size;
    CaptureSet captures;
  };
  for (const Case& c : {Case{"resnet18", 4, 64, CaptureSet::torchprism}, Case{"vgg11", 24, 96, CaptureSet::torchprism},
                        Case{"resnet50", 40, 64, CaptureSet::stages}, Case{"vgg11", 12, 224, CaptureSet::torchprism}}) {
    const Model model = test::random_model(c.architecture, 10, 41);
    const Tensor x = test::random_tensor({c.images, 3, c.size, c.size}, 42);
    const std::vector<std::string> captures = capture_points(model.graph, c.captures);
    PlanOptions cpu_options;
    request_captures(cpu_options, captures);
    PlanOptions cuda_options = cpu_options;
    cuda_options.backend = Backend::cuda;
    cuda_options.outputs_on_device = true;
    Plan cpu_plan(model, x.shape(), cpu_options);
    Plan cuda_plan(model, x.shape(), cuda_options);
    PrismCollector on_cpu(captures, c.images), on_gpu(captures, c.images);
    on_cpu.add(cpu_plan.run(x.view()));
    on_gpu.add(cuda_plan.run(x.view()));
    REQUIRE(on_gpu.analysed().device() == Device::cuda);
    for (bool inclusive : {false, true}) {
      for (bool exclusive : {false, true}) {
        for (bool gradual : {true, false}) {
          PrismOptions options;
          options.inclusive = inclusive, options.exclusive = exclusive, options.gradual_extrapolation = gradual;
          const PrismResult expected = compute_prism(on_cpu, options, c.size, c.size);
          const PrismResult actual = compute_prism(on_gpu, options, c.size, c.size, cuda_plan.cuda_context());
          INFO(c.architecture << " " << c.images << "x" << c.size << " inclusive " << inclusive << " exclusive "
                              << exclusive << " gradual " << gradual);
          REQUIRE(actual.maps.shape() == expected.maps.shape());
          const test::Difference d = test::compare(actual.maps.view(), expected.maps.view());
          INFO("maps: " << d.describe());
          CHECK(d.max_abs < 1e-3);
          if ((inclusive || exclusive) && !gradual) CHECK(d.max_abs == 0.0);  // identical quantised colours
          CHECK(test::close_enough(test::compare(actual.loadings.view(), expected.loadings.view()), 1e-3));
          REQUIRE(actual.explained_variance_ratio.size() == expected.explained_variance_ratio.size());
          for (size_t i = 0; i < expected.explained_variance_ratio.size(); ++i) {
            CHECK(actual.explained_variance_ratio[i] == Approx(expected.explained_variance_ratio[i]).margin(1e-5));
          }
        }
      }
    }
  }
}

TEST_CASE("cuda: GPU memory is returned when plans and tensors go", "[cuda]") {
  const Model model = test::random_model("resnet18", 10, 51);
  const Tensor x = test::random_tensor({2, 3, 64, 64}, 52);
  PlanOptions options;
  options.backend = Backend::cuda;
  int64_t free_before = 0, free_after = 0;
  {
    Plan warm(model, x.shape(), options);  // the first plan starts CUDA and cuBLAS, which keep memory
    warm.run(x.view());
  }
  free_before = cuda_free_bytes();
  for (int i = 0; i < 3; ++i) {
    Plan plan(model, x.shape(), options);
    plan.run(x.view());
  }
  free_after = cuda_free_bytes();
  CHECK(free_after + (int64_t{16} << 20) >= free_before);  // within cuBLAS's own caching
}
