// prism/pca.hpp: PRISM's principal component analysis of one capture over a whole batch: every
// pixel of every image is a sample, every channel a feature.
#pragma once

#include <vector>

#include "engine/tensor.hpp"

namespace prism {

struct PrincipalComponents {
  Tensor scores;    // (N, K, H, W): each pixel's score on the requested components (U * S of an SVD)
  Tensor loadings;  // (K, C): the components' directions (columns of V), signs oriented
  // S^2 / sum S^2, largest first: every component, or when there are more than 128 (the Gram
  // matrix is larger than 128) the leading 32 (or as many as the requested components need),
  // their ratios still of the total.
  std::vector<double> explained_variance_ratio;
};

// PCA of activations (N, C, H, W) seen as an (N*H*W, C) matrix with its column means removed.
// `components` lists which to return, 0-based (0 is the largest); a component that does not
// exist (fewer samples or channels than asked for) or carries no variance comes back as zeros.
//
// Instead of an SVD of the tall matrix, the eigen-decomposition of its Gram matrix on the smaller
// side (C x C, or (N*H*W) x (N*H*W) when there are fewer samples than channels), in double
// (formed in single precision when 128 or larger). From a side of 768 on, the leading components
// come from block Krylov iteration on the centred data without forming the matrix: their variance
// ratios are then exact to 1e-5 of the first one's (a residual bound), not to rounding.
//
// Signs: an SVD may return any component negated. Each component is oriented so that the entry
// of largest absolute value in its loading vector is positive (the first such entry on a tie),
// which makes the colours the same on every run, thread count and backend.
PrincipalComponents principal_components(ConstTensorView activations, const std::vector<int>& components);

}  // namespace prism
