// tests/test_plan.cpp: plans: folding and fusion, taps and their names, buffer reuse, and whole
// models on the reference backend against the fast CPU backend.
#include <catch2/catch.hpp>

#include "engine/error.hpp"
#include "engine/plan.hpp"
#include "layers/conv2d.hpp"
#include "layers/cpu/direct_kernel.hpp"
#include "layers/cpu/simd.hpp"
#include "tests/helpers.hpp"

using namespace prism;

TEST_CASE("a fully fused resnet18 plan has one step per convolution, pool and linear", "[plan]") {
  const Model model = test::random_model("resnet18", 10, 1);
  const Plan plan(model, {1, 3, 64, 64});
  // conv1 (+bn1+relu+maxpool), 8 blocks of conv1 + conv2 (+ the add and its ReLU; 3 blocks with
  // a downsample conv), avgpool, fc.
  CHECK(plan.steps().size() == 1 + 8 * 2 + 3 + 1 + 1);
  CHECK(plan.steps()[0].fused_names == std::vector<std::string>{"conv1", "bn1", "relu", "maxpool"});
  CHECK(plan.steps()[0].conv2d_cpu.algorithm == Conv2dAlgorithm::direct);
  CHECK(plan.step_output_shape(0) == Shape{1, 64, 16, 16});
  for (const Step& step : plan.steps()) CHECK(step.node->kind != OpKind::batch_norm2d);
  for (const Step& step : plan.steps()) {
    // The add joins the later of its operands' convolutions: conv2, or the downsample after it.
    if (step.fused_names[0] == "layer1.0.conv2") {
      CHECK(step.fused_names ==
            std::vector<std::string>{"layer1.0.conv2", "layer1.0.bn2", "layer1.0.add", "layer1.0.relu#2"});
      CHECK(step.residual);
    }
    if (step.fused_names[0] == "layer2.0.downsample.0") {
      CHECK(step.fused_names == std::vector<std::string>{"layer2.0.downsample.0", "layer2.0.downsample.1",
                                                         "layer2.0.add", "layer2.0.relu#2"});
    }
  }
  // The reference backend keeps every add a step of its own.
  PlanOptions reference;
  reference.backend = Backend::reference;
  CHECK(Plan(model, {1, 3, 64, 64}, reference).steps().size() == 1 + 1 + 8 * 3 + 3 + 1 + 1);
  // Where the stem's output is wanted in full, the pool is a step of its own; wanted as its mean
  // over channels (PRISM's captures), the fused step writes that mean where the direct kernel's
  // one block holds all 64 channels (4 vectors: AVX-512's; with 16 vector registers, AVX2 or a
  // portable SSE build, a block has 2 vectors and the pool stays apart).
  PlanOptions tapped, mean_tapped;
  tapped.taps = {"relu"};
  mean_tapped.mean_taps = {"relu", "maxpool:input"};
  const Plan with_tap(model, {1, 3, 64, 64}, tapped), with_mean_tap(model, {1, 3, 64, 64}, mean_tapped);
  CHECK(with_tap.steps().size() == 1 + 1 + 8 * 2 + 3 + 1 + 1);
  CHECK(with_tap.steps()[0].fused_names == std::vector<std::string>{"conv1", "bn1", "relu"});
  CHECK(with_tap.steps()[1].fused_names == std::vector<std::string>{"maxpool"});
  const bool stem_writes_means = conv2d_direct_writes_channel_means(
      with_tap.steps()[0].node->conv2d, with_tap.steps()[1].node->max_pool2d, {1, 3, 64, 64});
  CHECK(stem_writes_means == (direct_vectors_for(64) * simd_floats >= 64));
  if (stem_writes_means) {
    CHECK(with_mean_tap.steps().size() == 1 + 8 * 2 + 3 + 1 + 1);
    CHECK(with_mean_tap.steps()[0].channel_mean_value >= 0);
  } else {
    CHECK(with_mean_tap.steps().size() == 1 + 1 + 8 * 2 + 3 + 1 + 1);
    CHECK(with_mean_tap.steps()[1].fused_names == std::vector<std::string>{"maxpool"});
  }
}

