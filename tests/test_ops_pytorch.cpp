// tests/test_ops_pytorch.cpp: every op, reference and fast, against PyTorch's own output on
// awkward shapes (tests/pytorch/make_op_reference.py; ctest runs it first).
#include <catch2/catch.hpp>
#include <cstdlib>

#include "layers/adaptive_avg_pool2d.hpp"
#include "layers/batch_norm2d.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "tests/helpers.hpp"
#include "weights/model_file.hpp"

using namespace prism;

namespace {

constexpr double tolerance = 1e-5;

std::string reference_file() {
  const char* dir = std::getenv("PRISM_OP_REFERENCE_DIR");
  return dir ? std::string(dir) + "/ops.reference.h5" : "";
}

int64_t case_count(int op_index) {
  return static_cast<int64_t>(read_tensor_group(reference_file(), "meta").at("counts").data()[op_index]);
}

// Both versions of an op, compared with PyTorch's output.
template <typename Run>
void check_both(const std::string& what, const Tensor& expected, Run run) {
  for (bool fast : {false, true}) {
    Tensor actual(expected.shape());
    run(fast, actual.view());
    const test::Difference d = test::compare(actual.view(), expected.view());
    INFO(what << (fast ? " fast: " : " reference: ") << d.describe());
    CHECK(test::close_enough(d, tolerance));
  }
}

}  // namespace

TEST_CASE("ops equal PyTorch on awkward shapes", "[.ops_pytorch]") {
  REQUIRE(!reference_file().empty());
  const std::string file = reference_file();
  for (int64_t k = 0; k < case_count(0); ++k) {
    const auto c = read_tensor_group(file, "conv2d/" + std::to_string(k));
    const float* a = c.at("params").data();
    Conv2dParams p;
    p.in_channels = a[0], p.out_channels = a[1], p.kernel_h = a[2], p.kernel_w = a[3];
    p.stride_h = a[4], p.stride_w = a[5], p.padding_h = a[6], p.padding_w = a[7];
    p.dilation_h = a[8], p.dilation_w = a[9], p.groups = a[10], p.bias = a[11] != 0;
    const Tensor& x = c.at("input");
    REQUIRE(conv2d_output_shape(p, x.shape()) == c.at("output").shape());
    const float* bias = p.bias ? c.at("bias").data() : nullptr;
    const Conv2dPreparedCpu prepared =
        conv2d_prepare_cpu(p, c.at("weight").view(), x.shape(), conv2d_choose_algorithm_cpu(p, x.shape(), true, 2));
    Tensor workspace({std::max<int64_t>(1, conv2d_workspace_floats_cpu(p, prepared, x.shape(), 2))});
    check_both("conv2d case " + std::to_string(k), c.at("output"), [&](bool fast, TensorView out) {
      fast ? conv2d_forward_cpu(p, x.view(), prepared, bias, nullptr, false, out, workspace.data(), 2)
           : conv2d_forward_ref(p, x.view(), c.at("weight").view(), bias, false, out);
    });
  }
  for (int64_t k = 0; k < case_count(1); ++k) {
    const auto c = read_tensor_group(file, "max_pool2d/" + std::to_string(k));
    const float* a = c.at("params").data();
    MaxPool2dParams p;
    p.kernel_h = a[0], p.kernel_w = a[1], p.stride_h = a[2], p.stride_w = a[3];
    p.padding_h = a[4], p.padding_w = a[5], p.dilation_h = a[6], p.dilation_w = a[7], p.ceil_mode = a[8] != 0;
    REQUIRE(max_pool2d_output_shape(p, c.at("input").shape()) == c.at("output").shape());
    check_both("max_pool2d case " + std::to_string(k), c.at("output"), [&](bool fast, TensorView out) {
      fast ? max_pool2d_forward_cpu(p, c.at("input").view(), out)
           : max_pool2d_forward_ref(p, c.at("input").view(), out);
    });
  }
  for (int64_t k = 0; k < case_count(2); ++k) {
    const auto c = read_tensor_group(file, "adaptive_avg_pool2d/" + std::to_string(k));
    const AdaptiveAvgPool2dParams p{static_cast<int64_t>(c.at("params").data()[0]),
                                    static_cast<int64_t>(c.at("params").data()[1])};
    check_both("adaptive_avg_pool2d case " + std::to_string(k), c.at("output"), [&](bool fast, TensorView out) {
      fast ? adaptive_avg_pool2d_forward_cpu(p, c.at("input").view(), out)
           : adaptive_avg_pool2d_forward_ref(p, c.at("input").view(), out);
    });
  }
  for (int64_t k = 0; k < case_count(3); ++k) {
    const auto c = read_tensor_group(file, "linear/" + std::to_string(k));
    const LinearParams p{static_cast<int64_t>(c.at("params").data()[0]), static_cast<int64_t>(c.at("params").data()[1]),
                         true};
    check_both("linear case " + std::to_string(k), c.at("output"), [&](bool fast, TensorView out) {
      fast ? linear_forward_cpu(p, c.at("input").view(), c.at("weight").view(), c.at("bias").data(), false, out)
           : linear_forward_ref(p, c.at("input").view(), c.at("weight").view(), c.at("bias").data(), false, out);
    });
  }
  const auto c = read_tensor_group(file, "batch_norm2d/0");
  BatchNorm2dParams p;
  p.channels = static_cast<int64_t>(c.at("params").data()[0]);
  const BatchNorm2dWeights w{c.at("weight").data(), c.at("bias").data(), c.at("running_mean").data(),
                             c.at("running_var").data()};
  check_both("batch_norm2d", c.at("output"), [&](bool fast, TensorView out) {
    fast ? batch_norm2d_forward_cpu(p, w, c.at("input").view(), out)
         : batch_norm2d_forward_ref(p, w, c.at("input").view(), out);
  });
}
