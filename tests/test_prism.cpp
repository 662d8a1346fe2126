// tests/test_prism.cpp: each PRISM step on cases a reader can check by hand, the sign rule,
// the degenerate inputs, and the capture points read off the graphs.
#include <omp.h>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <tuple>

#include "engine/plan.hpp"
#include "prism/block_krylov.hpp"
#include "prism/capture_points.hpp"
#include "prism/colours.hpp"
#include "prism/extrapolate.hpp"
#include "prism/pca.hpp"
#include "prism/prism.hpp"
#include "tests/helpers.hpp"

using namespace prism;

namespace {
bool all_finite(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(t.data()[i])) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("PCA: a textbook case with known components", "[prism][pca]") {
  // One image, two channels, 2x2 pixels. As samples (pixel -> (c0, c1)): (2, 0), (-2, 0),
  // (0, 1), (0, -1). Already centred; covariance diag(8, 2) / 3: the first component is the
  // c0 axis with 80% of the variance, the second the c1 axis with 20%.
  const std::vector<float> values = {2, -2, 0, 0,    // channel 0 over the 4 pixels
                                     0, 0,  1, -1};  // channel 1
  const Tensor x = Tensor::from_data({1, 2, 2, 2}, values.data());
  const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
  REQUIRE(pca.explained_variance_ratio.size() == 2);
  CHECK(pca.explained_variance_ratio[0] == Approx(0.8));
  CHECK(pca.explained_variance_ratio[1] == Approx(0.2));
  CHECK(pca.loadings.data()[0] == Approx(1.0));  // component 1 = (1, 0), largest entry positive
  CHECK(pca.loadings.data()[1] == Approx(0.0).margin(1e-12));
  CHECK(pca.loadings.data()[3] == Approx(1.0));  // component 2 = (0, 1)
  const std::vector<float> first = {2, -2, 0, 0}, second = {0, 0, 1, -1};
  for (int p = 0; p < 4; ++p) {
    CHECK(pca.scores.data()[p] == Approx(first[p]).margin(1e-6));       // U * S = X v1
    CHECK(pca.scores.data()[4 + p] == Approx(second[p]).margin(1e-6));  // U * S = X v2
    CHECK(pca.scores.data()[8 + p] == 0.0f);                            // no third component with two channels
  }
}

TEST_CASE("PCA: the sign rule makes the largest loading positive whatever the data's sign", "[prism][pca]") {
  const Tensor x = test::random_tensor({2, 13, 5, 3}, 21);
  Tensor negated = x.clone();
  for (int64_t i = 0; i < negated.numel(); ++i) negated.data()[i] = -negated.data()[i];
  const PrincipalComponents a = principal_components(x.view(), {0, 1, 2});
  const PrincipalComponents b = principal_components(negated.view(), {0, 1, 2});
  for (int k = 0; k < 3; ++k) {
    const float* loading = a.loadings.data() + k * 13;
    int largest = 0;
    for (int c = 1; c < 13; ++c) largest = std::abs(loading[c]) > std::abs(loading[largest]) ? c : largest;
    CHECK(loading[largest] > 0.0f);
  }
  // Negated data has the same components, oriented the same way, and negated scores.
  CHECK(test::compare(b.loadings.view(), a.loadings.view()).max_abs < 1e-5);
  for (int64_t i = 0; i < a.scores.numel(); ++i)
    REQUIRE(b.scores.data()[i] == Approx(-a.scores.data()[i]).margin(1e-4));
}

TEST_CASE("PCA: both sides of the Gram matrix agree with an SVD of the tall matrix", "[prism][pca]") {
  // 2 images of 3x2 pixels: 12 samples. With 7 channels the C x C side is solved; with 40, the
  // samples side (fewer samples than channels).
  for (int64_t channels : {7, 40}) {
    const Tensor x = test::random_tensor({2, channels, 3, 2}, 30 + static_cast<uint32_t>(channels));
    const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
    Eigen::MatrixXd m(12, channels);
    for (int64_t n = 0; n < 2; ++n) {
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t p = 0; p < 6; ++p) m(n * 6 + p, c) = x.data()[(n * channels + c) * 6 + p];
      }
    }
    m.rowwise() -= m.colwise().mean();
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(m, Eigen::ComputeThinU | Eigen::ComputeThinV);
    const Eigen::VectorXd s = svd.singularValues();
    INFO("channels " << channels);
    REQUIRE(static_cast<int64_t>(pca.explained_variance_ratio.size()) == std::min<int64_t>(12, channels));
    for (int k = 0; k < 3; ++k) {
      CHECK(pca.explained_variance_ratio[k] == Approx(s[k] * s[k] / s.squaredNorm()));
      for (int64_t r = 0; r < 12; ++r) {
        const int64_t n = r / 6, p = r % 6;
        // |U * S| must match; the sign is ours to choose (checked in the sign-rule test).
        CHECK(std::abs(pca.scores.data()[(n * 3 + k) * 6 + p]) ==
              Approx(std::abs(svd.matrixU()(r, k) * s[k])).margin(1e-4));
      }
    }
  }
}

