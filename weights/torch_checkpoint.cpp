// weights/torch_checkpoint.cpp: torch.save's two file formats, the state_dict inside them, and
// its tensors rebuilt from their storages (offsets, strides, shared storages) as float32.
#include "weights/torch_checkpoint.hpp"

#include <zip.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/error.hpp"
#include "weights/pickle.hpp"

namespace prism {
namespace {

constexpr uint64_t largest_pickle_bytes = uint64_t{256} << 20;
constexpr int largest_nesting = 8;  // training dicts hold the state_dict one or two levels down

// The bytes of one storage, however the format keeps them.
class StorageBytes {
 public:
  virtual ~StorageBytes() = default;
  // Copies the storage's bytes, exactly `bytes` of them, to `destination`, or throws an Error
  // naming the record.
  virtual void read(const PickledStorage& storage, uint64_t bytes, uint8_t* destination) = 0;
  // Throws unless the storage is there and holds exactly `bytes` bytes (before memory is set aside).
  virtual void check(const PickledStorage& storage, uint64_t bytes) = 0;
};

// --- the zip format (PyTorch 1.6 and later) ---

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
using ZipArchive = std::unique_ptr<zip_t, ZipCloser>;

class ZipCheckpoint : public StorageBytes {
 public:
  ZipCheckpoint(ZipArchive archive, std::string name) : archive_(std::move(archive)), name_(std::move(name)) {
    // The pickle is PREFIX/data.pkl, the storages PREFIX/data/KEY; PREFIX is the archive's name.
    const zip_int64_t entries = zip_get_num_entries(archive_.get(), 0);
    for (zip_int64_t i = 0; i < entries; ++i) {
      const char* entry = zip_get_name(archive_.get(), static_cast<zip_uint64_t>(i), 0);
      if (!entry) continue;
      const std::string path = entry;
      const size_t slash = path.find('/');
      if (slash != std::string::npos && path.substr(slash) == "/data.pkl") {
        prefix_ = path.substr(0, slash + 1);
        break;
      }
    }
    if (prefix_.empty()) throw Error(name_ + ": a zip archive without data.pkl: not a PyTorch checkpoint");
    if (has(prefix_ + "byteorder")) {
      const std::vector<uint8_t> order = record(prefix_ + "byteorder", 16);
      if (std::string(order.begin(), order.end()) != "little") {
        throw Error(name_ + ": saved on a big-endian machine, which prism does not read");
      }
    }
  }

  std::vector<uint8_t> pickle() { return record(prefix_ + "data.pkl", largest_pickle_bytes); }

  void check(const PickledStorage& storage, uint64_t bytes) override {
    const std::string path = prefix_ + "data/" + storage.key;
    if (!has(path)) throw Error(name_ + ": the storage record " + path + " is missing");
    const uint64_t size = record_size(path, UINT64_MAX);
    if (size != bytes) {
      throw Error(name_ + ": the storage record " + path + " holds " + std::to_string(size) +
                  " bytes; its tensors need " + std::to_string(bytes));
    }
  }

  void read(const PickledStorage& storage, uint64_t bytes, uint8_t* destination) override {
    check(storage, bytes);
    read_record(prefix_ + "data/" + storage.key, destination, bytes);
  }

 private:
  bool has(const std::string& path) const { return zip_name_locate(archive_.get(), path.c_str(), 0) >= 0; }

  // A record's size, refused when it claims more than `limit` bytes or far more than it occupies
  // compressed (torch stores records uncompressed; a large ratio is a decompression bomb).
  uint64_t record_size(const std::string& path, uint64_t limit) {
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat(archive_.get(), path.c_str(), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE)) {
      throw Error(name_ + ": cannot read the record " + path + ": " + zip_strerror(archive_.get()));
    }
    const uint64_t compressed = stat.valid & ZIP_STAT_COMP_SIZE ? stat.comp_size : stat.size;
    if (stat.size > limit || stat.size > compressed * 1100 + 4096) {
      throw Error(name_ + ": the record " + path + " claims " + std::to_string(stat.size) + " bytes, more than it can hold");
    }
    return stat.size;
  }

