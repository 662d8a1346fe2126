// prism/cuda/kernels.hpp: PRISM's steps on the GPU, as launchers over device pointers queued on a
// plan's stream. prism_cuda.cpp strings them together; the .cu files beside it hold them (kept
// free of Eigen, which nvcc dislikes). Each mirrors a CPU function and rounds as it does.
#pragma once

#include <cstdint>

#include "engine/cuda/runtime.hpp"
#include "prism/colours.hpp"

namespace prism {

// --- pca.cu: the (C, rows) matrix of centred samples (rows = N * h * w, in (n, y, x) order) ---

// centred[c][n * plane + p] = activations[n][c][p] - mean over samples of channel c, the mean and
// the difference in double, as the CPU's PCA; stored as float or double.
void pca_centre_cuda(const float* activations, int64_t batch, int64_t channels, int64_t plane, float* centred,
                     const CudaContext& context);
void pca_centre_cuda(const float* activations, int64_t batch, int64_t channels, int64_t plane, double* centred,
                     const CudaContext& context);

// The Gram matrix on the channel side, (C, C) = centred centred^T, or the sample side,
// (rows, rows) = centred^T centred.
void pca_gram_cuda(const float* centred, int64_t channels, int64_t rows, bool channel_side, float* gram,
                   const CudaContext& context);
void pca_gram_cuda(const double* centred, int64_t channels, int64_t rows, bool channel_side, double* gram,
                   const CudaContext& context);

// y = gram x for Lanczos, with the (side, side) single-precision Gram matrix left on the GPU: x
// and y in double, each row's sum in double, as the CPU's product (prism/pca.cpp) sums it.
void pca_gram_product_cuda(const float* gram, int64_t side, const double* x, double* y, const CudaContext& context);

// diagonal (side) = the Gram matrix's diagonal, for its trace (the total variance).
void pca_gram_diagonal_cuda(const float* gram, int64_t side, float* diagonal, const CudaContext& context);

// scores (k, rows) = loadings (k, C) * centred (C, rows): each pixel's score on each component.
void pca_project_cuda(const float* centred, int64_t channels, int64_t rows, const float* loadings, int64_t k,
                      float* scores, const CudaContext& context);
void pca_project_cuda(const double* centred, int64_t channels, int64_t rows, const double* loadings, int64_t k,
                      double* scores, const CudaContext& context);

// loadings (k, C) = vectors (k, rows) * centred^T: the sample side's way back to directions.
void pca_back_project_cuda(const float* centred, int64_t channels, int64_t rows, const float* vectors, int64_t k,
                           float* loadings, const CudaContext& context);
void pca_back_project_cuda(const double* centred, int64_t channels, int64_t rows, const double* vectors,
                           int64_t k, double* loadings, const CudaContext& context);

// scores (k, N * plane) -> maps (N, k, plane) in float.
void pca_scores_to_maps_cuda(const float* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                             const CudaContext& context);
void pca_scores_to_maps_cuda(const double* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                             const CudaContext& context);

// --- extrapolate.cu ---

// resize_bilinear (prism/extrapolate.hpp) of (images, k, in_h, in_w) maps to (out_h, out_w),
// each result then multiplied by factor[image][pixel] when factor (images, out_h * out_w) is given:
// one step of gradual extrapolation.
void resize_bilinear_cuda(const float* maps, int64_t images, int64_t k, int64_t in_h, int64_t in_w, float* out,
                          int64_t out_h, int64_t out_w, const float* factor, const CudaContext& context);

// --- colours.cu ---

// normalise_to_colours (prism/colours.hpp) of `count` values; colours may be maps.
void normalise_to_colours_cuda(const float* maps, int64_t count, float* colours, const CudaContext& context);

// quantise_colours (prism/colours.hpp), with the same filter.
void quantise_colours_cuda(const float* maps, int64_t batch, int64_t plane, ColourFilter filter, float* colours,
                           const CudaContext& context);

}  // namespace prism
