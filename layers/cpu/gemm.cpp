// layers/cpu/gemm.cpp: a cache-blocked single-precision matrix product in the style of BLIS and
// GotoBLAS: A packed once into panels of rows, B packed per depth block into panels of columns,
// and a micro-kernel that keeps a whole block of C in vector registers while it walks the depth.
// Written with GCC's vector extensions rather than intrinsics, so the same code compiles to
// AVX-512 on the machines we run on and to narrower vectors in a portable build.
#include "layers/cpu/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/error.hpp"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace prism {
namespace {

// The most of B (floats, 4 MiB) that gemm_packed packs whole before a single thread's products.
// At 1 MiB, VGG-16's first convolution (3 -> 64 channels: B 27 deep, 19264 columns a task) kept
// the column strips: 18 ms at batch 8 against 12 with it whole, though it is more than L2 holds.
constexpr int64_t rows_outer_most_b_floats = int64_t{1} << 20;

// The most of B (floats, 1 MiB) taken to be in L2 still from whoever wrote it.
constexpr int64_t b_in_l2_most_floats = int64_t{1} << 18;

int64_t panels(int64_t n, int64_t per_panel) {
  return (n + per_panel - 1) / per_panel;
}

// Where column `column` of a matrix in runs (GemmColumnRuns) lies: its offset from column 0 when
// each run lies `run_stride` floats after the previous one, and how many columns its run has from
// it on.
int64_t run_offset(const GemmColumnRuns& runs, int64_t column, int64_t run_stride) {
  return runs.columns == 0 ? column : column / runs.columns * run_stride + column % runs.columns;
}
int64_t columns_left_in_run(const GemmColumnRuns& runs, int64_t column) {
  return runs.columns == 0 ? std::numeric_limits<int64_t>::max() : runs.columns - column % runs.columns;
}

// Columns [column, column + width) of a matrix in runs, piece by piece: piece(offset, j, count)
// for each run's part, `count` columns from j on, at `offset` from column 0.
template <typename Piece>
void for_each_run_piece(const GemmColumnRuns& runs, int64_t run_stride, int64_t column, int64_t width, Piece piece) {
  for (int64_t j = 0; j < width;) {
    const int64_t count = std::min(width - j, columns_left_in_run(runs, column + j));
    piece(run_offset(runs, column + j, run_stride), j, count);
    j += count;
  }
}

// Those columns of row `row` (of a matrix with row stride row_stride) copied to `to`, or from `from`
// back into it.
void gather_columns(const float* matrix, int64_t row_stride, int64_t run_stride, const GemmColumnRuns& runs,
                    int64_t row, int64_t column, int64_t width, float* to) {
  for_each_run_piece(runs, run_stride, column, width, [&](int64_t offset, int64_t j, int64_t count) {
    std::memcpy(to + j, matrix + row * row_stride + offset, count * sizeof(float));
  });
}
void scatter_columns(const float* from, float* matrix, int64_t row_stride, int64_t run_stride,
                     const GemmColumnRuns& runs, int64_t row, int64_t column, int64_t width) {
  for_each_run_piece(runs, run_stride, column, width, [&](int64_t offset, int64_t j, int64_t count) {
    std::memcpy(matrix + row * row_stride + offset, from + j, count * sizeof(float));
  });
}

// Copies B's rows [0, depth) into panels of 48 columns, depth-major within each panel; columns past
// the end are zero, so the micro-kernel never needs a bounds check on its loads.
void pack_b_panel(const float* b, int64_t b_row_stride, int64_t depth, int64_t column_begin, int64_t columns,
                  const GemmColumnRuns& runs, float* packed) {
  const int64_t width = std::min(gemm_columns_per_panel, columns - column_begin);
  if (width == gemm_columns_per_panel && columns_left_in_run(runs, column_begin) >= width) {
    // A whole panel in one run: whole vectors, no call per row (this copy is a fifth of a small-M
    // GEMM).
    const float* row = b + run_offset(runs, column_begin, runs.b_stride);
    constexpr int64_t ahead = 8;  // rows: each is in another page, which the prefetcher will not guess
    for (int64_t k = 0; k < depth; ++k, packed += gemm_columns_per_panel, row += b_row_stride) {
      if (k + ahead < depth) {
        for (int64_t line = 0; line < gemm_columns_per_panel; line += 16)
          __builtin_prefetch(row + ahead * b_row_stride + line);
      }
      for (int64_t v = 0; v < gemm_vectors_per_panel; ++v)
        simd_store(packed + v * simd_floats, simd_load(row + v * simd_floats));
    }
    return;
  }
  for (int64_t k = 0; k < depth; ++k, packed += gemm_columns_per_panel) {
    gather_columns(b, b_row_stride, runs.b_stride, runs, k, column_begin, width, packed);
    std::fill(packed + width, packed + gemm_columns_per_panel, 0.0f);
  }
}

// C block (rows <= 8, columns <= 16 nv) = or += sum, then what the epilogue holds for this depth
// block (its pointers already at this block of C): bias and addend on the first, the ReLU on the
// last. Partial blocks go through a small buffer so that the full-size path stays branch-free.
template <int64_t nv>
void store_block(const SimdVector (&sum)[gemm_rows_per_panel][nv], float* c, int64_t c_row_stride, int64_t rows,
                 int64_t columns, bool accumulate, const GemmEpilogue* epilogue) {
  constexpr int64_t mr = gemm_rows_per_panel;
  if (rows == mr && columns == nv * simd_floats) {
    // A whole block: the epilogue on the vectors still in registers.
    for (int64_t r = 0; r < mr; ++r) {
      const SimdVector bias = (epilogue && epilogue->bias ? epilogue->bias[r] : 0.0f) - SimdVector{};
      for (int64_t v = 0; v < nv; ++v) {
        float* p = c + r * c_row_stride + v * simd_floats;
        SimdVector x = accumulate ? sum[r][v] + simd_load(p) : sum[r][v];
        if (epilogue) {
          x += bias;
          if (epilogue->addend) x += simd_load(epilogue->addend + r * epilogue->addend_row_stride + v * simd_floats);
          if (epilogue->relu) x = x > 0.0f ? x : SimdVector{};
        }
        simd_store(p, x);
      }
    }
    return;
  }
  // A block at the edge of C: through a buffer, with a plain epilogue over the part that exists.
  float partial[mr * gemm_columns_per_panel];
  for (int64_t r = 0; r < mr; ++r) {
    for (int64_t v = 0; v < nv; ++v) simd_store(partial + r * gemm_columns_per_panel + v * simd_floats, sum[r][v]);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = partial + r * gemm_columns_per_panel;
    float* out = c + r * c_row_stride;
    for (int64_t x = 0; x < columns; ++x) {
      float value = accumulate ? row[x] + out[x] : row[x];
      if (epilogue) {
        if (epilogue->bias) value += epilogue->bias[r];
        if (epilogue->addend) value += epilogue->addend[r * epilogue->addend_row_stride + x];
        if (epilogue->relu) value = std::max(value, 0.0f);
      }
      out[x] = value;
    }
  }
}

// Cache lines of B that a micro-kernel asks L2 for while it runs, one per step of its depth: lines
// [first, end) of B's next panel, whose rows (each lines_per_panel_row lines) lie row_stride
// floats apart from `rows` on. B's rows are the planes of an image, each in its own page, so the
// hardware prefetcher does not see them coming; fetched while the current panel's products run,
// they are in L2 when the panel is packed.
constexpr int64_t lines_per_panel_row = std::max<int64_t>(1, gemm_columns_per_panel / floats_per_cache_line);
struct PanelPrefetch {
  const float* rows = nullptr;
  int64_t row_stride = 0, first = 0, end = 0;
};

// The sums of one block of C: a_panel (depth, 8) * the first nv vectors of each row of b_panel
// (depth, 48; its rows b_step floats apart: 48 packed, or B's row stride where B is read in
// place). The last panel of a product whose width is not a multiple of 48 runs with only the
// vectors it needs (nv < 3): 49 columns cost 1 1/3 panels, not 2.
template <int64_t nv>
void micro_kernel(int64_t depth, const float* a_panel, const float* b_panel, int64_t b_step, float* c,
                  int64_t c_row_stride, int64_t rows, int64_t columns, bool accumulate, const GemmEpilogue* epilogue,
                  const PanelPrefetch& prefetch) {
  constexpr int64_t mr = gemm_rows_per_panel;
  SimdVector sum[mr][nv] = {};
  const int64_t prefetches = std::min(depth, prefetch.end - prefetch.first);
  // This block's lines of C (and of an addend apart from C), asked for with intent to write, one
  // per step over the steps before the middle of the depth: at the store they are in cache and
  // this core's, not in memory or in the other core's cache (where the previous layer, or the
  // residual's, left them). ResNet-50 at batch 8, three alternating profiles: layer2's 128 -> 512
  // 1x1s 3.16 -> 2.77 ms, layer2.0.conv1 6.38 -> 5.98, layer2.0.downsample 6.69 -> 6.34, forward
  // 222-231 -> 218-225.
  const int64_t c_lines = rows == mr && columns == nv * simd_floats ? mr * nv : 0;
  const int64_t c_first = std::max<int64_t>(0, depth / 2 - c_lines);
  const float* addend = epilogue && epilogue->addend != c ? epilogue->addend : nullptr;
  // The next panel's rows in locals: read through `prefetch` they were loaded again and multiplied
  // out at every step; as locals GCC steps a pointer instead. In a warm harness (two threads,
  // medians of 400 calls alternating) F(4x4) 3x3s at 56x56 and 28x28 ran 4-7% faster, and
  // ResNet-50's 256 -> 64 1x1 at batch 8 5%; in the network (two plans of each way alternating) its
  // 1x1s on the GEMM at batch 8 went 9.3-9.8 -> 8.0-9.1 ms, and VGG-16 moved less than its noise.
  const float* const rows_to_fetch = prefetch.rows;
  const int64_t row_stride = prefetch.row_stride, first_line = prefetch.first;
  // Two steps a pass without AVX-512, as in the direct kernel (layers/cpu/direct_kernel.cpp): a step
  // is 12 multiply-adds among some 28 instructions, and the loop's counting and the tests for the
  // prefetches took 6 to 8 of them. On an AMD Zen 3, two plans of each way alternating pass by
  // pass: VGG-16 at batch 8 (12 passes) 1006 and 1080 -> 912 and 994 ms (its F(4x4) 3x3s 3-12%
  // faster each, features.19 98-99 -> 89-94 ms), at batch 1 (30 passes) 174 and 167 -> 157 and 164;
  // ResNet-50 at batch 8 (16 passes), its F(4x4) 3x3s 9.6-10.5 -> 8.8-9.9 ms and its 1x1s on the
  // GEMM 8.5-9.0 -> 7.7-8.6. Not measured with AVX-512, whose loop is left as it was.
#if !defined(__AVX512F__)
#pragma GCC unroll 2
#endif
  for (int64_t k = 0; k < depth; ++k, a_panel += mr, b_panel += b_step) {
    if (k >= c_first && k - c_first < c_lines) {
      const int64_t row = (k - c_first) / nv, vector = (k - c_first) % nv;
      __builtin_prefetch(c + row * c_row_stride + vector * simd_floats, 1, 3);
      if (addend) __builtin_prefetch(addend + row * epilogue->addend_row_stride + vector * simd_floats, 0, 3);
    }
    if (k < prefetches) {
      const int64_t line = first_line + k;
      __builtin_prefetch(
          rows_to_fetch + line / lines_per_panel_row * row_stride + line % lines_per_panel_row * floats_per_cache_line,
          0, 2);
    }
    SimdVector b_row[nv];
#pragma GCC unroll 4
    for (int64_t v = 0; v < nv; ++v) b_row[v] = simd_load(b_panel + v * simd_floats);
#pragma GCC unroll 8
    for (int64_t r = 0; r < mr; ++r) {
      const SimdVector a = a_panel[r] - SimdVector{};  // broadcast
#pragma GCC unroll 4
      for (int64_t v = 0; v < nv; ++v) sum[r][v] += a * b_row[v];
    }
  }
  store_block<nv>(sum, c, c_row_stride, rows, columns, accumulate, epilogue);
}

using MicroKernel = void (*)(int64_t, const float*, const float*, int64_t, float*, int64_t, int64_t, int64_t, bool,
                             const GemmEpilogue*, const PanelPrefetch&);

// The micro-kernel for a panel `width` columns wide: as few vectors as cover it.
MicroKernel micro_kernel_for(int64_t width) {
  if (width <= simd_floats) return micro_kernel<1>;
  if (width <= 2 * simd_floats) return micro_kernel<2>;
  return micro_kernel<gemm_vectors_per_panel>;
}

int64_t bf16_pairs(int64_t depth) {
  return (depth + 1) / 2;
}

#if defined(__AVX512BF16__)
// bf16: the same blocking, with each float of a packed panel holding two bfloat16s of
// consecutive k. vdpbf16ps multiplies the pairs lane by lane and adds both products to the fp32
// sum, so a panel of B holds, for each pair of rows (k, k + 1), lane j = (B[k][j], B[k + 1][j]),
// and A's pair is broadcast to every lane.

// B's rows [0, depth) into a bf16 panel: (pairs, 48) floats, each two bfloat16s; columns past the
// end and the row after an odd depth's last are zero.
void pack_b_panel_bf16(const float* b, int64_t b_row_stride, int64_t depth, int64_t column_begin, int64_t columns,
                       const GemmColumnRuns& runs, float* packed) {
  const int64_t width = std::min(gemm_columns_per_panel, columns - column_begin);
  // (k, j) and (k + 1, j) side by side: element j of the low half and j of the high half of what
  // vcvtne2ps2bf16 makes of the two rows.
  static const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23,
                                                     7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  float row_buffer[2][gemm_columns_per_panel];
  const bool in_place = width == gemm_columns_per_panel && columns_left_in_run(runs, column_begin) >= width;
  for (int64_t k = 0; k < depth; k += 2, packed += gemm_columns_per_panel) {
    const float* rows[2];
    for (int64_t i = 0; i < 2; ++i) {
      const bool exists = k + i < depth;
      if (exists && in_place) {
        rows[i] = b + (k + i) * b_row_stride + run_offset(runs, column_begin, runs.b_stride);
        continue;
      }
      std::fill(row_buffer[i], row_buffer[i] + gemm_columns_per_panel, 0.0f);
      if (exists) gather_columns(b, b_row_stride, runs.b_stride, runs, k + i, column_begin, width, row_buffer[i]);
      rows[i] = row_buffer[i];
    }
    for (int64_t v = 0; v < gemm_vectors_per_panel; ++v) {
      const __m512bh pairs =
          _mm512_cvtne2ps_pbh(_mm512_loadu_ps(rows[1] + v * simd_floats), _mm512_loadu_ps(rows[0] + v * simd_floats));
      _mm512_storeu_si512(packed + v * simd_floats, _mm512_permutexvar_epi16(interleave, (__m512i)pairs));
    }
  }
}

// micro_kernel in bf16: depth counts elements (pairs of them in the panels).
template <int64_t nv>
void micro_kernel_bf16(int64_t depth, const float* a_panel, const float* b_panel, int64_t b_step, float* c,
                       int64_t c_row_stride, int64_t rows, int64_t columns, bool accumulate,
                       const GemmEpilogue* epilogue, const PanelPrefetch&) {
  constexpr int64_t mr = gemm_rows_per_panel;
  SimdVector sum[mr][nv] = {};
  for (int64_t pair = 0; pair < bf16_pairs(depth); ++pair, a_panel += mr, b_panel += b_step) {
    __m512bh b_row[nv];
#pragma GCC unroll 4
    for (int64_t v = 0; v < nv; ++v) b_row[v] = (__m512bh)_mm512_loadu_ps(b_panel + v * simd_floats);
#pragma GCC unroll 8
    for (int64_t r = 0; r < mr; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_ps(a_panel[r]);  // the pair, broadcast
#pragma GCC unroll 4
      for (int64_t v = 0; v < nv; ++v) sum[r][v] = (SimdVector)_mm512_dpbf16_ps((__m512)sum[r][v], a, b_row[v]);
    }
  }
  store_block<nv>(sum, c, c_row_stride, rows, columns, accumulate, epilogue);
}

MicroKernel micro_kernel_bf16_for(int64_t width) {
  if (width <= simd_floats) return micro_kernel_bf16<1>;
  if (width <= 2 * simd_floats) return micro_kernel_bf16<2>;
  return micro_kernel_bf16<gemm_vectors_per_panel>;
}

// Two elements of A's row, k and k + 1, as one float of a bf16 panel.
float bf16_pair(float low, float high) {
  const uint32_t bits = static_cast<uint32_t>(_mm_cvtsi128_si32((__m128i)_mm_cvtneps_pbh(_mm_set_ps(0, 0, high, low))));
  float pair;
  std::memcpy(&pair, &bits, sizeof(pair));
  return pair;
}
#endif

}  // namespace