TEST_CASE("PCA: large Gram matrices give their leading components, equal to an SVD's", "[prism][pca]") {
  // Over 128 on the solved side, only the leading 32 ratios are computed (with the total from the
  // trace) in single precision: by Lanczos on the Gram matrix, or from 768 on without forming it,
  // by block Krylov iteration on the data. Data: 6 strong directions of decreasing weight plus
  // noise, like a real capture. 2 images of 20x20 with 600 channels solve the 600 x 600 channel
  // side; 1 image of 24x24 with 700 channels, the 576 x 576 samples side; 2 images of 26x26 with
  // 1030 channels, the 1030 x 1030 channel side by blocks; 1 image of 32x33 with 1200 channels,
  // the 1056 x 1056 samples side by blocks.
  for (const auto& [images, side, channels] :
       {std::tuple{int64_t{2}, int64_t{20}, int64_t{600}}, std::tuple{int64_t{1}, int64_t{24}, int64_t{700}},
        std::tuple{int64_t{2}, int64_t{26}, int64_t{1030}}, std::tuple{int64_t{1}, int64_t{32}, int64_t{1200}}}) {
    const int64_t plane = side * side, samples = images * plane;
    const Tensor factors = test::random_tensor({samples, 6}, 40), directions = test::random_tensor({6, channels}, 41);
    const Tensor noise = test::random_tensor({samples, channels}, 42);
    Eigen::MatrixXd m(samples, channels);
    for (int64_t r = 0; r < samples; ++r) {
      for (int64_t c = 0; c < channels; ++c) {
        double value = 0.05 * noise.data()[r * channels + c];
        for (int64_t d = 0; d < 6; ++d)
          value += (6 - d) * factors.data()[r * 6 + d] * directions.data()[d * channels + c];
        m(r, c) = value;
      }
    }
    Tensor x({images, channels, side, side});
    for (int64_t r = 0; r < samples; ++r) {
      for (int64_t c = 0; c < channels; ++c)
        x.data()[((r / plane) * channels + c) * plane + r % plane] = static_cast<float>(m(r, c));
    }
    const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
    m.rowwise() -= m.colwise().mean();
    Eigen::BDCSVD<Eigen::MatrixXd> svd(m, Eigen::ComputeThinU);
    const Eigen::VectorXd s = svd.singularValues();
    INFO(samples << " samples, " << channels << " channels");
    REQUIRE(pca.explained_variance_ratio.size() == 32);
    // The noise components carry 5e-7 of the variance each. Lanczos resolves them to ~1e-10 (single
    // precision's rounding); block Krylov stops once every residual is under 1e-5 of the largest
    // eigenvalue, which bounds each ratio's error by 1e-5 of the first ratio, and a flat noise
    // floor is met at once (0.20 against 0.27 parts in a million here).
    const bool by_blocks = std::min(samples, channels) >= 768;
    const double first_ratio = s[0] * s[0] / s.squaredNorm();
    for (int k = 0; k < 32; ++k) {
      INFO("component " << k);
      CHECK(pca.explained_variance_ratio[k] ==
            Approx(s[k] * s[k] / s.squaredNorm()).epsilon(1e-4).margin(by_blocks ? 1e-5 * first_ratio : 1e-9));
    }
    for (int k = 0; k < 3; ++k) {
      for (int64_t r = 0; r < samples; r += 37) {
        CHECK(std::abs(pca.scores.data()[((r / plane) * 3 + k) * plane + r % plane]) ==
              Approx(std::abs(svd.matrixU()(r, k) * s[k])).epsilon(1e-4).margin(1e-4 * s[k]));
      }
    }
  }
}

