// weights/model_file.cpp: the HDF5 model file through HDF5's C API, with RAII handles so that
// every error path closes what it opened.
#include "weights/model_file.hpp"

#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "engine/error.hpp"
#include "engine/models/models.hpp"

namespace prism {
namespace {

// The index of the first NaN or infinity among values[0, count), or -1. Tests the exponent bits
// (all ones for both) as integers, a pass the compiler vectorises: vgg16's 138 million weights in
// about 20 ms, where std::isfinite element by element took most of a second.
int64_t first_non_finite(const float* values, int64_t count) {
  constexpr int64_t block = 4096;
  for (int64_t begin = 0; begin < count; begin += block) {
    const int64_t end = std::min(count, begin + block);
    uint32_t any = 0;
    for (int64_t i = begin; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, values + i, sizeof(bits));
      any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (any == 0) continue;
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(values[i])) return i;
    }
  }
  return -1;
}

// A NaN or an infinity would spread through every later layer and come out as black maps and
// meaningless classes; a damaged file is the likely cause, so say so when the values are read.
// `values` are the parameter's elements from `first` on.
void check_values(const std::string& path, const std::string& key, const float* values, int64_t count,
                  int64_t first = 0) {
  const int64_t first_bad = first_non_finite(values, count);
  if (first_bad < 0) return;
  throw Error(path + ": state_dict/" + key + " holds " + (std::isnan(values[first_bad]) ? "NaN" : "an infinity") +
              " (element " + std::to_string(first + first_bad) + "): the weights are damaged");
}

constexpr bool memory_is_little_endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// An HDF5 identifier that closes itself.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// HDF5 prints its own error stack to stderr by default; we report errors ourselves.
void silence_hdf5() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

class Reader {
 public:
  explicit Reader(const std::string& path)
      : path_(path), file_(open(path), H5Fclose), opened_(opened_file(file_.get())) {}

  // The size and identity of the file HDF5 has open, where its addresses count from the file's
  // first byte (no user block) and it reads it through a POSIX descriptor (HDF5's default driver);
  // all zero where not, and then no values are left in the file.
  struct Opened {
    uint64_t bytes = 0, device = 0, inode = 0;
  };
  const Opened& opened() const { return opened_; }

  bool has_attribute(const char* name) const { return H5Aexists(file_.get(), name) > 0; }

  // HDF5 1.10 copies an attribute's value out of the file without checking that the file holds
  // as many bytes as its type and size say (found by fuzz_model_file): check first.
  void check_attribute_storage(hid_t attribute, hid_t type, hssize_t count, const char* name) const {
    if (count < 0 || H5Aget_storage_size(attribute) < H5Tget_size(type) * static_cast<hsize_t>(count)) {
      fail(std::string("attribute ") + name + " is damaged");
    }
  }