TEST_CASE("tapping a convolution keeps its output before batch norm", "[plan]") {
  const Model model = test::random_model("resnet18", 10, 2);
  PlanOptions options;
  options.taps = {"layer2.0.conv1", "conv1"};
  const Plan plan(model, {1, 3, 64, 64}, options);
  CHECK(plan.steps()[0].fused_names == std::vector<std::string>{"conv1"});
  CHECK(plan.steps()[1].node->name == "bn1");
  CHECK(plan.tap_shape("layer2.0.conv1") == Shape{1, 128, 8, 8});
}

TEST_CASE("tap names resolve like torchvision's module paths", "[plan]") {
  const Model model = test::random_model("resnet18", 10, 3);
  const Graph& graph = model.graph;
  CHECK(graph.nodes[graph.resolve_tap("layer4").node].name == "layer4.1.relu#2");
  CHECK(graph.nodes[graph.resolve_tap("layer1.0").node].name == "layer1.0.relu#2");
  const TapTarget input = graph.resolve_tap("layer1.0:input");
  CHECK(input.input);
  CHECK(graph.nodes[graph.value_of(input)].name == "maxpool");
  CHECK(graph.value_of(graph.resolve_tap("conv1:input")) == graph_input);
  CHECK_THROWS_WITH(graph.resolve_tap("layer9.0"), Catch::Contains("no layer named 'layer9.0'"));
}

TEST_CASE("buffers are reused: a deep network needs a few activations, not all", "[plan]") {
  const Model model = test::random_model("resnet50", 10, 4);
  const Shape input = {2, 3, 96, 96};
  const Plan plan(model, input);
  int64_t every_output = 0;
  for (const Shape& shape : model.graph.infer_shapes(input)) every_output += shape_numel(shape) * 4;
  CHECK(plan.activation_bytes() * 5 < every_output);
}

TEST_CASE("large transient tensors reuse freed memory, zero-filled when asked", "[plan][tensor]") {
  // From 32 MiB a transient tensor has a mapping of its own, kept when freed for the next one that
  // fits (engine/tensor.cpp). What the last tensor wrote there must not show through.
  const Shape large = {10, 1024, 1024};                  // 40 MiB
  [[maybe_unused]] const float* first_memory = nullptr;  // compared where mappings are used
  {
    Tensor first = Tensor::uninitialized(large);
    first_memory = first.data();
    for (int64_t i = 0; i < first.numel(); ++i) first.data()[i] = 1.0f;
  }
  const Tensor zeros(large);
  int64_t nonzero = 0;
  for (int64_t i = 0; i < zeros.numel(); ++i) nonzero += zeros.data()[i] != 0.0f;
  CHECK(nonzero == 0);
#if !defined(__SANITIZE_ADDRESS__)  // there every tensor comes from malloc
  CHECK(zeros.data() == first_memory);
#endif
}

TEST_CASE("on the CPU a residual is added in place, on the GPU apart", "[plan]") {
  const Model model = test::random_model("resnet50", 10, 4);
  int direct_one_image = 0;  // CPU steps whose threads share out one image by blocks of channels
  for (Backend backend : {Backend::cpu, Backend::cuda}) {
    if (backend == Backend::cuda && !cuda_device_available()) continue;
    for (int64_t batch : {1, 2}) {
      PlanOptions options;
      options.backend = backend;
      options.num_threads = 2;
      options.taps = {"layer1.1"};  // a tapped shortcut is copied out before it is written over
      const Plan plan(model, {batch, 3, 64, 64}, options);
      int residual_steps = 0;
      for (size_t s = 0; s < plan.steps().size(); ++s) {
        const Step& step = plan.steps()[s];
        if (!step.residual) continue;
        ++residual_steps;
        INFO(step.fused_names[0] << ", batch " << batch);
        CHECK(plan.step_writes_over_input(s, 1) == (backend == Backend::cpu));
        CHECK_FALSE(plan.step_writes_over_input(s, 0));
        if (backend == Backend::cpu && step.conv2d_cpu.algorithm == Conv2dAlgorithm::direct && batch == 1) {
          ++direct_one_image;
        }
      }
      CHECK(residual_steps == 16);
    }
  }
  CHECK(direct_one_image > 0);
}