TEST_CASE("block Krylov: the leading eigenpairs within its tolerance, on full, low-rank and zero matrices",
          "[prism][pca]") {
  // G = Q diag(lambda) Q^T (n = 300) with Q orthonormal (a random matrix's QR), in double, so
  // that the tolerance is the only error: each pair's residual |G y - theta y| at most 1e-5 of
  // the largest theta, each theta that close to its eigenvalue, the vectors orthonormal.
  const int64_t n = 300;
  const Tensor random = test::random_tensor({n, n}, 50);
  const MatrixD q = Eigen::HouseholderQR<MatrixD>(Eigen::Map<const Eigen::MatrixXf>(random.data(), n, n).cast<double>())
                        .householderQ();
  auto check_pairs = [&](const MatrixD& g, const Eigen::VectorXd& lambda, int count) {
    int products = 0;
    const GramBlockProduct product = [&](const MatrixD& v, MatrixD& w) {
      ++products;
      w = g * v;
    };
    Eigen::VectorXd values;
    MatrixD vectors;
    REQUIRE(top_eigen_block_krylov(n, product, count, BlockKrylovOptions{}, values, vectors));
    INFO(products << " products");
    REQUIRE(values.size() == count);
    REQUIRE(vectors.rows() == n);
    REQUIRE(vectors.cols() == count);
    const double bound = 1e-5 * lambda[0];
    for (int i = 0; i < count; ++i) {
      INFO("pair " << i);
      CHECK(std::abs(values[i] - lambda[i]) <= bound);
      CHECK((g * vectors.col(i) - values[i] * vectors.col(i)).norm() <= bound);
    }
    CHECK((vectors.transpose() * vectors - MatrixD::Identity(count, count)).cwiseAbs().maxCoeff() < 1e-10);
    return vectors;
  };
  SECTION("a decaying spectrum: the vectors are the eigenvectors") {
    Eigen::VectorXd lambda(n);
    for (int64_t i = 0; i < n; ++i) lambda[i] = 100.0 * std::pow(0.8, static_cast<double>(i));
    const MatrixD vectors = check_pairs(q * lambda.asDiagonal() * q.transpose(), lambda, 5);
    for (int i = 0; i < 5; ++i) CHECK(std::abs(vectors.col(i).dot(q.col(i))) == Approx(1.0).epsilon(1e-8));
  }
  SECTION("rank 3, six pairs asked for: the products stop adding directions, zeros for the rest") {
    Eigen::VectorXd lambda = Eigen::VectorXd::Zero(n);
    lambda.head(3) << 3.0, 2.0, 1.0;
    check_pairs(q * lambda.asDiagonal() * q.transpose(), lambda, 6);
  }
  SECTION("the zero matrix: zeros") {
    check_pairs(MatrixD::Zero(n, n), Eigen::VectorXd::Zero(n), 4);
  }
  SECTION("a basis too small for the tolerance: false, nothing written") {
    Eigen::VectorXd lambda(n);
    for (int64_t i = 0; i < n; ++i) lambda[i] = 1.0 + 1e-3 * i;  // nearly flat: slow to separate
    const MatrixD g = q * lambda.asDiagonal() * q.transpose();
    const GramBlockProduct product = [&](const MatrixD& v, MatrixD& w) { w = g * v; };
    BlockKrylovOptions options;
    options.largest_basis = 48;
    options.tolerance = 1e-12;
    Eigen::VectorXd values = Eigen::VectorXd::Constant(2, -1.0);
    MatrixD vectors;
    CHECK_FALSE(top_eigen_block_krylov(n, product, 5, options, values, vectors));
    CHECK(values == Eigen::VectorXd::Constant(2, -1.0));
    CHECK(vectors.size() == 0);
  }
}