  std::string string_attribute(const char* name) const {
    Handle attribute(H5Aopen(file_.get(), name, H5P_DEFAULT), H5Aclose);
    if (!attribute.valid()) fail(std::string("missing attribute ") + name);
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_STRING) fail(std::string("attribute ") + name + " is not a string");
    // One string, not an array of them: H5Aread writes every element (found by fuzz_model_file).
    Handle space(H5Aget_space(attribute.get()), H5Sclose);
    if (H5Sget_simple_extent_npoints(space.get()) != 1) fail(std::string("attribute ") + name + " is not one string");
    check_attribute_storage(attribute.get(), type.get(), 1, name);
    // Read through a memory type of our own making, so that what HDF5 writes is the size we set
    // aside whatever the file's type claims (the file's own type could say more).
    Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_cset(memory_type.get(), H5Tget_cset(type.get()));  // HDF5 does not convert ASCII and UTF-8
    if (H5Tis_variable_str(type.get()) > 0) {
      H5Tset_size(memory_type.get(), H5T_VARIABLE);
      char* text = nullptr;
      if (H5Aread(attribute.get(), memory_type.get(), &text) < 0 || text == nullptr) {
        fail(std::string("cannot read attribute ") + name);
      }
      std::string value(text);
      H5free_memory(text);
      return value;
    }
    const size_t size = H5Tget_size(type.get());
    if (size == 0 || size > (size_t{1} << 16)) fail(std::string("attribute ") + name + " is not a short string");
    H5Tset_size(memory_type.get(), size);
    std::string value(size, '\0');
    if (H5Aread(attribute.get(), memory_type.get(), value.data()) < 0) fail(std::string("cannot read attribute ") + name);
    return value.substr(0, value.find('\0'));
  }

  template <typename T>
  std::vector<T> numeric_attribute(const char* name, hid_t memory_type) const {
    Handle attribute(H5Aopen(file_.get(), name, H5P_DEFAULT), H5Aclose);
    if (!attribute.valid()) fail(std::string("missing attribute ") + name);
    Handle space(H5Aget_space(attribute.get()), H5Sclose);
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    if (count < 1 || count > 16) fail(std::string("attribute ") + name + " holds " + std::to_string(count) + " values");
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_INTEGER && H5Tget_class(type.get()) != H5T_FLOAT) {
      fail(std::string("attribute ") + name + " is not numeric");
    }
    check_attribute_storage(attribute.get(), type.get(), count, name);
    std::vector<T> values(count);
    if (H5Aread(attribute.get(), memory_type, values.data()) < 0) {
      fail(std::string("attribute ") + name + " is not numeric");
    }
    return values;
  }

  std::vector<std::string> dataset_names(const std::string& group_name) const {
    Handle group(H5Gopen2(file_.get(), group_name.c_str(), H5P_DEFAULT), H5Gclose);
    if (!group.valid()) fail("missing group " + group_name);
    H5G_info_t info;
    if (H5Gget_info(group.get(), &info) < 0) fail("cannot list group " + group_name);
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      const ssize_t length =
          H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      std::string name(static_cast<size_t>(std::max<ssize_t>(length, 0)), '\0');
      H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), length + 1, H5P_DEFAULT);
      names.push_back(name);
    }
    return names;
  }

  Shape dataset_shape(const std::string& name) const {
    Handle dataset(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.valid()) fail("cannot open dataset " + name);
    Handle space(H5Dget_space(dataset.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    std::vector<hsize_t> dims(std::max(rank, 0));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    return Shape(dims.begin(), dims.end());
  }

  Tensor read_float_dataset(const std::string& name) const {
    Handle dataset(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.valid()) fail("cannot open dataset " + name);
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    // float32, or float16 (format version 2) which HDF5 converts to float32 as it reads.
    const size_t bytes = H5Tget_size(type.get());
    if (H5Tget_class(type.get()) != H5T_FLOAT || (bytes != 4 && bytes != 2)) {
      fail("dataset " + name + " is not float32 or float16 (" + describe_type(type.get()) +
           "); convert the checkpoint again with tools/torchvision_to_h5.py");
    }
    Tensor tensor = Tensor::uninitialized(dataset_shape(name), Device::cpu, Lifetime::lasting);
    if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.data()) < 0) {
      fail("cannot read dataset " + name + " (is the file truncated?)");
    }
    return tensor;
  }

  std::vector<std::string> string_dataset(const std::string& name) const {
    Handle dataset(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.valid()) fail("cannot open dataset " + name);
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) <= 0) {
      fail("dataset " + name + " is not a list of variable-length strings");
    }
    const Shape shape = dataset_shape(name);
    if (shape.size() != 1) fail("dataset " + name + " must be one-dimensional");
    if (shape[0] > (int64_t{1} << 24)) fail("dataset " + name + " claims " + std::to_string(shape[0]) + " strings");
    std::vector<char*> texts(shape[0], nullptr);
    Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory_type.get(), H5T_VARIABLE);
    H5Tset_cset(memory_type.get(), H5T_CSET_UTF8);
    if (!texts.empty() && H5Dread(dataset.get(), memory_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, texts.data()) < 0) {
      fail("cannot read dataset " + name);
    }
    std::vector<std::string> values;
    for (char* text : texts) {
      values.emplace_back(text ? text : "");
      H5free_memory(text);
    }
    return values;
  }

  bool has_link(const std::string& name) const { return H5Lexists(file_.get(), name.c_str(), H5P_DEFAULT) > 0; }

  // Where the values of dataset `name` (of `shape`, as dataset_shape found) lie in the file, if they
  // lie there as they would in memory: little-endian float32, one contiguous run with no filter,
  // all of it inside the file. Else nothing, and read_float_dataset reads it (and says what is
  // wrong with it, if anything is).
  std::optional<uint64_t> plain_values_offset(const std::string& name, const Shape& shape) const {
    if (!memory_is_little_endian || opened_.bytes == 0) return std::nullopt;
    Handle dataset(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dataset.valid()) return std::nullopt;
    Handle type(H5Dget_type(dataset.get()), H5Tclose);
    Handle creation(H5Dget_create_plist(dataset.get()), H5Pclose);
    if (H5Tequal(type.get(), H5T_IEEE_F32LE) <= 0 || H5Pget_layout(creation.get()) != H5D_CONTIGUOUS) {
      return std::nullopt;
    }
    const haddr_t offset = H5Dget_offset(dataset.get());  // from the file's base address: no user block here
    const uint64_t bytes = static_cast<uint64_t>(shape_numel(shape)) * sizeof(float);
    if (offset == HADDR_UNDEF || bytes == 0 || H5Dget_storage_size(dataset.get()) != bytes) return std::nullopt;
    if (offset > opened_.bytes || bytes > opened_.bytes - offset) return std::nullopt;
    return offset;
  }

  [[noreturn]] void fail(const std::string& problem) const { throw Error(path_ + ": " + problem); }

 private:
  static hid_t open(const std::string& path) {
    silence_hdf5();
    if (std::FILE* probe = std::fopen(path.c_str(), "rb")) {
      std::fclose(probe);
    } else {
      throw Error(path + ": cannot open the file (does it exist, and may you read it?)");
    }
    if (H5Fis_hdf5(path.c_str()) <= 0) {
      throw Error(path + ": not an HDF5 model file; convert a checkpoint with tools/torchvision_to_h5.py");
    }
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) throw Error(path + ": the HDF5 file cannot be opened (is it truncated or corrupt?)");
    return file;
  }

  static std::string describe_type(hid_t type) {
    const size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
      case H5T_FLOAT: return "float" + std::to_string(bits);
      case H5T_INTEGER: return "int" + std::to_string(bits);
      default: return "not a number";
    }
  }

  static Opened opened_file(hid_t file) {
    Handle creation(H5Fget_create_plist(file), H5Pclose), access(H5Fget_access_plist(file), H5Pclose);
    hsize_t user_block = 0;
    if (!creation.valid() || H5Pget_userblock(creation.get(), &user_block) < 0 || user_block != 0) return {};
    void* handle = nullptr;
    struct stat status {};
    if (!access.valid() || H5Pget_driver(access.get()) != H5FD_SEC2 ||
        H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == nullptr ||
        fstat(*static_cast<const int*>(handle), &status) != 0) {
      return {};
    }
    return {static_cast<uint64_t>(status.st_size), static_cast<uint64_t>(status.st_dev),
            static_cast<uint64_t>(status.st_ino)};
  }

  std::string path_;
  Handle file_;
  Opened opened_;
};

}  // namespace