TEST_CASE("taps equal the same values computed with nothing tapped", "[plan]") {
  const Model model = test::random_model("resnet18", 10, 5);
  const Tensor x = test::random_tensor({2, 3, 40, 36}, 6);
  PlanOptions options;
  options.taps = {"conv1", "bn1", "layer1.0.add", "layer1.0", "layer3.1.conv2", "fc:input", "avgpool"};
  Plan tapped(model, x.shape(), options);
  Plan fused(model, x.shape());
  const RunResult with = tapped.run(x.view());
  const RunResult without = fused.run(x.view());
  CHECK(test::close_enough(test::compare(with.output.view(), without.output.view()), 1e-5));
  CHECK(with.taps.size() == options.taps.size());
  CHECK(with.taps.at("fc:input").shape() == Shape{2, 512});
  CHECK(with.taps.at("avgpool").shape() == Shape{2, 512, 1, 1});
  // The block's output is the ReLU of its sum.
  const Tensor& sum = with.taps.at("layer1.0.add");
  const Tensor& block = with.taps.at("layer1.0");
  for (int64_t i = 0; i < sum.numel(); ++i) REQUIRE(block.data()[i] == std::max(sum.data()[i], 0.0f));
}

TEST_CASE("mean taps are the channel means of the same taps in full", "[plan]") {
  const Model model = test::random_model("vgg11", 10, 5);
  const Tensor x = test::random_tensor({2, 3, 48, 40}, 7);
  PlanOptions full, reduced;
  full.taps = {"features.2:input", "features.2", "features.5"};
  reduced.taps = {"features.5"};
  reduced.mean_taps = {"features.2:input", "features.2"};
  Plan full_plan(model, x.shape(), full), reduced_plan(model, x.shape(), reduced);
  const RunResult expected = full_plan.run(x.view());
  const RunResult actual = reduced_plan.run(x.view());
  CHECK(actual.taps.size() == 1);
  for (const std::string& name : reduced.mean_taps) {
    INFO(name);
    CHECK(reduced_plan.tap_shape(name) == expected.taps.at(name).shape());  // the activation's, not the mean's
    const Tensor mean = channel_mean(expected.taps.at(name).view());
    REQUIRE(actual.channel_means.at(name).shape() == Shape{2, 1, mean.dim(2), mean.dim(3)});
    CHECK(test::close_enough(test::compare(actual.channel_means.at(name).view(), mean.view()), 1e-6));
  }
}

TEST_CASE("a stem whose pool joins it still gives its mean tap, and the same output", "[plan]") {
  const Model model = test::random_model("resnet18", 10, 6);
  const Tensor x = test::random_tensor({3, 3, 61, 53}, 8);
  PlanOptions full, reduced;
  full.taps = {"relu", "layer1"};
  reduced.mean_taps = {"relu", "maxpool:input"};
  reduced.taps = {"layer1"};
  Plan full_plan(model, x.shape(), full), reduced_plan(model, x.shape(), reduced);
  REQUIRE(full_plan.steps()[1].fused_names == std::vector<std::string>{"maxpool"});
  // The pool joins the stem where the direct kernel's one block holds all 64 channels (AVX-512);
  // with AVX2 or in a portable SSE build it stays apart, and the outputs and means must be the
  // same either way.
  const bool stem_writes_means = conv2d_direct_writes_channel_means(full_plan.steps()[0].node->conv2d,
                                                                    full_plan.steps()[1].node->max_pool2d, x.shape());
  CHECK(stem_writes_means == (direct_vectors_for(64) * simd_floats >= 64));
  CHECK((reduced_plan.steps()[0].fused_names.back() == "maxpool") == stem_writes_means);
  for (int threads : {1, 2, 3}) {
    full.num_threads = reduced.num_threads = threads;
    const RunResult expected = Plan(model, x.shape(), full).run(x.view());
    const RunResult actual = Plan(model, x.shape(), reduced).run(x.view());
    INFO("threads " << threads);
    CHECK(test::close_enough(test::compare(actual.taps.at("layer1").view(), expected.taps.at("layer1").view()), 1e-6));
    CHECK(test::close_enough(test::compare(actual.output.view(), expected.output.view()), 1e-5));
    const Tensor mean = channel_mean(expected.taps.at("relu").view());
    for (const std::string& name : reduced.mean_taps) {
      INFO(name);
      CHECK(reduced_plan.tap_shape(name) == expected.taps.at("relu").shape());
      CHECK(test::close_enough(test::compare(actual.channel_means.at(name).view(), mean.view()), 1e-6));
    }
  }
}