TEST_CASE("PCA: degenerate input has defined results and no NaN", "[prism][pca]") {
  SECTION("one image of one pixel: nothing varies") {
    const Tensor x = test::random_tensor({1, 8, 1, 1}, 1);
    const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
    CHECK(pca.explained_variance_ratio == std::vector<double>{0.0});
    CHECK(test::compare(pca.scores.view(), Tensor({1, 3, 1, 1}).view()).max_abs == 0.0);
  }
  SECTION("a constant capture: zero variance") {
    Tensor x({2, 5, 3, 3});
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 0.5f;
    const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
    CHECK(all_finite(pca.scores));
    for (double r : pca.explained_variance_ratio) CHECK(r == 0.0);
  }
  SECTION("fewer samples than components") {
    const Tensor x = test::random_tensor({2, 6, 1, 1}, 2);  // two samples: one direction after centring
    const PrincipalComponents pca = principal_components(x.view(), {0, 1, 2});
    CHECK(pca.explained_variance_ratio[0] == Approx(1.0));
    for (int64_t i : {1, 2, 4, 5}) CHECK(pca.scores.data()[i] == 0.0f);  // components 2 and 3 of both images
    CHECK(pca.scores.data()[0] == Approx(-pca.scores.data()[3]));        // the two samples mirror each other
  }
  SECTION("wide captures (block Krylov on 1100 channels over 1156 samples): constant, and of rank 2") {
    const int64_t channels = 1100, side = 34, plane = side * side;
    Tensor constant({1, channels, side, side});
    for (int64_t i = 0; i < constant.numel(); ++i) constant.data()[i] = 0.5f;
    const PrincipalComponents flat = principal_components(constant.view(), {0, 1, 2});
    CHECK(all_finite(flat.scores));
    CHECK(flat.explained_variance_ratio.size() == 32);
    for (double r : flat.explained_variance_ratio) CHECK(r == 0.0);
    CHECK(test::compare(flat.scores.view(), Tensor(flat.scores.shape()).view()).max_abs == 0.0);
    // Two patterns over the pixels, each in its own mix of channels: two components, no third.
    const Tensor patterns = test::random_tensor({2, plane}, 3), mixes = test::random_tensor({2, channels}, 4);
    Tensor two({1, channels, side, side});
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t p = 0; p < plane; ++p) {
        two.data()[c * plane + p] =
            patterns.data()[p] * mixes.data()[c] + 0.5f * patterns.data()[plane + p] * mixes.data()[channels + c];
      }
    }
    const PrincipalComponents pca = principal_components(two.view(), {0, 1, 2});
    CHECK(all_finite(pca.scores));
    CHECK(pca.explained_variance_ratio[0] + pca.explained_variance_ratio[1] == Approx(1.0).epsilon(1e-5));
    for (size_t k = 2; k < pca.explained_variance_ratio.size(); ++k) CHECK(pca.explained_variance_ratio[k] < 1e-5);
    // A third direction, if one is returned at all, is rounding: its scores vanish beside the first's.
    double first = 0.0, third = 0.0;
    for (int64_t p = 0; p < plane; ++p) {
      first = std::max<double>(first, std::abs(pca.scores.data()[p]));
      third = std::max<double>(third, std::abs(pca.scores.data()[2 * plane + p]));
    }
    CHECK(first > 0.1);
    CHECK(third < 1e-5 * first);
  }
}

