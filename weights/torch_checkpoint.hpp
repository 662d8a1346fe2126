// weights/torch_checkpoint.hpp: reading what torch.save wrote, without Python: the zip archive
// of PyTorch 1.6 and later (data.pkl plus one record per storage, read with libzip) and the
// legacy format before it (pickles and raw storages in a row, as torchvision's 2017 ImageNet
// weights still are). The pickle goes through the restricted unpickler (weights/pickle.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace prism {

struct TorchStateDict {
  // Every floating-point entry as float32 (float16, bfloat16 and float64 converted), by key,
  // with DataParallel's "module." prefix removed.
  std::map<std::string, Tensor> tensors;
  std::vector<std::string> skipped;  // integer entries (BatchNorm's num_batches_tracked)
  std::string found_in;              // "" for a bare state_dict, else the entry it came from ("state_dict")
};

// Reads the state_dict of a checkpoint file: a state_dict itself, or a dict holding one under
// "state_dict", "model" or "model_state_dict" (a training checkpoint), possibly nested. Throws
// prism::Error naming the file and the problem for anything else: not a checkpoint, truncated,
// records that do not fit, shapes that do not fit their storage, or a pickle that asks for
// anything beyond a state_dict's needs.
TorchStateDict read_torch_checkpoint(const std::string& path);

// The same from bytes in memory (the fuzzing target); `name` stands for the file in messages.
TorchStateDict read_torch_checkpoint_bytes(const uint8_t* data, size_t size, const std::string& name);

}  // namespace prism