TEST_CASE("VGG's 2x2 pools join the Winograd convolutions before them, mean taps and all, with the same results",
          "[plan]") {
  const Model model = test::random_model("vgg11", 10, 14);
  const Tensor x = test::random_tensor({2, 3, 64, 72}, 15);
  PlanOptions full, reduced;  // full: the pool's input wanted whole, so the pool stays a step of its own
  full.taps = {"features.5:input", "features.5", "features.20"};
  reduced.mean_taps = {"features.5:input", "features.5"};  // PRISM's captures
  reduced.taps = {"features.20"};
  for (int threads : {1, 2, 3}) {
    full.num_threads = reduced.num_threads = threads;
    Plan full_plan(model, x.shape(), full), reduced_plan(model, x.shape(), reduced);
    INFO("threads " << threads);
    // features.3 (64 -> 128 channels at 32x36) runs by Winograd's F(4x4), 144 tiles: chunks of each
    // thread's own, so it can sum the pooled convolution's channels too.
    const Step& conv = reduced_plan.steps()[2];
    REQUIRE(conv.fused_names == std::vector<std::string>{"features.3", "features.4", "features.5"});
    CHECK(conv.conv2d_cpu.algorithm == Conv2dAlgorithm::winograd);
    CHECK(conv.channel_mean_value >= 0);
    CHECK(full_plan.steps()[3].fused_names == std::vector<std::string>{"features.5"});
    const RunResult expected = full_plan.run(x.view());
    const RunResult actual = reduced_plan.run(x.view());
    CHECK(test::close_enough(
        test::compare(actual.taps.at("features.20").view(), expected.taps.at("features.20").view()), 1e-6));
    CHECK(test::close_enough(test::compare(actual.output.view(), expected.output.view()), 1e-5));
    for (const std::string& name : reduced.mean_taps) {
      INFO(name);
      CHECK(reduced_plan.tap_shape(name) == expected.taps.at(name).shape());
      const Tensor mean = channel_mean(expected.taps.at(name).view());
      CHECK(test::close_enough(test::compare(actual.channel_means.at(name).view(), mean.view()), 1e-6));
    }
  }
}

TEST_CASE("a convolution on the GEMM path writes its output's mean tap itself, exactly channel_mean's", "[plan]") {
  const Model model = test::random_model("resnet50", 10, 12);
  const Tensor x = test::random_tensor({2, 3, 96, 80}, 13);
  PlanOptions full, reduced;
  full.taps = {"layer1", "layer2", "layer4"};
  reduced.mean_taps = {"layer1", "layer2"};
  reduced.taps = {"layer4"};
  int writing = 0;  // steps writing the means themselves: some must, or the test proves nothing
  for (int threads : {1, 2, 3}) {
    full.num_threads = reduced.num_threads = threads;
    Plan reduced_plan(model, x.shape(), reduced);
    for (const Step& step : reduced_plan.steps()) {
      if (step.channel_mean_value < 0 || step.max_pool) continue;
      CHECK(step.channel_mean_value == step.output);
      CHECK(step.conv2d_cpu.algorithm == Conv2dAlgorithm::im2col_gemm);
      ++writing;
    }
    INFO("threads " << threads);
    const RunResult expected = Plan(model, x.shape(), full).run(x.view());
    const RunResult actual = reduced_plan.run(x.view());
    CHECK(test::compare(actual.taps.at("layer4").view(), expected.taps.at("layer4").view()).max_abs == 0.0);
    for (const std::string& name : reduced.mean_taps) {
      INFO(name);
      const Tensor mean = channel_mean(expected.taps.at(name).view());
      REQUIRE(actual.channel_means.at(name).shape() == mean.shape());
      CHECK(test::compare(actual.channel_means.at(name).view(), mean.view()).max_abs == 0.0);
    }
  }
  CHECK(writing >= 2);
}