TEST_CASE("bilinear resize follows torch.nn.functional.interpolate (align_corners=False)", "[prism][extrapolate]") {
  // The classic 2x2 -> 4x4 case: sources at -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
  const std::vector<float> values = {1, 2, 3, 4};
  const Tensor x = Tensor::from_data({1, 1, 2, 2}, values.data());
  const Tensor up = resize_bilinear(x.view(), 4, 4);
  const std::vector<float> expected = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                                       2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  for (int i = 0; i < 16; ++i) CHECK(up.data()[i] == Approx(expected[i]));
  // Down to 1x2: each output samples halfway between two rows.
  const Tensor down = resize_bilinear(x.view(), 1, 2);
  CHECK(down.data()[0] == Approx(2.0));
  CHECK(down.data()[1] == Approx(3.0));
}

TEST_CASE("bilinear resize agrees with the per-pixel definition on uneven shapes", "[prism][extrapolate]") {
  // resize_bilinear runs separably (rows first); here every output pixel is worked out on its
  // own, in double, from interpolate's definition, on shapes where rows and columns differ.
  auto source_of = [](int64_t i, int64_t in, int64_t out) {
    const double s = std::max((i + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5, 0.0);
    const int64_t low = std::min(static_cast<int64_t>(s), in - 1);
    return std::make_tuple(low, std::min(low + 1, in - 1), s - static_cast<double>(low));
  };
  for (const auto& [in_h, in_w, out_h, out_w] : std::vector<std::array<int64_t, 4>>{
           {5, 3, 7, 11}, {3, 5, 17, 4}, {9, 13, 4, 6}, {7, 7, 224, 160}, {1, 4, 3, 9}}) {
    Tensor maps({2, 3, in_h, in_w});
    for (int64_t i = 0; i < maps.numel(); ++i) maps.data()[i] = static_cast<float>((i * 37) % 23) - 11.0f;
    const Tensor out = resize_bilinear(maps.view(), out_h, out_w);
    REQUIRE(out.shape() == (Shape{2, 3, out_h, out_w}));
    double worst = 0.0;
    for (int64_t plane = 0; plane < 6; ++plane) {
      const float* in = maps.data() + plane * in_h * in_w;
      for (int64_t y = 0; y < out_h; ++y) {
        const auto [y0, y1, fy] = source_of(y, in_h, out_h);
        for (int64_t x = 0; x < out_w; ++x) {
          const auto [x0, x1, fx] = source_of(x, in_w, out_w);
          const double top = (1 - fx) * in[y0 * in_w + x0] + fx * in[y0 * in_w + x1];
          const double bottom = (1 - fx) * in[y1 * in_w + x0] + fx * in[y1 * in_w + x1];
          const double expected = (1 - fy) * top + fy * bottom;
          worst = std::max(worst, std::abs(out.data()[(plane * out_h + y) * out_w + x] - expected));
        }
      }
    }
    INFO(in_h << "x" << in_w << " -> " << out_h << "x" << out_w);
    CHECK(worst < 1e-4);
  }
}

TEST_CASE("channel means are each pixel's mean over channels, the same on any number of threads", "[prism]") {
  // 45x50 pixels: two runs of 1024 and a partial third per image.
  const Tensor x = test::random_tensor({3, 7, 45, 50}, 12);
  const int64_t plane = 45 * 50;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Tensor one = channel_mean(x.view());
  omp_set_num_threads(2);
  const Tensor two = channel_mean(x.view());
  omp_set_num_threads(threads);
  REQUIRE(one.shape() == (Shape{3, 1, 45, 50}));
  double worst = 0.0;
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t p = 0; p < plane; ++p) {
      double sum = 0.0;
      for (int64_t c = 0; c < 7; ++c) sum += x.data()[(n * 7 + c) * plane + p];
      worst = std::max(worst, std::abs(one.data()[n * plane + p] - sum / 7));
    }
  }
  CHECK(worst < 1e-6);
  CHECK(std::equal(one.data(), one.data() + one.numel(), two.data()));
}