  void read_record(const std::string& path, uint8_t* destination, uint64_t size) {
    zip_file_t* file = zip_fopen(archive_.get(), path.c_str(), 0);
    if (!file) throw Error(name_ + ": cannot open the record " + path + ": " + zip_strerror(archive_.get()));
    uint64_t total = 0;
    while (total < size) {
      const zip_int64_t got = zip_fread(file, destination + total, size - total);
      if (got <= 0) break;
      total += static_cast<uint64_t>(got);
    }
    const std::string problem = total == size ? "" : zip_file_strerror(file);
    zip_fclose(file);
    if (total != size) throw Error(name_ + ": the record " + path + " is damaged or truncated (" + problem + ")");
  }

  std::vector<uint8_t> record(const std::string& path, uint64_t limit) {
    std::vector<uint8_t> data(record_size(path, limit));
    read_record(path, data.data(), data.size());
    return data;
  }

  ZipArchive archive_;
  std::string name_;
  std::string prefix_;
};

std::string zip_problem(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string text = zip_error_strerror(&error);
  zip_error_fini(&error);
  return text;
}

// --- the legacy format (before PyTorch 1.6): five pickles, then each storage as an 8-byte
// element count and its raw bytes, in the order the fifth pickle lists their keys ---

class LegacyCheckpoint : public StorageBytes {
 public:
  LegacyCheckpoint(const uint8_t* data, size_t size, std::string name) : data_(data), size_(size), name_(std::move(name)) {}

  PickleProgram load() {
    size_t at = 0;
    auto next = [&] {
      size_t end = 0;
      PickleProgram program = unpickle(data_ + at, size_ - at, name_, &end);
      at += end;
      return program;
    };
    const PickleProgram magic = next();
    static const uint8_t legacy_magic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    const PickleValue& number = magic.at(magic.root);
    if (number.kind != PickleValue::Kind::big_integer ||
        number.text != std::string(reinterpret_cast<const char*>(legacy_magic), sizeof(legacy_magic))) {
      throw Error(name_ + ": not a PyTorch checkpoint (no legacy magic number)");
    }
    const PickleProgram protocol = next();
    if (protocol.at(protocol.root).kind != PickleValue::Kind::integer || protocol.at(protocol.root).integer != 1001) {
      throw Error(name_ + ": a legacy checkpoint of an unknown protocol version");
    }
    const PickleProgram info = next();
    if (info.at(info.root).kind == PickleValue::Kind::dict) {
      const int little = info.find(info.root, "little_endian");
      if (little >= 0 && info.at(little).kind == PickleValue::Kind::boolean && !info.at(little).boolean) {
        throw Error(name_ + ": saved on a big-endian machine, which prism does not read");
      }
    }
    PickleProgram object = next();
    const PickleProgram keys = next();
    if (keys.at(keys.root).kind != PickleValue::Kind::list) throw Error(name_ + ": damaged (no list of storages)");
    // Element sizes come from the object's storage types.
    std::map<std::string, int> element_bytes;
    for (const PickledStorage& storage : object.storages) element_bytes[storage.key] = storage_element_bytes(storage.type);
    for (int key_index : keys.at(keys.root).items) {
      const PickleValue& key = keys.at(key_index);
      const auto bytes = element_bytes.find(key.text);
      if (key.kind != PickleValue::Kind::string || bytes == element_bytes.end()) {
        throw Error(name_ + ": damaged (a storage no tensor uses)");
      }
      if (size_ - at < 8) throw Error(name_ + ": truncated: storage " + key.text + " is missing");
      uint64_t numel = 0;
      for (int i = 7; i >= 0; --i) numel = numel << 8 | data_[at + i];
      at += 8;
      if (numel > (size_ - at) / static_cast<uint64_t>(bytes->second)) {
        throw Error(name_ + ": truncated: storage " + key.text + " needs " + std::to_string(numel) + " elements");
      }
      located_[key.text] = {at, numel};
      at += numel * bytes->second;
    }
    return object;
  }

