// weights/pickle.hpp: a restricted unpickler for the pickles torch.save writes, written for
// safety rather than generality. A pickle is a program: Python's own unpickler imports and calls
// whatever it names, so loading an untrusted checkpoint with it runs the author's code. This one
// knows only the opcodes a state_dict needs and only these globals: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 and _rebuild_parameter, and torch's storage types. Anything
// else is refused with an Error naming it, before anything is called (nothing ever is: the
// globals are recognised by name and rebuilt here as plain values).
//
// Values live in one arena and refer to each other by index, so a hostile pickle can make cycles
// or deep nesting without leaking memory or exhausting the stack; everything that walks the
// values is iterative or depth-bounded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.hpp"

namespace prism {

// A storage named by a persistent id: ('storage', torch.FloatStorage, key, location, numel).
struct PickledStorage {
  std::string type;  // "FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage", ...
  std::string key;   // its record: data/KEY in a zip checkpoint
  int64_t numel = 0;
};

// A tensor as _rebuild_tensor_v2 describes it: a strided view of a storage.
struct PickledTensor {
  int storage = -1;  // index into PickleProgram::storages
  int64_t offset = 0;
  Shape sizes, strides;
};

struct PickleValue {
  enum class Kind { none, boolean, integer, big_integer, floating, string, tuple, list, dict, global, tensor };
  Kind kind = Kind::none;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0.0;
  std::string text;                       // string; global "module.name"; big_integer's little-endian bytes
  std::vector<int> items;                 // tuple, list: value indices
  std::vector<std::pair<int, int>> entries;  // dict: (key, value) indices, in insertion order
  int tensor = -1;                        // tensor: index into PickleProgram::tensors
};

struct PickleProgram {
  std::vector<PickleValue> values;
  std::vector<PickledStorage> storages;
  std::vector<PickledTensor> tensors;
  int root = -1;

  const PickleValue& at(int index) const { return values.at(index); }
  // The value of `key` in a dict with string keys; -1 when absent.
  int find(int dict, const std::string& key) const;
};

// Runs the pickle in [data, data + size) up to its STOP opcode; `source` names the file in
// errors. `end`, when given, receives the offset just after STOP (a legacy checkpoint is several
// pickles in a row).
PickleProgram unpickle(const uint8_t* data, size_t size, const std::string& source, size_t* end = nullptr);

// Bytes per element of a storage type, or 0 for a type that is not one of torch's.
int storage_element_bytes(const std::string& type);

}  // namespace prism