TEST_CASE("gradual extrapolation multiplies by each earlier capture's channel mean", "[prism][extrapolate]") {
  // A capture with channels 1 and 3 everywhere has mean 2; extrapolating a constant map of 5
  // through it gives 10 at its size.
  Tensor capture({1, 2, 4, 6});
  for (int64_t i = 0; i < 24; ++i) capture.data()[i] = 1.0f, capture.data()[24 + i] = 3.0f;
  const Tensor mean = channel_mean(capture.view());
  REQUIRE(mean.shape() == Shape{1, 1, 4, 6});
  CHECK(mean.data()[7] == Approx(2.0));
  Tensor maps({1, 3, 2, 3});
  for (int64_t i = 0; i < maps.numel(); ++i) maps.data()[i] = 5.0f;
  std::vector<Tensor> means;
  means.push_back(mean.clone());
  const Tensor out = gradual_extrapolation(maps.view(), means);
  REQUIRE(out.shape() == Shape{1, 3, 4, 6});
  for (int64_t i = 0; i < out.numel(); ++i) REQUIRE(out.data()[i] == Approx(10.0));
}

TEST_CASE("colours: TorchPRISM's normalisation by hand", "[prism][colours]") {
  // 0, 1, 2, 3: mean 1.5, unbiased std sqrt(5/3) = 1.291; z = -1.162, -0.387, 0.387, 1.162;
  // clipped to [-1, 1]: -1, -0.387, 0.387, 1; scaled to [0, 1]: 0, 0.306, 0.694, 1.
  const std::vector<float> values = {0, 1, 2, 3};
  const Tensor colours = normalise_to_colours(Tensor::from_data({1, 1, 2, 2}, values.data()).view());
  CHECK(colours.data()[0] == Approx(0.0));
  CHECK(colours.data()[1] == Approx(((1 - 1.5) / std::sqrt(5.0 / 3.0) + 1) / 2).epsilon(1e-5));
  CHECK(colours.data()[1] == Approx(0.3064).epsilon(1e-3));
  CHECK(colours.data()[2] == Approx(0.6936).epsilon(1e-3));
  CHECK(colours.data()[3] == Approx(1.0));
  // 0 .. 16: eight values at a time and one more, each by TorchPRISM's formula.
  std::vector<float> ramp(17);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i);
  const Tensor ramp_colours = normalise_to_colours(Tensor::from_data({1, 1, 1, 17}, ramp.data()).view());
  double squares = 0.0;
  for (float v : ramp) squares += (v - 8.0) * (v - 8.0);
  const double ramp_std = std::sqrt(squares / 16.0);
  auto z = [&](double v) { return std::clamp((v - 8.0) / ramp_std, -1.0, 1.0); };
  for (size_t i = 0; i < ramp.size(); ++i) {
    CHECK(ramp_colours.data()[i] == Approx((z(ramp[i]) - z(0.0)) / (z(16.0) - z(0.0))).margin(1e-6));
  }
  // Nothing varies: black, not NaN.
  const Tensor flat = normalise_to_colours(Tensor({2, 3, 4, 4}).view());
  CHECK(test::compare(flat.view(), Tensor({2, 3, 4, 4}).view()).max_abs == 0.0);
  // In place (PRISM's final maps): the same colours, and the same black for flat maps.
  Tensor maps = test::random_tensor({2, 3, 5, 7}, 4);
  const Tensor expected = normalise_to_colours(maps.view());
  normalise_to_colours_in_place(maps.view());
  CHECK(test::compare(maps.view(), expected.view()).max_abs == 0.0);
  Tensor constant = Tensor::from_data({1, 1, 2, 2}, std::vector<float>(4, 3.0f).data());
  normalise_to_colours_in_place(constant.view());
  CHECK(test::compare(constant.view(), Tensor({1, 1, 2, 2}).view()).max_abs == 0.0);
}