TEST_CASE("whole models on the reference backend equal the fast CPU backend", "[plan][slow]") {
  for (const auto& [architecture, size] :
       {std::pair{"resnet18", int64_t{37}}, std::pair{"resnext50_32x4d", int64_t{33}},
        std::pair{"vgg11_bn", int64_t{32}}}) {
    const Model model = test::random_model(architecture, 7, 8);
    const Tensor x = test::random_tensor({2, 3, size, size + 4}, 9);
    PlanOptions reference_options;
    reference_options.backend = Backend::reference;
    reference_options.taps = {"avgpool"};
    PlanOptions cpu_options;
    cpu_options.taps = reference_options.taps;
    Plan reference(model, x.shape(), reference_options);
    Plan cpu(model, x.shape(), cpu_options);
    const RunResult expected = reference.run(x.view());
    const RunResult actual = cpu.run(x.view());
    const test::Difference d = test::compare(actual.output.view(), expected.output.view());
    INFO(architecture << ": " << d.describe());
    CHECK(test::close_enough(d, 1e-4));
    CHECK(
        test::close_enough(test::compare(actual.taps.at("avgpool").view(), expected.taps.at("avgpool").view()), 1e-4));
  }
}

TEST_CASE("14x14 and 7x7 stages at batch 1 run on Winograd's 2x2 tiles and equal the reference", "[plan][slow]") {
  const Model model = test::random_model("resnet18", 7, 10);
  const Tensor x = test::random_tensor({1, 3, 112, 112}, 11);  // layer2 at 14x14, layer3 at 7x7
  PlanOptions reference_options;
  reference_options.backend = Backend::reference;
  PlanOptions cpu_options;
  cpu_options.num_threads = 2;
  Plan reference(model, x.shape(), reference_options);
  Plan cpu(model, x.shape(), cpu_options);
  // layer2's and layer3's stride-1 3x3s (each stage's first has stride 2). Without AVX-512 layer1's
  // (28x28, one image) run on them too (small_shared_image_most_pixels in layers/cpu/conv2d.cpp).
  int winograd_2x2_steps = 0;
  for (const Step& step : cpu.steps()) {
    const bool small_stage = step.node->name.rfind("layer2.", 0) == 0 || step.node->name.rfind("layer3.", 0) == 0;
    winograd_2x2_steps +=
        small_stage && step.node->kind == OpKind::conv2d && step.conv2d_cpu.algorithm == Conv2dAlgorithm::winograd_2x2;
  }
  CHECK(winograd_2x2_steps == 6);
  const test::Difference d = test::compare(cpu.run(x.view()).output.view(), reference.run(x.view()).output.view());
  INFO(d.describe());
  CHECK(test::close_enough(d, 1e-4));
}

TEST_CASE("plans refuse inputs they were not made for", "[plan]") {
  const Model model = test::random_model("vgg11", 5, 10);
  CHECK_THROWS_WITH(Plan(model, {1, 3, 16, 16}), Catch::Contains("too small"));
  CHECK_THROWS_WITH(Plan(model, {1, 1, 64, 64}), Catch::Contains("(N, 3, H, W)"));
  Plan plan(model, {1, 3, 32, 32});
  const Tensor wrong = test::random_tensor({2, 3, 32, 32}, 1);
  CHECK_THROWS_WITH(plan.run(wrong.view()), Catch::Contains("made for input (1, 3, 32, 32)"));
}

TEST_CASE("a cuda plan runs where a GPU is, and says clearly why not where none is", "[plan]") {
  const Model model = test::random_model("resnet18", 5, 11);
  PlanOptions options;
  options.backend = Backend::cuda;
  if (cuda_device_available()) {
    Plan plan(model, {1, 3, 32, 32}, options);
    CHECK(plan.run(test::random_tensor({1, 3, 32, 32}, 2).view()).output.device() == Device::cpu);
  } else {
    CHECK_THROWS_WITH(Plan(model, {1, 3, 32, 32}, options), Catch::Contains("CUDA") && Catch::Contains("--device cpu"));
    CHECK_THROWS_WITH(Tensor::uninitialized({4}, Device::cuda), Catch::Contains("CUDA"));
  }
}