Model read_model_file(const std::string& path, ValuesInFile* left_in_file) {
  const Reader reader(path);
  if (!reader.has_attribute("format") || reader.string_attribute("format") != model_format_name) {
    reader.fail(std::string("not a prism model file (no format attribute '") + model_format_name +
                "'); convert a checkpoint with tools/torchvision_to_h5.py");
  }
  const int version = reader.numeric_attribute<int>("format_version", H5T_NATIVE_INT).at(0);
  if (version > model_format_version) {
    reader.fail("format version " + std::to_string(version) + " is newer than this build reads (" +
                std::to_string(model_format_version) + "); update prism");
  }
  if (version < 1) reader.fail("invalid format version " + std::to_string(version));

  Model model;
  model.path = path;
  const std::string architecture = reader.string_attribute("architecture");
  if (!is_architecture(architecture)) {
    std::string known;
    for (const std::string& name : architecture_names()) known += " " + name;
    reader.fail("unknown architecture '" + architecture + "'; this build knows:" + known);
  }
  // The classifier's shape says how many classes the weights were trained for.
  const std::string classifier_key = "state_dict/" + classifier_weight_key(architecture);
  if (!reader.has_link(classifier_key)) reader.fail("missing " + classifier_weight_key(architecture));
  const Shape classifier_shape = reader.dataset_shape(classifier_key);
  if (classifier_shape.size() != 2 || classifier_shape[0] <= 0) {
    reader.fail(classifier_weight_key(architecture) + " has shape " + shape_to_string(classifier_shape) +
                ", expected (classes, features)");
  }
  const int64_t num_classes = classifier_shape[0];
  const int64_t declared = reader.numeric_attribute<int64_t>("num_classes", H5T_NATIVE_INT64).at(0);
  if (declared != num_classes) {
    reader.fail("num_classes says " + std::to_string(declared) + " but " + classifier_weight_key(architecture) +
                " has " + std::to_string(num_classes) + " rows");
  }
  model.graph = build_architecture(architecture, num_classes);

  std::map<std::string, Shape> shapes;
  for (const std::string& key : reader.dataset_names("state_dict")) {
    shapes[key] = reader.dataset_shape("state_dict/" + key);
  }
  check_parameters(model.graph, shapes, path);
  if (left_in_file) {
    left_in_file->device = reader.opened().device;
    left_in_file->inode = reader.opened().inode;
  }
  for (const auto& [key, shape] : shapes) {
    if (left_in_file) {
      if (const std::optional<uint64_t> offset = reader.plain_values_offset("state_dict/" + key, shape)) {
        left_in_file->offsets.emplace(key, *offset);
        model.parameters.emplace(key, Tensor::uninitialized(shape, Device::cpu, Lifetime::lasting));
        continue;
      }
    }
    Tensor tensor = reader.read_float_dataset("state_dict/" + key);
    check_values(path, key, tensor.data(), tensor.numel());
    model.parameters.emplace(key, std::move(tensor));
  }

  const std::vector<int64_t> input_size = reader.numeric_attribute<int64_t>("input_size", H5T_NATIVE_INT64);
  const std::vector<float> mean = reader.numeric_attribute<float>("mean", H5T_NATIVE_FLOAT);
  const std::vector<float> std = reader.numeric_attribute<float>("std", H5T_NATIVE_FLOAT);
  if (input_size.size() != 2 || mean.size() != 3 || std.size() != 3) {
    reader.fail("input_size must hold 2 values and mean and std 3 each");
  }
  model.preprocessing.input_height = input_size[0];
  model.preprocessing.input_width = input_size[1];
  for (int c = 0; c < 3; ++c) {
    if (!(std[c] > 0.0f)) reader.fail("std values must be positive");
    model.preprocessing.mean[c] = mean[c];
    model.preprocessing.std[c] = std[c];
  }
  if (reader.has_link("labels")) {
    model.labels = reader.string_dataset("labels");
    if (static_cast<int64_t>(model.labels.size()) != num_classes) {
      reader.fail("labels holds " + std::to_string(model.labels.size()) + " names for " + std::to_string(num_classes) +
                  " classes");
    }
  }
  if (reader.has_attribute("weights_source")) model.weights_source = reader.string_attribute("weights_source");
  if (reader.has_attribute("colour")) {
    const std::string colour = reader.string_attribute("colour");
    if (colour != "grey" && colour != "rgb") reader.fail("colour must be 'grey' or 'rgb', not '" + colour + "'");
    model.preprocessing.grey = colour == "grey";
  }
  if (reader.has_attribute("test_accuracy")) {
    model.recorded_accuracy = reader.numeric_attribute<double>("test_accuracy", H5T_NATIVE_DOUBLE).at(0);
  }
  return model;
}

