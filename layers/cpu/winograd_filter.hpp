// layers/cpu/winograd_filter.hpp: Winograd's filter transform U = G g G^T of one 3x3 filter, in
// double, shared by F(4x4, 3x3) (layers/cpu/conv2d_winograd.cpp, G of 6 rows) and F(2x2, 3x3)
// (layers/cpu/conv2d_winograd_2x2.cpp, G of 4 rows).
#pragma once

#include <cstdint>

namespace prism {

// u = G g G^T for g, a 3x3 filter in torch's order (row by row), and G (points, 3).
template <int64_t points>
void winograd_filter_transform(const double (&transform)[points][3], const float* g, double (&u)[points][points]) {
  double gg[points][3];  // G g
  for (int64_t i = 0; i < points; ++i) {
    for (int64_t c = 0; c < 3; ++c) {
      gg[i][c] = transform[i][0] * g[c] + transform[i][1] * g[3 + c] + transform[i][2] * g[6 + c];
    }
  }
  for (int64_t i = 0; i < points; ++i) {
    for (int64_t j = 0; j < points; ++j) {
      u[i][j] = gg[i][0] * transform[j][0] + gg[i][1] * transform[j][1] + gg[i][2] * transform[j][2];
    }
  }
}

}  // namespace prism
