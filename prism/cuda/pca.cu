// prism/cuda/pca.cu: centring, the Gram matrix and the projections of PRISM's PCA on the GPU.
// cuBLAS is column-major: the row-major (C, rows) centred matrix is to it a (rows, C) matrix M
// with leading dimension rows, so the channel-side Gram matrix is M^T M, the sample side M M^T.
#include "engine/cuda/check.cuh"
#include "prism/cuda/kernels.hpp"

namespace prism {
namespace {

// One block per channel: its mean over every sample, summed in double.
__global__ void channel_means_kernel(const float* activations, int64_t batch, int64_t channels, int64_t plane,
                                     double* means) {
  __shared__ double partial[cuda_block_threads];
  const int64_t c = blockIdx.x;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < batch * plane; i += blockDim.x) {
    sum += activations[(i / plane * channels + c) * plane + i % plane];
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) means[c] = partial[0] / static_cast<double>(batch * plane);
}

template <typename T>
__global__ void centre_kernel(const float* activations, int64_t channels, int64_t plane, const double* means,
                              T* centred, int64_t rows, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i / rows, row = i % rows, n = row / plane, p = row % plane;
    centred[i] = static_cast<T>(static_cast<double>(activations[(n * channels + c) * plane + p]) - means[c]);
  }
}

template <typename T>
void centre(const float* activations, int64_t batch, int64_t channels, int64_t plane, T* centred,
            const CudaContext& context) {
  DeviceBuffer means(channels * static_cast<int64_t>(sizeof(double)));
  channel_means_kernel<<<static_cast<unsigned>(channels), cuda_block_threads, 0, stream_of(context)>>>(
      activations, batch, channels, plane, means.as<double>());
  cuda_check_launch("PCA channel means");
  const int64_t rows = batch * plane, count = channels * rows;
  centre_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      activations, channels, plane, means.as<double>(), centred, rows, count);
  cuda_check_launch("PCA centring");
  context.synchronize();  // `means` goes when this returns
}

// C = op(A) op(B) in cuBLAS's column-major terms, float or double.
void gemm(const CudaContext& context, cublasOperation_t a_op, cublasOperation_t b_op, int64_t m, int64_t n,
          int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  const float one = 1.0f, zero = 0.0f;
  cublas_check(cublasSgemm(blas_of(context), a_op, b_op, static_cast<int>(m), static_cast<int>(n),
                           static_cast<int>(k), &one, a, static_cast<int>(lda), b, static_cast<int>(ldb), &zero, c,
                           static_cast<int>(ldc)),
               "PCA product");
}
void gemm(const CudaContext& context, cublasOperation_t a_op, cublasOperation_t b_op, int64_t m, int64_t n,
          int64_t k, const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc) {
  const double one = 1.0, zero = 0.0;
  cublas_check(cublasDgemm(blas_of(context), a_op, b_op, static_cast<int>(m), static_cast<int>(n),
                           static_cast<int>(k), &one, a, static_cast<int>(lda), b, static_cast<int>(ldb), &zero, c,
                           static_cast<int>(ldc)),
               "PCA product");
}

template <typename T>
void gram(const T* centred, int64_t channels, int64_t rows, bool channel_side, T* out, const CudaContext& context) {
  if (channel_side) {
    gemm(context, CUBLAS_OP_T, CUBLAS_OP_N, channels, channels, rows, centred, rows, centred, rows, out, channels);
  } else {
    gemm(context, CUBLAS_OP_N, CUBLAS_OP_T, rows, rows, channels, centred, rows, centred, rows, out, rows);
  }
}

// One warp per row of the symmetric Gram matrix (which is also its column): lanes read the row's
// floats side by side, sum in double, and the warp adds its lanes' sums.
__global__ void gram_product_kernel(const float* gram, int64_t side, const double* x, double* y) {
  constexpr int warp = 32;
  const int64_t row = blockIdx.x * int64_t{blockDim.x / warp} + threadIdx.x / warp;
  if (row >= side) return;
  const int lane = threadIdx.x % warp;
  const float* values = gram + row * side;
  double sum = 0.0;
  for (int64_t j = lane; j < side; j += warp) sum += static_cast<double>(values[j]) * x[j];
  for (int offset = warp / 2; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  if (lane == 0) y[row] = sum;
}

template <typename T>
__global__ void scores_to_maps_kernel(const T* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                                      int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = i % plane, j = i / plane % k, n = i / (plane * k);  // i indexes (n, j, p)
    maps[i] = static_cast<float>(scores[j * batch * plane + n * plane + p]);
  }
}