PackedMatrix gemm_packed_matrix(int64_t rows, int64_t depth, Lifetime lifetime) {
  constexpr int64_t mr = gemm_rows_per_panel;
  const int64_t row_panels = panels(rows, mr);
  PackedMatrix packed{rows, depth, GemmPrecision::fp32,
                      Tensor::uninitialized({row_panels * mr * depth}, Device::cpu, lifetime)};
  for (int64_t row = rows; row < row_panels * mr; ++row) {
    for (int64_t k = 0; k < depth; ++k) packed.data.data()[gemm_packed_index(packed, row, k)] = 0.0f;
  }
  return packed;
}

PackedMatrix gemm_pack_a(const float* a, int64_t rows, int64_t depth, int64_t row_stride, int64_t k_stride,
                         Lifetime lifetime) {
  constexpr int64_t mr = gemm_rows_per_panel;
  PackedMatrix packed = gemm_packed_matrix(rows, depth, lifetime);
  const int64_t row_panels = panels(rows, mr);
  // Panel by panel, each written in order (the layout of gemm_packed_index without its divisions:
  // PCA packs a 2048 x 3136 matrix per call). A panel reads its rows side by side, so either
  // layout of A streams. On every thread from 64K floats: PCA's 392 x 2048 of 8 images of
  // ResNet-50's layer4 took 0.6-1.2 ms on one, 0.3-0.35 on two.
#pragma omp parallel for collapse(2) schedule(static) if (rows * depth >= (1 << 16))
  for (int64_t block = 0; block < depth; block += gemm_depth_per_block) {
    for (int64_t panel = 0; panel < row_panels; ++panel) {
      const int64_t block_depth = std::min(gemm_depth_per_block, depth - block);
      const int64_t panel_rows = std::min(mr, rows - panel * mr);
      float* to = packed.data.data() + block * row_panels * mr + panel * block_depth * mr;
      const float* from = a + panel * mr * row_stride + block * k_stride;
      for (int64_t k = 0; k < block_depth; ++k, to += mr, from += k_stride) {
        for (int64_t r = 0; r < panel_rows; ++r) to[r] = from[r * row_stride];
      }
    }
  }
  return packed;
}

