// prism/prism.hpp: the whole method on captured activations: PCA of the last capture over every
// image, optional quantisation, gradual extrapolation through the earlier captures, colours.
// TorchPRISM 2.0's algorithm (Szandała), with deterministic signs; see docs/pipeline.md.
#pragma once

#include <string>
#include <vector>

#include "engine/plan.hpp"
#include "engine/tensor.hpp"
#include "prism/colours.hpp"

namespace prism {

struct PrismOptions {
  bool gradual_extrapolation = true;
  bool inclusive = false;                   // keep only colours every image shows
  bool exclusive = false;                   // keep only colours not every image shows (both: all, quantised)
  std::vector<int> components = {0, 1, 2};  // which principal components become R, G, B (0-based)
};

// What PRISM keeps while images go through the network batch by batch: the analysed (last)
// capture in full, for the PCA over all images, and of every earlier capture only its mean over
// channels. Per image that is C*h*w floats of the last capture plus H_i*W_i per earlier one.
class PrismCollector {
 public:
  // `captures` in forward order, the analysed one last; `images`: how many will be added in all.
  PrismCollector(std::vector<std::string> captures, int64_t images);

  // Takes the captures of the next images from a run whose plan tapped them all: the analysed one
  // in full, the earlier ones in full or as channel means (see request_captures).
  void add(const RunResult& result);
  // The same, taking the analysed capture over where the run holds every image at once instead of
  // copying it.
  void add(RunResult&& result);

  int64_t images_added() const { return added_; }
  const std::vector<std::string>& captures() const { return captures_; }
  const Tensor& analysed() const { return analysed_; }                 // (N, C, h, w)
  const std::vector<Tensor>& channel_means() const { return means_; }  // each (N, 1, H_i, W_i)

 private:
  std::vector<std::string> captures_;
  int64_t images_;
  int64_t added_ = 0;
  Tensor analysed_;
  std::vector<Tensor> means_;

  void add_means(const RunResult& result);
};

// Asks a plan for what PRISM needs of `captures` (forward order, the analysed one last): the
// analysed capture in full, of the earlier ones only their channel means, computed by the plan
// as soon as each is written, so no full copy of a large early activation is ever made.
void request_captures(PlanOptions& options, const std::vector<std::string>& captures);

// The quantised colours the options keep (both flags: all of them), for either backend.
ColourFilter colour_filter(const PrismOptions& options);

struct PrismResult {
  Tensor maps;                                   // (N, 3, height, width), colours in [0, 1]
  std::vector<double> explained_variance_ratio;  // every component of the PCA, largest first
  Tensor loadings;                               // (3, C) of the chosen components
};

// Runs the method on what the collector kept; maps come back at (height, width), the input
// size, resized bilinearly when the last step leaves them smaller. Captures kept in GPU memory (a
// cuda plan with outputs_on_device) are analysed on the GPU with that plan's context, and only
// the maps come back to the host.
PrismResult compute_prism(const PrismCollector& collected, const PrismOptions& options, int64_t height, int64_t width,
                          const CudaContext* cuda = nullptr);

// The GPU version (prism/cuda/prism_cuda.cpp) that compute_prism calls for GPU captures.
PrismResult compute_prism_cuda(const PrismCollector& collected, const PrismOptions& options, int64_t height,
                               int64_t width, const CudaContext& cuda);

}  // namespace prism