  void check(const PickledStorage& storage, uint64_t bytes) override {
    const auto found = located_.find(storage.key);
    if (found == located_.end()) throw Error(name_ + ": storage " + storage.key + " is missing");
    const uint64_t numel = found->second.second;
    if (numel != static_cast<uint64_t>(storage.numel) || numel * storage_element_bytes(storage.type) != bytes) {
      throw Error(name_ + ": storage " + storage.key + " holds " + std::to_string(numel) + " elements, its tensors say " +
                  std::to_string(storage.numel));
    }
  }

  void read(const PickledStorage& storage, uint64_t bytes, uint8_t* destination) override {
    check(storage, bytes);
    std::memcpy(destination, data_ + located_.at(storage.key).first, bytes);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> located_;  // key -> (offset, numel)
};

// --- from storages to float32 tensors ---

float half_to_float(uint16_t bits) {
  const uint32_t sign = bits >> 15, exponent = bits >> 10 & 0x1f, mantissa = bits & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  const uint32_t out = sign << 31 | (exponent == 0x1f ? 0xffu << 23 : (exponent + 112) << 23) | mantissa << 13;
  float value;
  std::memcpy(&value, &out, sizeof(value));
  return value;
}

float float32_at(const uint8_t* p) {
  float value;
  std::memcpy(&value, p, 4);
  return value;
}
float float16_at(const uint8_t* p) { return half_to_float(static_cast<uint16_t>(p[0] | p[1] << 8)); }
float bfloat16_at(const uint8_t* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0] | p[1] << 8) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
float float64_at(const uint8_t* p) {
  double value;
  std::memcpy(&value, p, 8);
  return static_cast<float>(value);
}

// How to read one element of a floating-point storage type as float32.
using ElementReader = float (*)(const uint8_t*);
ElementReader element_reader(const std::string& type) {
  if (type == "HalfStorage") return float16_at;
  if (type == "BFloat16Storage") return bfloat16_at;
  if (type == "DoubleStorage") return float64_at;
  return float32_at;
}

bool is_floating(const std::string& type) {
  return type == "FloatStorage" || type == "HalfStorage" || type == "BFloat16Storage" || type == "DoubleStorage";
}

// The tensor's elements in row-major order, after checking that every one lies in its storage.
// Throws unless every element of the tensor lies in its storage; returns its element count.
int64_t checked_numel(const PickledTensor& tensor, const PickledStorage& storage, const std::string& name,
                      const std::string& key) {
  auto bad = [&](const std::string& what) { return Error(name + ": tensor " + key + " " + what); };
  constexpr int64_t largest = int64_t{1} << 40;
  if (tensor.offset < 0) throw bad("has a negative storage offset");
  int64_t numel = 1, last = tensor.offset;
  for (size_t d = 0; d < tensor.sizes.size(); ++d) {
    if (tensor.sizes[d] < 0 || tensor.sizes[d] > largest || tensor.strides[d] < 0 || tensor.strides[d] > largest) {
      throw bad("has an impossible size or stride " + shape_to_string(tensor.sizes) + " / " +
                shape_to_string(tensor.strides));
    }
    if (tensor.sizes[d] > 0 && numel > largest / tensor.sizes[d]) {
      throw bad("is impossibly large " + shape_to_string(tensor.sizes));
    }
    numel *= tensor.sizes[d];
    if (tensor.sizes[d] > 0) last += (tensor.sizes[d] - 1) * tensor.strides[d];
  }
  if (numel > 0 && last >= storage.numel) {
    throw bad(shape_to_string(tensor.sizes) + " reaches element " + std::to_string(last) + " of a storage of " +
              std::to_string(storage.numel));
  }
  return numel;
}

// Row-major strides (dimensions of size 1 may have any): the elements lie in one run.
bool is_contiguous(const PickledTensor& tensor) {
  int64_t expected = 1;
  for (int64_t d = static_cast<int64_t>(tensor.sizes.size()) - 1; d >= 0; --d) {
    if (tensor.sizes[d] != 1 && tensor.strides[d] != expected) return false;
    expected *= tensor.sizes[d];
  }
  return true;
}

// The tensor's elements in row-major order from its storage's bytes, as float32.
Tensor rebuild(const PickledTensor& tensor, const PickledStorage& storage, const uint8_t* bytes, int64_t numel) {
  const int element = storage_element_bytes(storage.type);
  Tensor out = Tensor::uninitialized(tensor.sizes);
  if (is_contiguous(tensor) && storage.type == "FloatStorage") {
    std::memcpy(out.data(), bytes + tensor.offset * element, static_cast<size_t>(numel) * 4);
    return out;
  }
  const ElementReader read = element_reader(storage.type);
  std::vector<int64_t> index(tensor.sizes.size(), 0);
  int64_t at = tensor.offset;  // storage element of the current index
  for (int64_t i = 0; i < numel; ++i) {
    out.data()[i] = read(bytes + at * element);
    for (int d = static_cast<int>(index.size()) - 1; d >= 0; --d) {  // the next index, last dimension fastest
      at += tensor.strides[d];
      if (++index[d] < tensor.sizes[d]) break;
      at -= tensor.strides[d] * tensor.sizes[d];
      index[d] = 0;
    }
  }
  return out;
}

// The dict that holds the tensors: the root, or one found under a training checkpoint's keys.
int find_state_dict(const PickleProgram& program, const std::string& name, std::string& found_in) {
  int dict = program.root;
  for (int level = 0; level <= largest_nesting; ++level) {
    const PickleValue& value = program.at(dict);
    if (value.kind != PickleValue::Kind::dict) throw Error(name + ": holds no state_dict (the pickle is not a dict)");
    // A training checkpoint's entry first (it may hold other tensors, such as a best accuracy),
    // as the Python converter does; otherwise a dict with tensors is the state_dict.
    int next = -1;
    for (const char* key : {"state_dict", "model", "model_state_dict"}) {
      next = program.find(dict, key);
      if (next >= 0 && program.at(next).kind == PickleValue::Kind::dict) {
        found_in += (found_in.empty() ? "" : ".") + std::string(key);
        break;
      }
      next = -1;
    }
    if (next < 0) {
      for (const auto& entry : value.entries) {
        if (program.at(entry.second).kind == PickleValue::Kind::tensor) return dict;
      }
    }
    if (next < 0) {
      std::string keys;
      for (const auto& entry : value.entries) {
        if (program.at(entry.first).kind == PickleValue::Kind::string && keys.size() < 200) {
          keys += (keys.empty() ? "" : ", ") + program.at(entry.first).text;
        }
      }
      throw Error(name + ": holds no state_dict: a dict without tensors and without a state_dict, model or "
                  "model_state_dict entry (its keys: " + keys + ")");
    }
    dict = next;
  }
  throw Error(name + ": holds no state_dict within " + std::to_string(largest_nesting) + " levels");
}

TorchStateDict collect(const PickleProgram& program, StorageBytes& storages, const std::string& name) {
  TorchStateDict result;
  const int dict = find_state_dict(program, name, result.found_in);
  // key -> tensor, grouped by storage so that each storage is read once and then let go.
  std::map<int, std::vector<std::pair<std::string, int>>> by_storage;
  for (const auto& [key_index, value_index] : program.at(dict).entries) {
    const PickleValue& key = program.at(key_index);
    const PickleValue& value = program.at(value_index);
    if (key.kind != PickleValue::Kind::string) throw Error(name + ": the state_dict has a key that is not a string");
    std::string clean = key.text.rfind("module.", 0) == 0 ? key.text.substr(7) : key.text;  // DataParallel
    if (value.kind != PickleValue::Kind::tensor) throw Error(name + ": state_dict entry " + key.text + " is not a tensor");
    const PickledTensor& tensor = program.tensors.at(value.tensor);
    if (!is_floating(program.storages.at(tensor.storage).type)) {
      result.skipped.push_back(clean);
      continue;
    }
    if (result.tensors.count(clean)) throw Error(name + ": the state_dict has " + clean + " twice");
    result.tensors.emplace(clean, Tensor());
    by_storage[tensor.storage].emplace_back(clean, value.tensor);
  }
  if (result.tensors.empty()) throw Error(name + ": the state_dict holds no floating-point tensors");
  for (const auto& [storage_index, tensors] : by_storage) {
    const PickledStorage& storage = program.storages.at(storage_index);
    const uint64_t bytes = static_cast<uint64_t>(storage.numel) * storage_element_bytes(storage.type);
    std::vector<int64_t> counts;
    for (const auto& [key, tensor] : tensors) counts.push_back(checked_numel(program.tensors.at(tensor), storage, name, key));
    storages.check(storage, bytes);  // before any memory is set aside for it
    const PickledTensor& first = program.tensors.at(tensors[0].second);
    if (tensors.size() == 1 && storage.type == "FloatStorage" && first.offset == 0 && counts[0] == storage.numel &&
        is_contiguous(first)) {
      // The usual case: one float32 tensor filling its storage, read straight into place.
      Tensor& out = result.tensors[tensors[0].first] = Tensor::uninitialized(first.sizes);
      storages.read(storage, bytes, reinterpret_cast<uint8_t*>(out.data()));
      continue;
    }
    const std::unique_ptr<uint8_t[]> data(new uint8_t[std::max<uint64_t>(bytes, 1)]);
    storages.read(storage, bytes, data.get());
    for (size_t i = 0; i < tensors.size(); ++i) {
      result.tensors[tensors[i].first] = rebuild(program.tensors.at(tensors[i].second), storage, data.get(), counts[i]);
    }
  }
  return result;
}

enum class Format { zip, legacy, unknown };

Format format_of(const uint8_t* head, size_t size) {
  if (size >= 4 && head[0] == 'P' && head[1] == 'K') return Format::zip;
  if (size >= 4 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a && head[3] == 0x0a) return Format::legacy;
  return Format::unknown;
}

Error not_a_checkpoint(const std::string& name) {
  return Error(name + ": not a PyTorch checkpoint (neither the zip archive torch.save writes since PyTorch 1.6 nor "
               "the legacy format before it)");
}

TorchStateDict from_zip(ZipArchive archive, const std::string& name) {
  ZipCheckpoint checkpoint(std::move(archive), name);
  const std::vector<uint8_t> pickle = checkpoint.pickle();
  const PickleProgram program = unpickle(pickle.data(), pickle.size(), name + " (data.pkl)");
  return collect(program, checkpoint, name);
}

TorchStateDict from_legacy(const uint8_t* data, size_t size, const std::string& name) {
  LegacyCheckpoint checkpoint(data, size, name);
  const PickleProgram program = checkpoint.load();
  return collect(program, checkpoint, name);
}

}  // namespace