bool gemm_bf16_available() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

PackedMatrix gemm_to_bf16(const PackedMatrix& a) {
#if defined(__AVX512BF16__)
  if (a.precision == GemmPrecision::bf16) throw Error("gemm_to_bf16: the matrix is bf16 already");
  constexpr int64_t mr = gemm_rows_per_panel;
  const int64_t row_panels = panels(a.rows, mr);
  int64_t words = 0;
  for (int64_t block = 0; block < a.depth; block += gemm_depth_per_block)
    words += row_panels * mr * bf16_pairs(std::min(gemm_depth_per_block, a.depth - block));
  PackedMatrix packed{a.rows, a.depth, GemmPrecision::bf16,
                      Tensor::uninitialized({words}, Device::cpu, Lifetime::lasting)};
  const float* from = a.data.data();
  float* to = packed.data.data();
  // Block by block and panel by panel, both layouts in order: (k, r) -> (k / 2, r) within each.
  for (int64_t block = 0; block < a.depth; block += gemm_depth_per_block) {
    const int64_t block_depth = std::min(gemm_depth_per_block, a.depth - block);
    for (int64_t panel = 0; panel < row_panels; ++panel, from += block_depth * mr) {
      for (int64_t k = 0; k < block_depth; k += 2, to += mr) {
        for (int64_t r = 0; r < mr; ++r)
          to[r] = bf16_pair(from[k * mr + r], k + 1 < block_depth ? from[(k + 1) * mr + r] : 0.0f);
      }
    }
  }
  return packed;
#else
  (void)a;
  throw Error("bf16 products need a CPU with AVX512_BF16 and a build for it (PRISM_NATIVE=ON on such a machine)");
#endif
}