template <typename T>
void scores_to_maps(const T* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                    const CudaContext& context) {
  const int64_t count = batch * k * plane;
  scores_to_maps_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(scores, k, batch, plane,
                                                                                               maps, count);
  cuda_check_launch("PCA scores");
}

}  // namespace

void pca_centre_cuda(const float* activations, int64_t batch, int64_t channels, int64_t plane, float* centred,
                     const CudaContext& context) {
  centre(activations, batch, channels, plane, centred, context);
}
void pca_centre_cuda(const float* activations, int64_t batch, int64_t channels, int64_t plane, double* centred,
                     const CudaContext& context) {
  centre(activations, batch, channels, plane, centred, context);
}

void pca_gram_cuda(const float* centred, int64_t channels, int64_t rows, bool channel_side, float* out,
                   const CudaContext& context) {
  gram(centred, channels, rows, channel_side, out, context);
}
void pca_gram_cuda(const double* centred, int64_t channels, int64_t rows, bool channel_side, double* out,
                   const CudaContext& context) {
  gram(centred, channels, rows, channel_side, out, context);
}

void pca_gram_product_cuda(const float* gram, int64_t side, const double* x, double* y, const CudaContext& context) {
  constexpr int64_t rows_per_block = cuda_block_threads / 32;
  const auto blocks = static_cast<unsigned>((side + rows_per_block - 1) / rows_per_block);
  gram_product_kernel<<<blocks, cuda_block_threads, 0, stream_of(context)>>>(gram, side, x, y);
  cuda_check_launch("PCA Gram product");
}

void pca_gram_diagonal_cuda(const float* gram, int64_t side, float* diagonal, const CudaContext& context) {
  cublas_check(cublasScopy(blas_of(context), static_cast<int>(side), gram, static_cast<int>(side + 1), diagonal, 1),
               "PCA Gram diagonal");
}

// Row-major scores (k, rows) are column-major (rows, k) = M (rows, C) * loadings as a (C, k) matrix.
void pca_project_cuda(const float* centred, int64_t channels, int64_t rows, const float* loadings, int64_t k,
                      float* scores, const CudaContext& context) {
  gemm(context, CUBLAS_OP_N, CUBLAS_OP_N, rows, k, channels, centred, rows, loadings, channels, scores, rows);
}
void pca_project_cuda(const double* centred, int64_t channels, int64_t rows, const double* loadings, int64_t k,
                      double* scores, const CudaContext& context) {
  gemm(context, CUBLAS_OP_N, CUBLAS_OP_N, rows, k, channels, centred, rows, loadings, channels, scores, rows);
}

// Row-major loadings (k, C) are column-major (C, k) = M^T (C, rows) * vectors as a (rows, k) matrix.
void pca_back_project_cuda(const float* centred, int64_t channels, int64_t rows, const float* vectors, int64_t k,
                           float* loadings, const CudaContext& context) {
  gemm(context, CUBLAS_OP_T, CUBLAS_OP_N, channels, k, rows, centred, rows, vectors, rows, loadings, channels);
}
void pca_back_project_cuda(const double* centred, int64_t channels, int64_t rows, const double* vectors,
                           int64_t k, double* loadings, const CudaContext& context) {
  gemm(context, CUBLAS_OP_T, CUBLAS_OP_N, channels, k, rows, centred, rows, vectors, rows, loadings, channels);
}

void pca_scores_to_maps_cuda(const float* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                             const CudaContext& context) {
  scores_to_maps(scores, k, batch, plane, maps, context);
}
void pca_scores_to_maps_cuda(const double* scores, int64_t k, int64_t batch, int64_t plane, float* maps,
                             const CudaContext& context) {
  scores_to_maps(scores, k, batch, plane, maps, context);
}

}  // namespace prism