TorchStateDict read_torch_checkpoint(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw Error(path + ": no such file");
  if (std::filesystem::is_directory(path, error)) throw Error(path + ": a folder, not a checkpoint file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open the file (permissions?)");
  uint8_t head[4] = {};
  file.read(reinterpret_cast<char*>(head), 4);
  switch (format_of(head, static_cast<size_t>(file.gcount()))) {
    case Format::zip: {
      int code = 0;
      zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
      if (!archive) throw Error(path + ": a damaged or truncated zip archive (" + zip_problem(code) + ")");
      return from_zip(ZipArchive(archive), path);
    }
    case Format::legacy: {
      file.seekg(0, std::ios::end);
      std::vector<uint8_t> data(static_cast<size_t>(file.tellg()));
      file.seekg(0);
      if (!file.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()))) {
        throw Error(path + ": cannot read the file");
      }
      return from_legacy(data.data(), data.size(), path);
    }
    case Format::unknown: break;
  }
  throw not_a_checkpoint(path);
}

TorchStateDict read_torch_checkpoint_bytes(const uint8_t* data, size_t size, const std::string& name) {
  switch (format_of(data, size)) {
    case Format::zip: {
      zip_error_t error;
      zip_error_init(&error);
      zip_source_t* source = zip_source_buffer_create(data, size, 0, &error);
      if (!source) throw Error(name + ": cannot read the archive");
      zip_t* archive = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
      if (!archive) {
        zip_source_free(source);
        const std::string problem = zip_error_strerror(&error);
        zip_error_fini(&error);
        throw Error(name + ": a damaged or truncated zip archive (" + problem + ")");
      }
      zip_error_fini(&error);
      return from_zip(ZipArchive(archive), name);
    }
    case Format::legacy: return from_legacy(data, size, name);
    case Format::unknown: break;
  }
  throw not_a_checkpoint(name);
}

}  // namespace prism