void read_values_in_file(int fd, const std::string& path, const std::string& key, uint64_t offset, uint64_t bytes,
                         float* to) {
  // A MiB at a time, each checked while it is still in cache rather than all 553 MB of vgg16's
  // read back from memory afterwards (its whole load in one process, alternating with an
  // in-process read: 0.30-0.35 -> 0.26-0.28 s).
  constexpr uint64_t chunk_bytes = uint64_t{1} << 20;
  char* into = reinterpret_cast<char*>(to);
  for (uint64_t begin = 0; begin < bytes; begin += chunk_bytes) {
    const uint64_t end = std::min(bytes, begin + chunk_bytes);
    for (uint64_t done = begin; done < end;) {
      const ssize_t got = ::pread(fd, into + done, end - done, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) throw Error(path + ": cannot read dataset state_dict/" + key + " (is the file truncated?)");
      done += static_cast<uint64_t>(got);
    }
    const int64_t first = static_cast<int64_t>(begin / sizeof(float));
    check_values(path, key, to + first, static_cast<int64_t>((end - begin) / sizeof(float)), first);
  }
}

std::map<std::string, Tensor> read_tensor_group(const std::string& path, const std::string& group) {
  const Reader reader(path);
  std::map<std::string, Tensor> tensors;
  for (const std::string& name : reader.dataset_names(group)) {
    tensors.emplace(name, reader.read_float_dataset(group + "/" + name));
  }
  return tensors;
}

