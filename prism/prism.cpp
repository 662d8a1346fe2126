// prism/prism.cpp: collecting captures across batches and the order of PRISM's steps.
#include "prism/prism.hpp"

#include <cstring>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"
#include "prism/colours.hpp"
#include "prism/extrapolate.hpp"
#include "prism/pca.hpp"

namespace prism {

PrismCollector::PrismCollector(std::vector<std::string> captures, int64_t images)
    : captures_(std::move(captures)), images_(images) {
  if (captures_.empty()) throw Error("PRISM needs at least one capture point");
}

namespace {
// Copies a batch (n, ...) into rows [first, first + n) of a tensor made for every image, on the
// batch's device.
void place(Tensor& all, int64_t images, int64_t first, const Tensor& batch) {
  if (all.empty()) {
    Shape shape = batch.shape();
    shape[0] = images;
    all = batch.device() == Device::cpu ? Tensor(shape) : Tensor::uninitialized(shape, batch.device());
  }
  const int64_t per_image = batch.numel() / batch.dim(0);
  if (per_image * images != all.numel() || first + batch.dim(0) > images || all.device() != batch.device()) {
    throw Error("capture " + shape_to_string(batch.shape()) + " on " + device_name(batch.device()) +
                " does not fit the others " + shape_to_string(all.shape()) + " on " + device_name(all.device()));
  }
  if (batch.device() == Device::cuda) {
    cuda_copy(all.data() + first * per_image, batch.data(), batch.numel());
  } else {
    std::memcpy(all.data() + first * per_image, batch.data(), batch.numel() * sizeof(float));
  }
}
}  // namespace

void PrismCollector::add(const RunResult& result) {
  const Tensor& last = result.taps.at(captures_.back());
  add_means(result);
  place(analysed_, images_, added_, last);
  added_ += last.dim(0);
}

void PrismCollector::add(RunResult&& result) {
  Tensor& last = result.taps.at(captures_.back());
  if (added_ > 0 || last.dim(0) != images_) return add(static_cast<const RunResult&>(result));
  add_means(result);
  analysed_ = std::move(last);  // a copy of 64 images of ResNet-50's layer4 was 26 MB and 6-17 ms
  added_ = images_;
}

void PrismCollector::add_means(const RunResult& result) {
  if (means_.empty()) means_.resize(captures_.size() - 1);
  for (size_t i = 0; i + 1 < captures_.size(); ++i) {
    const auto reduced = result.channel_means.find(captures_[i]);
    if (reduced != result.channel_means.end()) {
      place(means_[i], images_, added_, reduced->second);
    } else {
      const Tensor& full = result.taps.at(captures_[i]);
      const Tensor on_host = full.device() == Device::cpu ? Tensor() : full.to(Device::cpu);
      place(means_[i], images_, added_, channel_mean(on_host.empty() ? full.view() : on_host.view()));
    }
  }
}

void request_captures(PlanOptions& options, const std::vector<std::string>& captures) {
  if (captures.empty()) throw Error("PRISM needs at least one capture");
  options.taps.push_back(captures.back());
  options.mean_taps.insert(options.mean_taps.end(), captures.begin(), captures.end() - 1);
}

ColourFilter colour_filter(const PrismOptions& options) {
  return options.inclusive && options.exclusive ? ColourFilter::all
         : options.inclusive                    ? ColourFilter::common
                                                : ColourFilter::unique;
}

PrismResult compute_prism(const PrismCollector& collected, const PrismOptions& options, int64_t height, int64_t width,
                          const CudaContext* cuda) {
  if (collected.images_added() == 0) throw Error("PRISM needs at least one image");
  if (options.components.size() != 3) throw Error("PRISM colours need exactly three components (R, G, B)");
  if (collected.analysed().device() == Device::cuda) {
    if (!cuda) throw Error("PRISM on captures in GPU memory needs the plan's CUDA context");
    return compute_prism_cuda(collected, options, height, width, *cuda);
  }
  PrincipalComponents pca = principal_components(collected.analysed().view(), options.components);

  // TorchPRISM quantises the analysed capture's maps, before extrapolation.
  const bool quantise = options.inclusive || options.exclusive;
  Tensor maps = quantise ? quantise_colours(pca.scores.view(), colour_filter(options)) : std::move(pca.scores);
  if (options.gradual_extrapolation) {
    maps = gradual_extrapolation(maps.view(), collected.channel_means());
    normalise_to_colours_in_place(maps.view());
  } else if (!quantise) {
    normalise_to_colours_in_place(maps.view());
  }
  if (maps.dim(2) != height || maps.dim(3) != width) maps = resize_bilinear(maps.view(), height, width);
  return {std::move(maps), std::move(pca.explained_variance_ratio), std::move(pca.loadings)};
}

}  // namespace prism