GemmBSource gemm_b_source_by_size(int64_t depth, int64_t columns) {
  return depth * columns > b_in_l2_most_floats ? GemmBSource::memory : GemmBSource::cache;
}

int64_t gemm_workspace_floats(int64_t depth, int64_t columns) {
  return std::min(depth, gemm_depth_per_block) * panels(columns, gemm_columns_per_panel) * gemm_columns_per_panel;
}

void gemm_packed(const PackedMatrix& a, const float* b, int64_t b_row_stride, int64_t columns, float* c,
                 int64_t c_row_stride, const GemmEpilogue& epilogue, float* workspace, int num_threads,
                 int64_t row_begin, int64_t row_end, const GemmColumnRuns& runs, GemmBSource b_source) {
  constexpr int64_t mr = gemm_rows_per_panel, nr = gemm_columns_per_panel;
  const int64_t row_panels = panels(a.rows, mr), column_panels = panels(columns, nr);
  if (row_end < 0) row_end = a.rows;
  const int64_t first_panel = row_begin / mr, end_panel = panels(row_end, mr);
  const bool b_from_memory =
      (b_source == GemmBSource::by_size ? gemm_b_source_by_size(a.depth, columns) : b_source) == GemmBSource::memory;
  // The precision's packing of B and micro-kernels; `panel_depth` is what a panel holds per row
  // for a block of depth d (bf16: pairs).
  const bool bf16 = a.precision == GemmPrecision::bf16;
  auto panel_depth = [bf16](int64_t d) { return bf16 ? bf16_pairs(d) : d; };
  auto pack_b = pack_b_panel;
  auto kernel_for = micro_kernel_for;
#if defined(__AVX512BF16__)
  if (bf16) {
    pack_b = pack_b_panel_bf16;
    kernel_for = micro_kernel_bf16_for;
  }
#endif
  for (int64_t block = 0; block < a.depth; block += gemm_depth_per_block) {
    const int64_t block_depth = std::min(gemm_depth_per_block, a.depth - block),
                  packed_depth = panel_depth(block_depth);
    const float* a_block = a.data.data() + panel_depth(block) * row_panels * mr;
    const bool first = block == 0, last = block + block_depth == a.depth;
    // Bias and addend join the first depth block's sums, so that each element of the addend is
    // read before that element of C is first written: the addend may be C itself. The ReLU waits
    // for the last block.
    GemmEpilogue block_part{first ? epilogue.bias : nullptr, first ? epilogue.addend : nullptr,
                            epilogue.addend_row_stride, last && epilogue.relu};
    const bool has_epilogue = block_part.bias || block_part.addend || block_part.relu;
    auto pack_panel = [&](int64_t jr) {
      pack_b(b + block * b_row_stride, b_row_stride, block_depth, jr * nr, columns, runs,
             workspace + jr * packed_depth * nr);
    };
    // Panel jr is whole and in one run: B's own rows can stand in for its packed copy.
    auto whole_panel = [&](int64_t jr) { return (jr + 1) * nr <= columns && columns_left_in_run(runs, jr * nr) >= nr; };
    auto block_product = [&](int64_t jr, int64_t ir, const PanelPrefetch& prefetch = {}, bool b_in_place = false) {
      const int64_t column = jr * nr, width = std::min(nr, columns - column), rows = std::min(mr, a.rows - ir * mr);
      const float* a_panel = a_block + ir * packed_depth * mr;
      const float* b_panel = b_in_place ? b + block * b_row_stride + run_offset(runs, column, runs.b_stride)
                                        : workspace + jr * packed_depth * nr;
      const int64_t b_step = b_in_place ? b_row_stride : nr;
      float* c_rows = c + ir * mr * c_row_stride;
      const float* addend_rows =
          block_part.addend ? block_part.addend + ir * mr * block_part.addend_row_stride : nullptr;
      // The epilogue, moved to this block of C.
      GemmEpilogue block_epilogue = block_part;
      if (block_part.bias) block_epilogue.bias += ir * mr;
      const MicroKernel kernel = kernel_for(width);
      if (columns_left_in_run(runs, column) >= width) {
        if (addend_rows) block_epilogue.addend = addend_rows + run_offset(runs, column, runs.addend_stride);
        kernel(block_depth, a_panel, b_panel, b_step, c_rows + run_offset(runs, column, runs.c_stride), c_row_stride,
               rows, width, !first, has_epilogue ? &block_epilogue : nullptr, prefetch);
        return;
      }
      // A block across runs (the end of one image and the start of the next): its C and addend
      // gathered into buffers, the block computed there, and C scattered back.
      float block_c[mr * nr], block_addend[mr * nr];
      for (int64_t r = 0; r < rows; ++r) {
        if (!first) gather_columns(c_rows, c_row_stride, runs.c_stride, runs, r, column, width, block_c + r * nr);
        if (addend_rows) {
          gather_columns(addend_rows, block_part.addend_row_stride, runs.addend_stride, runs, r, column, width,
                         block_addend + r * nr);
        }
      }
      if (addend_rows) {
        block_epilogue.addend = block_addend;
        block_epilogue.addend_row_stride = nr;
      }
      kernel(block_depth, a_panel, b_panel, b_step, block_c, nr, rows, width, !first,
             has_epilogue ? &block_epilogue : nullptr, prefetch);
      for (int64_t r = 0; r < rows; ++r) {
        scatter_columns(block_c + r * nr, c_rows, c_row_stride, runs.c_stride, runs, r, column, width);
      }
    };
    // One thread, a shallow product whose C is at least as tall as B (a 1x1 convolution that
    // widens, 64 -> 256 channels): C costs more than B, so all of B is packed first (to be read
    // again from cache for each row panel) and C is written row panel by row panel, eight rows
    // streaming along, instead of a 48-column strip of every row at a time. ResNet-50's widening
    // 1x1s at 56x56, batch 8: 3.7-4.0 -> 3.0-3.2 ms; where C was the shorter (256 -> 64), it was
    // no faster.
    if (num_threads == 1 && a.depth <= gemm_depth_per_block && a.rows >= a.depth &&
        a.depth * columns <= rows_outer_most_b_floats) {
      for (int64_t jr = 0; jr < column_panels; ++jr) pack_panel(jr);
      for (int64_t ir = first_panel; ir < end_panel; ++ir) {
        for (int64_t jr = 0; jr < column_panels; ++jr) block_product(jr, ir);
      }
      continue;
    }
    // Otherwise on one thread each B panel is packed just before its products, while it is still
    // in L1 rather than after all the others (Winograd's GEMMs, called one thread each: ResNet-50's
    // at batch 8 72 -> 67 ms, VGG-16's 396 -> 376). Several: all panels packed first, then shared
    // out.
    if (num_threads == 1) {
      // The next panel's lines, where it is a whole one in one run and B too large to have stayed
      // in L2, shared out over this one's row panels (the fp32 kernel's; bf16's fetch none).
      // ResNet-50's narrowing 1x1s at 56x56, batch 8: 4.1-4.5 -> 3.7-3.9 ms (layer1.1.conv1, 256
      // -> 64 channels), 7.1-7.3 -> 6.9-7.0 (layer2.0.conv1, 256 -> 128). For every B it cost
      // about 0.1 ms on layers whose B was in L2 (Winograd's).
      // Such a panel, fetched so, is then read in place rather than packed (fp32: bf16 packs
      // pairs of rows): the kernel's first row panel takes it from L2 as the packing did, and the
      // copy is saved. The same layers: layer1.1.conv1 3.8 -> 3.2 ms, layer2.0.conv1 6.9 -> 6.3
      // (three profiles each); at batch 1, 0.48 -> 0.37 ms and 0.84 -> 0.75. A B in L2 (fetched
      // by no one ahead of the kernel) stays packed: read in place, layer3.0.conv1 at batch 1 took
      // 0.91 ms against 0.80.
      // All of B counts, not only this depth block: at batch 8 layer2's 512 -> 128 1x1s (blocks
      // of 256 x 784 floats, 1.5 MiB of B in all) 3.2 -> 2.8 ms, layer3.0.conv1 6.1 -> 5.6.
      const int64_t lines = block_depth * lines_per_panel_row;
      const int64_t share = (lines + end_panel - first_panel - 1) / std::max<int64_t>(1, end_panel - first_panel);
      for (int64_t jr = 0; jr < column_panels; ++jr) {
        const bool in_place = b_from_memory && !bf16 && whole_panel(jr);
        if (!in_place) pack_panel(jr);
        const int64_t next = (jr + 1) * nr;
        const bool fetch_next = b_from_memory && whole_panel(jr + 1);
        for (int64_t ir = first_panel; ir < end_panel; ++ir) {
          const int64_t line = (ir - first_panel) * share;
          block_product(jr, ir,
                        fetch_next ? PanelPrefetch{b + block * b_row_stride + run_offset(runs, next, runs.b_stride),
                                                   b_row_stride, line, std::min(lines, line + share)}
                                   : PanelPrefetch{},
                        in_place);
        }
      }
      continue;
    }
#pragma omp parallel num_threads(num_threads)
    {
#pragma omp for schedule(static)
      for (int64_t jr = 0; jr < column_panels; ++jr) {
        pack_panel(jr);
      }
      // Column panels outermost: each thread keeps one packed B panel in L1 for every row panel.
#pragma omp for collapse(2) schedule(static)
      for (int64_t jr = 0; jr < column_panels; ++jr) {
        for (int64_t ir = first_panel; ir < end_panel; ++ir) block_product(jr, ir);
      }
    }
  }
}

}  // namespace prism
