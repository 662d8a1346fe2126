// weights/model_file.hpp: the HDF5 model file (docs/model-format.md): reading it into a Model
// with every check a user needs, writing one, and reading plain tensor groups (test references).
// HDF5 is included here and nowhere else.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "engine/model.hpp"

namespace prism {

constexpr const char* model_format_name = "prism-model";
// Version 1: float32 tensors. Version 2 adds float16 tensors (converted to float32 on reading)
// and the optional `colour` and `test_accuracy` attributes. This build reads both.
constexpr int model_format_version = 2;

// Reads and checks a model file: an HDF5 file of this format and a version this build reads, a
// known architecture, and exactly its state_dict (names, shapes, float32). Throws prism::Error
// naming the file and the problem.
Model read_model_file(const std::string& path);

// read_model_file in a forked child process (weights/model_file_isolated.cpp), for files from
// anywhere: Debian 12's HDF5 library can crash or corrupt memory on damaged files, and then only
// the child is lost. The same model or the same error as read_model_file, or an error naming
// the file when the child dies. `read` is what the child runs (tests give one that crashes).
// The parameters' values are copied out of the child's memory where the system allows it, else
// they come through the socket with the rest; tests ask for the socket to check that way too.
enum class IsolatedValues { from_child_memory, through_socket };
Model read_model_file_isolated(const std::string& path,
                               const std::function<Model(const std::string&)>& read = read_model_file,
                               IsolatedValues values = IsolatedValues::from_child_memory);

// Writes `model` (its graph's architecture, parameters, labels, preprocessing) to `path`, under a
// temporary name first and renamed into place, so a failure never leaves a half-written file or
// damages one already there. Tensors are written as float32; the file gets the lowest format
// version that holds the model (2 when it has a colour mode or a recorded accuracy, else 1).
// A non-zero format_version overrides that, for tests that need a file from the future.
void write_model_file(const Model& model, const std::string& path, int format_version = 0);

// Every float32 dataset in `group` of an HDF5 file, by name (for reference tensors in tests).
std::map<std::string, Tensor> read_tensor_group(const std::string& path, const std::string& group);

}  // namespace prism