namespace {

void write_string_attribute(hid_t target, const char* name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attribute(H5Acreate2(target, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const char* text = value.c_str();
  if (H5Awrite(attribute.get(), type.get(), &text) < 0) throw Error(std::string("cannot write attribute ") + name);
}

// count 0: a scalar (one value in a scalar dataspace, as h5py writes a Python number); otherwise a
// one-dimensional array of count values.
void write_array_attribute(hid_t target, const char* name, hid_t file_type, hid_t memory_type, const void* values,
                           hsize_t count) {
  Handle space(count == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &count, nullptr), H5Sclose);
  Handle attribute(H5Acreate2(target, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (H5Awrite(attribute.get(), memory_type, values) < 0) throw Error(std::string("cannot write attribute ") + name);
}

}  // namespace

namespace {

void write_model_contents(const Model& model, const std::string& path, hid_t root, int version) {
  write_string_attribute(root, "format", model_format_name);
  write_array_attribute(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version, 0);
  write_string_attribute(root, "architecture", model.graph.architecture);
  const int64_t num_classes = model.num_classes();
  write_array_attribute(root, "num_classes", H5T_STD_I64LE, H5T_NATIVE_INT64, &num_classes, 0);
  const int64_t input_size[2] = {model.preprocessing.input_height, model.preprocessing.input_width};
  write_array_attribute(root, "input_size", H5T_STD_I64LE, H5T_NATIVE_INT64, input_size, 2);
  write_array_attribute(root, "mean", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, model.preprocessing.mean.data(), 3);
  write_array_attribute(root, "std", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, model.preprocessing.std.data(), 3);
  write_string_attribute(root, "weights_source", model.weights_source);
  if (version >= 2) {
    write_string_attribute(root, "colour", model.preprocessing.grey ? "grey" : "rgb");
    if (model.recorded_accuracy >= 0) {
      write_array_attribute(root, "test_accuracy", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &model.recorded_accuracy, 0);
    }
  }

  if (!model.labels.empty()) {
    Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    const hsize_t count = model.labels.size();
    Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
    Handle dataset(H5Dcreate2(root, "labels", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose);
    std::vector<const char*> texts;
    for (const std::string& label : model.labels) texts.push_back(label.c_str());
    if (H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, texts.data()) < 0) {
      throw Error(path + ": cannot write labels");
    }
  }
  Handle group(H5Gcreate2(root, "state_dict", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  for (const auto& [key, tensor] : model.parameters) {
    std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
    Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Handle dataset(
        H5Dcreate2(group.get(), key.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose);
    if (!dataset.valid() ||
        H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.data()) < 0) {
      throw Error(path + ": cannot write dataset " + key + " (is the disk full?)");
    }
  }
}

}  // namespace

void write_model_file(const Model& model, const std::string& path, int format_version) {
  silence_hdf5();
  const std::string temporary = path + ".partial";
  try {
    {
      Handle file(H5Fcreate(temporary.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
      if (!file.valid()) throw Error(path + ": cannot create the file (does the folder exist, is it writable?)");
      const int version = format_version != 0                                        ? format_version
                          : model.preprocessing.grey || model.recorded_accuracy >= 0 ? 2
                                                                                     : 1;
      write_model_contents(model, path, file.get(), version);
      if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) throw Error(path + ": cannot write the file (is the disk full?)");
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0)
      throw Error(path + ": cannot move the finished file into place");
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
}

}  // namespace prism
