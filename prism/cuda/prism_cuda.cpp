// prism/cuda/prism_cuda.cpp: PRISM on captures that stayed in GPU memory. The same steps as
// prism.cpp and pca.cpp, with the heavy ones (centring, the Gram matrix, projections, resizing,
// colours) on the GPU and only the small symmetric eigenproblem (side C or N*h*w, whichever is
// smaller) on the host, solved by the same code as on the CPU (prism/gram.hpp). Only the Gram
// matrix, a few vectors and the final maps cross to the host.
#include <cmath>
#include <vector>

#include "engine/error.hpp"
#include "prism/cuda/kernels.hpp"
#include "prism/gram.hpp"
#include "prism/prism.hpp"

namespace prism {

#if PRISM_WITH_CUDA
namespace {

// A host vector copied into GPU scratch.
template <typename T>
DeviceBuffer upload(const std::vector<T>& values) {
  DeviceBuffer buffer(static_cast<int64_t>(values.size() * sizeof(T)));
  cuda_upload_bytes(buffer.as<void>(), values.data(), static_cast<int64_t>(values.size() * sizeof(T)));
  return buffer;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& buffer, int64_t count) {
  std::vector<T> values(count);
  cuda_download_bytes(values.data(), buffer.as<void>(), count * static_cast<int64_t>(sizeof(T)));
  return values;
}

// solve_gram (prism/gram.hpp) for a Gram matrix on the GPU. Where only its leading eigenpairs
// are wanted (a large single-precision one), Lanczos runs on the host with each product on the
// GPU: per product two vectors of `side` doubles cross instead of the whole matrix coming down
// (16 MB for 64 images of ResNet-50's layer4), and the host's copy, in double, took longer than
// the products. Otherwise, or if Lanczos does not converge, the matrix comes down.
GramEigen solve_gram_on_gpu(const DeviceBuffer& gram, int64_t side, int wanted, const CudaContext& context,
                            const float*) {
  const int64_t vector_bytes = side * static_cast<int64_t>(sizeof(double));
  if (gram_leading_only(side, wanted)) {
    DeviceBuffer x(vector_bytes), y(vector_bytes), diagonal_on_gpu(side * static_cast<int64_t>(sizeof(float)));
    pca_gram_diagonal_cuda(gram.as<float>(), side, diagonal_on_gpu.as<float>(), context);
    double trace = 0.0;
    for (float value : download<float>(diagonal_on_gpu, side)) trace += static_cast<double>(value);
    const GramProduct product = [&](const double* in, double* out) {
      cuda_upload_bytes(x.as<void>(), in, vector_bytes);
      pca_gram_product_cuda(gram.as<float>(), side, x.as<double>(), y.as<double>(), context);
      cuda_download_bytes(out, y.as<void>(), vector_bytes);
    };
    GramEigen eigen;
    if (solve_gram_leading(side, product, trace, wanted, eigen)) return eigen;
  }
  Eigen::MatrixXf on_host(side, side);
  cuda_download_bytes(on_host.data(), gram.as<void>(), side * side * static_cast<int64_t>(sizeof(float)));
  return solve_gram(on_host, wanted);
}

GramEigen solve_gram_on_gpu(const DeviceBuffer& gram, int64_t side, int wanted, const CudaContext&, const double*) {
  MatrixD on_host(side, side);
  cuda_download_bytes(on_host.data(), gram.as<void>(), side * side * static_cast<int64_t>(sizeof(double)));
  return solve_gram(on_host, wanted);
}

struct DeviceComponents {
  Tensor scores;  // (N, k, h, w) on the GPU
  Tensor loadings;
  std::vector<double> explained_variance_ratio;
};

// principal_components (prism/pca.hpp) with T the precision of the centred matrix and the Gram
// matrix: double below smallest_single_precision_gram, float from there on, as on the CPU.
template <typename T>
DeviceComponents principal_components_on(const Tensor& activations, const std::vector<int>& components, int wanted,
                                         const CudaContext& context) {
  const int64_t batch = activations.dim(0), channels = activations.dim(1);
  const int64_t plane = activations.dim(2) * activations.dim(3), rows = batch * plane;
  const bool channel_side = channels <= rows;
  const int64_t side = std::min(rows, channels);
  const int64_t k = static_cast<int64_t>(components.size());

  DeviceBuffer centred(channels * rows * static_cast<int64_t>(sizeof(T)));
  pca_centre_cuda(activations.data(), batch, channels, plane, centred.as<T>(), context);
  DeviceBuffer gram_on_gpu(side * side * static_cast<int64_t>(sizeof(T)));
  pca_gram_cuda(centred.as<T>(), channels, rows, channel_side, gram_on_gpu.as<T>(), context);
  GramEigen eigen = solve_gram_on_gpu(gram_on_gpu, side, wanted, context, static_cast<const T*>(nullptr));

  DeviceComponents result;
  result.explained_variance_ratio = std::move(eigen.explained_variance_ratio);
  result.loadings = Tensor({k, channels});
  // The chosen components' loadings (k, C) and, on the sample side, their scores (k, rows), as
  // the CPU computes them; an unusable component stays zero.
  std::vector<T> loadings(k * channels, T{0}), sample_scores(channel_side ? 0 : k * rows, T{0});
  std::vector<double> singular(k, 0.0);
  std::vector<bool> usable(k, false);
  for (int64_t j = 0; j < k; ++j) {
    usable[j] = eigen.usable(components[j]);
    if (usable[j]) singular[j] = std::sqrt(eigen.values[components[j]]);
  }
  if (!channel_side) {
    // loading = X^T u / s on the GPU, for every chosen component at once.
    std::vector<T> vectors(k * rows, T{0});
    for (int64_t j = 0; j < k; ++j) {
      if (!usable[j]) continue;
      for (int64_t r = 0; r < rows; ++r) vectors[j * rows + r] = static_cast<T>(eigen.vectors(r, components[j]));
    }
    const DeviceBuffer vectors_on_gpu = upload(vectors);
    DeviceBuffer back(k * channels * static_cast<int64_t>(sizeof(T)));
    pca_back_project_cuda(centred.as<T>(), channels, rows, vectors_on_gpu.as<T>(), k, back.as<T>(), context);
    loadings = download<T>(back, k * channels);
  }
  for (int64_t j = 0; j < k; ++j) {
    if (!usable[j]) continue;
    Eigen::VectorXd loading(channels);
    for (int64_t c = 0; c < channels; ++c) {
      loading[c] = channel_side ? eigen.vectors(c, components[j]) : static_cast<double>(loadings[j * channels + c]) / singular[j];
    }
    const double sign = orient_sign(loading) ? -1.0 : 1.0;
    for (int64_t c = 0; c < channels; ++c) {
      loadings[j * channels + c] = static_cast<T>(loading[c]);
      result.loadings.data()[j * channels + c] = static_cast<float>(loading[c]);
    }
    if (!channel_side) {
      for (int64_t r = 0; r < rows; ++r) {
        sample_scores[j * rows + r] = static_cast<T>(sign * eigen.vectors(r, components[j]) * singular[j]);
      }
    }
  }

  DeviceBuffer scores(k * rows * static_cast<int64_t>(sizeof(T)));
  if (channel_side) {
    const DeviceBuffer loadings_on_gpu = upload(loadings);
    pca_project_cuda(centred.as<T>(), channels, rows, loadings_on_gpu.as<T>(), k, scores.as<T>(), context);
    context.synchronize();  // loadings_on_gpu goes at the end of this block
  } else {
    cuda_upload_bytes(scores.as<void>(), sample_scores.data(), k * rows * static_cast<int64_t>(sizeof(T)));
  }
  result.scores = Tensor::uninitialized({batch, k, activations.dim(2), activations.dim(3)}, Device::cuda);
  pca_scores_to_maps_cuda(scores.as<T>(), k, batch, plane, result.scores.data(), context);
  context.synchronize();
  return result;
}

Tensor resized(const Tensor& maps, int64_t height, int64_t width, const float* factor, const CudaContext& context) {
  Tensor out = Tensor::uninitialized({maps.dim(0), maps.dim(1), height, width}, Device::cuda);
  resize_bilinear_cuda(maps.data(), maps.dim(0), maps.dim(1), maps.dim(2), maps.dim(3), out.data(), height, width,
                       factor, context);
  return out;
}

Tensor normalised(const Tensor& maps, const CudaContext& context) {
  Tensor colours = Tensor::uninitialized(maps.shape(), Device::cuda);
  normalise_to_colours_cuda(maps.data(), maps.numel(), colours.data(), context);
  return colours;
}

}  // namespace

PrismResult compute_prism_cuda(const PrismCollector& collected, const PrismOptions& options, int64_t height,
                               int64_t width, const CudaContext& context) {
  const Tensor& analysed = collected.analysed();
  const int wanted = components_needed(options.components);
  const int64_t side = std::min(analysed.dim(1), analysed.dim(0) * analysed.dim(2) * analysed.dim(3));
  DeviceComponents pca = side < smallest_single_precision_gram
                             ? principal_components_on<double>(analysed, options.components, wanted, context)
                             : principal_components_on<float>(analysed, options.components, wanted, context);

  const bool quantise = options.inclusive || options.exclusive;
  Tensor maps = std::move(pca.scores);
  if (quantise) {
    Tensor colours = Tensor::uninitialized(maps.shape(), Device::cuda);
    quantise_colours_cuda(maps.data(), maps.dim(0), maps.dim(2) * maps.dim(3), colour_filter(options), colours.data(),
                          context);
    maps = std::move(colours);
  }
  if (options.gradual_extrapolation) {
    const std::vector<Tensor>& means = collected.channel_means();
    for (auto mean = means.rbegin(); mean != means.rend(); ++mean) {
      if (mean->dim(0) != maps.dim(0) || mean->dim(1) != 1) {
        throw Error("channel mean " + shape_to_string(mean->shape()) + " does not fit maps " +
                    shape_to_string(maps.shape()));
      }
      // Means kept on the host (a capture tapped in full and reduced there) are copied up.
      const Tensor uploaded = mean->device() == Device::cuda ? Tensor() : mean->to(Device::cuda);
      maps = resized(maps, mean->dim(2), mean->dim(3), uploaded.empty() ? mean->data() : uploaded.data(), context);
      context.synchronize();  // `uploaded` goes at the end of this iteration
    }
    maps = normalised(maps, context);
  } else if (!quantise) {
    maps = normalised(maps, context);
  }
  if (maps.dim(2) != height || maps.dim(3) != width) maps = resized(maps, height, width, nullptr, context);
  context.synchronize();
  return {maps.to(Device::cpu), std::move(pca.explained_variance_ratio), std::move(pca.loadings)};
}

#else

PrismResult compute_prism_cuda(const PrismCollector&, const PrismOptions&, int64_t, int64_t, const CudaContext&) {
  throw Error("this prism was built without the CUDA backend: PRISM on the GPU is not available");
}

#endif

}  // namespace prism