TEST_CASE("colours: quantisation, and the colours all images share", "[prism][colours]") {
  const Tensor maps = test::random_tensor({3, 3, 5, 4}, 9);
  const Tensor all = quantise_colours(maps.view(), ColourFilter::all);
  const Tensor common = quantise_colours(maps.view(), ColourFilter::common);
  const Tensor unique = quantise_colours(maps.view(), ColourFilter::unique);
  const int64_t plane = 20;
  auto colour = [&](const Tensor& t, int64_t n, int64_t p) {
    return std::array<float, 3>{t.data()[(n * 3) * plane + p], t.data()[(n * 3 + 1) * plane + p],
                                t.data()[(n * 3 + 2) * plane + p]};
  };
  std::vector<std::set<std::array<float, 3>>> present(3);
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t p = 0; p < plane; ++p) present[n].insert(colour(all, n, p));
  }
  for (int64_t i = 0; i < all.numel(); ++i) {
    const float v = all.data()[i];
    REQUIRE((v == 0.0f || v == 0.5f || v == 1.0f));
  }
  const std::array<float, 3> black = {0, 0, 0};
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t p = 0; p < plane; ++p) {
      const auto c = colour(all, n, p);
      const bool shared = present[0].count(c) && present[1].count(c) && present[2].count(c);
      // --inclusive keeps exactly the shared colours, --exclusive exactly the others.
      CHECK(colour(common, n, p) == (shared ? c : black));
      CHECK(colour(unique, n, p) == (shared ? black : c));
    }
  }
}

TEST_CASE("capture points are TorchPRISM's hooks, in forward order", "[prism][captures]") {
  const Model vgg = test::random_model("vgg16", 3, 1);
  CHECK(capture_points(vgg.graph, CaptureSet::automatic) == std::vector<std::string>{"features.4:input", "features.4",
                                                                                     "features.9", "features.16",
                                                                                     "features.23", "features.30"});
  CHECK(capture_points_ending_at(vgg.graph, CaptureSet::torchprism, "features.23").back() == "features.23");
  CHECK(capture_points_ending_at(vgg.graph, CaptureSet::torchprism, "features.23").size() == 5);

  const Model resnet = test::random_model("resnet50", 3, 2);
  const std::vector<std::string> hooks = capture_points(resnet.graph, CaptureSet::torchprism);
  CHECK(hooks.front() == "conv1:input");  // the image itself
  CHECK(hooks[1] == "conv1");
  CHECK(hooks[2] == "maxpool");
  CHECK(hooks[3] == "layer2.0.conv2");  // the v1.5 bottleneck strides its 3x3 convolution
  CHECK(hooks[4] == "layer2.0.downsample.0");
  CHECK(hooks.back() == "layer4.0.downsample.0");  // not the network's final feature map
  CHECK(hooks.size() == 9);
  CHECK(capture_points(resnet.graph, CaptureSet::automatic) ==
        std::vector<std::string>{"relu", "layer1", "layer2", "layer3", "layer4"});
}

TEST_CASE("PRISM maps repeat exactly, and agree across thread counts and batch sizes", "[prism]") {
  const Model model = test::random_model("resnet18", 5, 3);
  const Tensor input = test::random_tensor({4, 3, 64, 64}, 4);
  const std::vector<std::string> captures = capture_points(model.graph, CaptureSet::torchprism);
  PlanOptions plan_options;
  plan_options.taps = captures;
  auto maps_with = [&](int threads, int64_t batch) {
    omp_set_num_threads(threads);
    plan_options.num_threads = threads;
    PrismCollector collector(captures, 4);
    for (int64_t first = 0; first < 4; first += batch) {
      const Tensor part = Tensor::from_data({batch, 3, 64, 64}, input.data() + first * 3 * 64 * 64);
      Plan plan(model, part.shape(), plan_options);
      collector.add(plan.run(part.view()));
    }
    return compute_prism(collector, PrismOptions{}, 64, 64).maps;
  };
  const int original = omp_get_max_threads();
  const Tensor reference = maps_with(1, 4);
  const Tensor again = maps_with(1, 4);
  const Tensor two_threads = maps_with(2, 4);
  const Tensor one_by_one = maps_with(2, 1);
  omp_set_num_threads(original);
  CHECK(all_finite(reference));
  CHECK(test::compare(again.view(), reference.view()).max_abs == 0.0);
  // Other thread counts and batch sizes split the convolutions' sums differently: float rounding,
  // far below one 8-bit colour level (1 / 255 = 0.0039).
  CHECK(test::compare(two_threads.view(), reference.view()).max_abs < 1e-4);
  CHECK(test::compare(one_by_one.view(), reference.view()).max_abs < 1e-4);
}
