// layers/cpu/gemm.hpp: the matrix product under every fast convolution and linear layer,
// C (M, N) = A (M, K) * B (K, N), all row-major, with A packed once ahead of time (weights are
// prepared when a plan is made) and B packed per call. Leaves out transposes and alpha/beta: the
// engine needs C = A * B, optionally plus a per-row bias and a ReLU.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engine/tensor.hpp"
#include "layers/cpu/simd.hpp"

namespace prism {

// The micro-kernel computes a (gemm_rows_per_panel, gemm_columns_per_panel) block of C in
// registers, sized to the vector registers the compiler may use: with AVX-512, 8 rows of A
// broadcast against 3 vectors of 16 columns of B (24 accumulators out of 32 registers); with AVX2's
// 16 registers, 6 rows against 2 vectors of 8; with plain x86-64 (SSE), 4 rows against 2 vectors of
// 4. Depth is cut into blocks of gemm_depth_per_block so that one packed panel of B stays in L1
// while every panel of A streams past it.
#if defined(__AVX512F__)
inline constexpr int64_t gemm_rows_per_panel = 8;
inline constexpr int64_t gemm_vectors_per_panel = 3;
#elif defined(__AVX__)
inline constexpr int64_t gemm_rows_per_panel = 6;
inline constexpr int64_t gemm_vectors_per_panel = 2;
#else
inline constexpr int64_t gemm_rows_per_panel = 4;
inline constexpr int64_t gemm_vectors_per_panel = 2;
#endif
inline constexpr int64_t gemm_columns_per_panel = simd_floats * gemm_vectors_per_panel;
inline constexpr int64_t gemm_depth_per_block = 256;

// fp32: every product in single precision. bf16: A and B rounded to bfloat16 (8 bits of
// mantissa, to nearest) and multiplied by AVX512_BF16's vdpbf16ps, which sums pairs of products
// into fp32: twice the products per instruction of an fp32 FMA, and a relative error per product
// of about 4e-3 where fp32's is 6e-8. An opt-in for the network's layers (PlanOptions::bf16).
enum class GemmPrecision { fp32, bf16 };

// A (rows, depth) in the micro-kernel's order: depth blocks, within them panels of
// gemm_rows_per_panel rows, within those depth-major (a panel's rows consecutive for each k). Rows
// past the end are zero. In bf16 each float of `data` holds two bfloat16s, elements k and k + 1
// of one row (k even; the lower half k), so a panel of a block has (block depth + 1) / 2 of them
// per row; an odd last block is padded with a zero.
struct PackedMatrix {
  int64_t rows = 0, depth = 0;
  GemmPrecision precision = GemmPrecision::fp32;
  Tensor data;  // (depth blocks, row panels, block depth (in bf16: pairs), gemm_rows_per_panel)
};

// a: (rows, depth), element (row, k) at a[row * row_stride + k * k_stride]: row-major with
// k_stride 1, column-major with row_stride 1. Packed matrices are mostly weights, kept as long as
// a plan; PRISM's PCA packs a transient one.
PackedMatrix gemm_pack_a(const float* a, int64_t rows, int64_t depth, int64_t row_stride, int64_t k_stride = 1,
                         Lifetime lifetime = Lifetime::lasting);

// Whether this build can multiply in bf16: compiled for a CPU with AVX512_BF16 (PRISM_NATIVE on
// such a machine: AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later).
bool gemm_bf16_available();

// The same fp32 packed matrix in bf16 (each element rounded to nearest, ties to even, as the
// CPU's conversion does). Throws an Error where !gemm_bf16_available().
PackedMatrix gemm_to_bf16(const PackedMatrix& a);

// For writing an fp32 packed matrix element by element (Winograd's transformed weights): an empty
// one (rows past the end zero, the rest to be filled), and where element (row, k) lives in its data.
PackedMatrix gemm_packed_matrix(int64_t rows, int64_t depth, Lifetime lifetime = Lifetime::lasting);
inline int64_t gemm_packed_index(const PackedMatrix& a, int64_t row, int64_t k) {
  const int64_t row_panels = (a.rows + gemm_rows_per_panel - 1) / gemm_rows_per_panel;
  const int64_t block = k / gemm_depth_per_block * gemm_depth_per_block;
  const int64_t block_depth = std::min(gemm_depth_per_block, a.depth - block);
  return block * row_panels * gemm_rows_per_panel +
         (row / gemm_rows_per_panel * block_depth + (k - block)) * gemm_rows_per_panel + row % gemm_rows_per_panel;
}

// Floats of scratch gemm_packed needs for B when it has `columns` columns (per calling thread).
int64_t gemm_workspace_floats(int64_t depth, int64_t columns);

// What happens to each result before it is stored, in this order: + bias[row], + addend (a matrix
// shaped like c: a residual connection), max(0, .). The addend may be c itself (a residual added
// in place): each of its elements is read before that element of c is written.
struct GemmEpilogue {
  const float* bias = nullptr;
  const float* addend = nullptr;
  int64_t addend_row_stride = 0;
  bool relu = false;
};

// Columns that lie in runs: several images side by side in one product, each image's pixels a
// run of `columns` columns whose rows (channels) are planes of that image, and each run's B, C
// and addend this many floats after the previous run's (the next image's planes). columns == 0:
// one run, the plain row-major layout.
struct GemmColumnRuns {
  int64_t columns = 0;
  int64_t b_stride = 0, c_stride = 0, addend_stride = 0;
};

// Where B comes from, which decides how it is read: from memory (read in place where a panel
// lies whole in one run, the next panel fetched ahead while the current one's products run) or
// from this core's cache (packed). by_size takes a B of more than 1 MiB to come from memory; a
// caller that computes a large B in parts says so for each part.
enum class GemmBSource { by_size, memory, cache };
GemmBSource gemm_b_source_by_size(int64_t depth, int64_t columns);

// c (a.rows, columns) = a * b (a.depth, columns), then the epilogue, in a's precision (b is
// rounded to bf16 as it is packed where a is bf16). b and c are row-major with the given row
// strides, in runs if `runs` says so. num_threads > 1 splits the work over OpenMP threads; call
// it with 1 from inside a parallel region. [row_begin, row_end) limits the work to those rows of
// c (row_begin a multiple of gemm_rows_per_panel; -1: to the last), so that threads can share
// one product without waiting for each other.
void gemm_packed(const PackedMatrix& a, const float* b, int64_t b_row_stride, int64_t columns, float* c,
                 int64_t c_row_stride, const GemmEpilogue& epilogue, float* workspace, int num_threads,
                 int64_t row_begin = 0, int64_t row_end = -1, const GemmColumnRuns& runs = {},
                 GemmBSource b_source = GemmBSource::by_size);

}  // namespace prism
