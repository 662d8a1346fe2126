// weights/model_file.hpp: the HDF5 model file (docs/model-format.md): reading it into a Model
// with every check a user needs, writing one, and reading plain tensor groups (test references).
// HDF5 is included here and nowhere else.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "engine/model.hpp"

namespace prism {

constexpr const char* model_format_name = "prism-model";
// Version 1: float32 tensors. Version 2 adds float16 tensors (converted to float32 on reading)
// and the optional `colour` and `test_accuracy` attributes. This build reads both.
constexpr int model_format_version = 2;

// Parameters whose values were left in the file, and which file that was.
struct ValuesInFile {
  // state_dict key -> the byte offset in the file of its values, stored there as they lie in memory
  // (little-endian float32, contiguous).
  std::map<std::string, uint64_t> offsets;
  // The file read (fstat's st_dev and st_ino), so that whoever reads the values can check that its
  // own descriptor is of the same file, not of one renamed into its place since.
  uint64_t device = 0, inode = 0;
};

// Reads and checks a model file: an HDF5 file of this format and a version this build reads, a
// known architecture, and exactly its state_dict (names, shapes, float32). Throws prism::Error
// naming the file and the problem. With `left_in_file`, every parameter whose values lie in the
// file as they would in memory (how both converters write them) is shaped but not read or
// checked: its offset goes into left_in_file->offsets, for read_values_in_file.
Model read_model_file(const std::string& path, ValuesInFile* left_in_file = nullptr);

// Reads `bytes` of values from `offset` in the open file `fd` into `to`, then checks them as
// read_model_file does (a NaN or an infinity means damaged weights); `path` and `key` name the
// file and the parameter in the errors.
void read_values_in_file(int fd, const std::string& path, const std::string& key, uint64_t offset, uint64_t bytes,
                         float* to);

// read_model_file in a forked child process (weights/model_file_isolated.cpp), for files from
// anywhere: Debian 12's HDF5 library can crash or corrupt memory on damaged files, and then only
// the child is lost. The same model or the same error as read_model_file, or an error naming
// the file when the child dies. `read` is what the child runs (tests give one that crashes).
// The parameters' values: by default the child leaves those it can in the file and this process
// reads them from there itself (plain bytes at offsets the child found: no HDF5 here), and the
// rest (float16 ones, say) are copied out of the child's memory. That copy, or the values coming
// through the socket with everything else where the system does not allow it, can be asked for
// with every value, for tests to check those ways too.
enum class IsolatedValues { from_file_where_plain, from_child_memory, through_socket };
using ModelFileReader = std::function<Model(const std::string& path, ValuesInFile* left_in_file)>;
Model read_model_file_isolated(const std::string& path, const ModelFileReader& read = read_model_file,
                               IsolatedValues values = IsolatedValues::from_file_where_plain);

// Writes `model` (its graph's architecture, parameters, labels, preprocessing) to `path`, under a
// temporary name first and renamed into place, so a failure never leaves a half-written file or
// damages one already there. Tensors are written as float32; the file gets the lowest format
// version that holds the model (2 when it has a colour mode or a recorded accuracy, else 1).
// A non-zero format_version overrides that, for tests that need a file from the future.
void write_model_file(const Model& model, const std::string& path, int format_version = 0);

// Every float32 dataset in `group` of an HDF5 file, by name (for reference tensors in tests).
std::map<std::string, Tensor> read_tensor_group(const std::string& path, const std::string& group);

}  // namespace prism
