// tests/test_model_file.cpp: the HDF5 model file: a round trip, and every way a file can be
// wrong, each with a message that names the file and the problem.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/error.hpp"
#include "tests/helpers.hpp"
#include "weights/model_file.hpp"

using namespace prism;
namespace fs = std::filesystem;

namespace {

// A folder of its own per test run, removed at the end.
struct ScratchFolder {
  fs::path path = fs::temp_directory_path() / ("prism_tests_" + std::to_string(::getpid()));
  ScratchFolder() { fs::create_directories(path); }
  ~ScratchFolder() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

Model small_model() {
  Model model = test::random_model("resnet18", 3, 11);
  model.labels = {"cat", "dog", "wolf"};
  model.preprocessing.input_height = 112;
  model.preprocessing.input_width = 96;
  return model;
}

}  // namespace

TEST_CASE("a model file reads back exactly as written", "[model_file]") {
  const ScratchFolder scratch;
  const Model written = small_model();
  write_model_file(written, scratch.file("model.h5"));
  const Model read = read_model_file(scratch.file("model.h5"));
  CHECK(read.graph.architecture == "resnet18");
  CHECK(read.num_classes() == 3);
  CHECK(read.labels == written.labels);
  CHECK(read.weights_source == "random (seed 11)");
  CHECK(read.preprocessing.input_height == 112);
  CHECK(read.preprocessing.input_width == 96);
  CHECK(read.preprocessing.std[2] == Approx(0.225));
  REQUIRE(read.parameters.size() == written.parameters.size());
  for (const auto& [key, tensor] : written.parameters) {
    CHECK(test::compare(read.parameter(key).view(), tensor.view()).max_abs == 0.0);
  }
  CHECK_FALSE(fs::exists(scratch.file("model.h5.partial")));
}

TEST_CASE("values left in the file read back exactly, and a truncated file says so", "[model_file]") {
  const ScratchFolder scratch;
  const Model written = small_model();
  write_model_file(written, scratch.file("model.h5"));
  ValuesInFile left_in_file;
  const Model read = read_model_file(scratch.file("model.h5"), &left_in_file);
  const std::map<std::string, uint64_t>& offsets = left_in_file.offsets;
  REQUIRE(offsets.size() == written.parameters.size());  // write_model_file writes every one plainly
  struct stat status {};
  REQUIRE(stat(scratch.file("model.h5").c_str(), &status) == 0);
  CHECK(left_in_file.device == static_cast<uint64_t>(status.st_dev));
  CHECK(left_in_file.inode == static_cast<uint64_t>(status.st_ino));
  const int fd = ::open(scratch.file("model.h5").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  for (const auto& [key, tensor] : written.parameters) {
    const Tensor& shaped = read.parameter(key);
    REQUIRE(shaped.shape() == tensor.shape());
    std::vector<float> values(tensor.numel(), -1.0f);
    read_values_in_file(fd, scratch.file("model.h5"), key, offsets.at(key), tensor.numel() * sizeof(float),
                        values.data());
    CHECK(std::equal(values.begin(), values.end(), tensor.data()));
  }

  // The offsets of a file cut short after they were found: the values are past its end now.
  const std::string last =
      std::max_element(offsets.begin(), offsets.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  fs::resize_file(scratch.file("model.h5"), offsets.at(last) + 4);
  std::vector<float> values(written.parameter(last).numel());
  CHECK_THROWS_WITH(read_values_in_file(fd, scratch.file("model.h5"), last, offsets.at(last),
                                        values.size() * sizeof(float), values.data()),
                    Catch::Contains("model.h5: cannot read dataset state_dict/" + last + " (is the file truncated?)"));
  ::close(fd);
  // Read afresh, that file's cut dataset is read by HDF5, which finds it short.
  ValuesInFile again;
  CHECK_THROWS_WITH(read_model_file(scratch.file("model.h5"), &again), Catch::Contains("truncated"));
}

TEST_CASE("bad model files get one clear message naming the file", "[model_file]") {
  const ScratchFolder scratch;
  const std::string good = scratch.file("good.h5");
  write_model_file(small_model(), good);

  SECTION("missing file") {
    CHECK_THROWS_WITH(read_model_file(scratch.file("absent.h5")), Catch::Contains("absent.h5: cannot open"));
  }
  SECTION("not HDF5") {
    std::ofstream(scratch.file("text.h5")) << "this is not a model\n";
    CHECK_THROWS_WITH(read_model_file(scratch.file("text.h5")), Catch::Contains("text.h5: not an HDF5 model file"));
  }
  SECTION("truncated") {
    const std::string truncated = scratch.file("half.h5");
    fs::copy_file(good, truncated);
    fs::resize_file(truncated, fs::file_size(good) / 2);
    CHECK_THROWS_WITH(read_model_file(truncated), Catch::Contains("half.h5:") && Catch::Contains("truncated"));
  }
  SECTION("missing and unexpected keys") {
    Model model = small_model();
    model.parameters.erase("layer1.0.conv1.weight");
    model.parameters.emplace("layer5.0.conv1.weight", Tensor({1}));
    write_model_file(model, scratch.file("keys.h5"));
    CHECK_THROWS_WITH(read_model_file(scratch.file("keys.h5")),
                      Catch::Contains("keys.h5") && Catch::Contains("missing layer1.0.conv1.weight (64, 64, 3, 3)") &&
                          Catch::Contains("unexpected layer5.0.conv1.weight"));
  }
  SECTION("wrong shape") {
    Model model = small_model();
    model.parameters["layer2.0.bn1.running_var"] = Tensor({100});
    write_model_file(model, scratch.file("shape.h5"));
    CHECK_THROWS_WITH(read_model_file(scratch.file("shape.h5")),
                      Catch::Contains("layer2.0.bn1.running_var has shape (100), resnet18 needs (128)"));
  }
  SECTION("unknown architecture") {
    Model model = small_model();
    model.graph.architecture = "alexnet";
    write_model_file(model, scratch.file("arch.h5"));
    CHECK_THROWS_WITH(read_model_file(scratch.file("arch.h5")), Catch::Contains("unknown architecture 'alexnet'"));
  }
  SECTION("a newer format version") {
    write_model_file(small_model(), scratch.file("future.h5"), model_format_version + 1);
    CHECK_THROWS_WITH(read_model_file(scratch.file("future.h5")), Catch::Contains("newer than this build reads"));
  }
  SECTION("NaN or infinite weights") {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      Model model = small_model();
      model.parameters.at("fc.bias").data()[1] = bad;
      write_model_file(model, scratch.file("nan.h5"));
      CHECK_THROWS_WITH(read_model_file(scratch.file("nan.h5")),
                        Catch::Contains("nan.h5: state_dict/fc.bias holds") && Catch::Contains("(element 1)"));
    }
  }
  SECTION("labels that do not match the classes") {
    Model model = small_model();
    model.labels.pop_back();
    write_model_file(model, scratch.file("labels.h5"));
    CHECK_THROWS_WITH(read_model_file(scratch.file("labels.h5")), Catch::Contains("2 names for 3 classes"));
  }
  SECTION("an unwritable destination leaves nothing behind") {
    CHECK_THROWS_WITH(write_model_file(small_model(), scratch.file("no/such/folder/model.h5")),
                      Catch::Contains("cannot create"));
  }
  SECTION("a failed write does not damage the file already there") {
    const auto before = fs::file_size(good);
    Model model = small_model();
    model.parameters.emplace("bad/key", Tensor({1}));  // '/' cannot name an HDF5 dataset
    CHECK_THROWS(write_model_file(model, good));
    CHECK(fs::file_size(good) == before);
    CHECK_NOTHROW(read_model_file(good));
    CHECK_FALSE(fs::exists(good + ".partial"));
  }
}

TEST_CASE("reading in a child process gives the same model, the same errors, and a clear one when it crashes",
          "[model_file]") {
  const ScratchFolder scratch;
  Model written = small_model();
  written.preprocessing.grey = true;
  written.preprocessing.mean = {0.5f, 0.25f, 0.125f};
  written.recorded_accuracy = 0.875;
  write_model_file(written, scratch.file("model.h5"));

  const Model direct = read_model_file(scratch.file("model.h5"));
  const IsolatedValues way = GENERATE(IsolatedValues::from_file_where_plain, IsolatedValues::from_child_memory,
                                      IsolatedValues::through_socket);  // every way the values come
  const Model isolated = read_model_file_isolated(scratch.file("model.h5"), read_model_file, way);
  CHECK(isolated.graph.architecture == direct.graph.architecture);
  CHECK(isolated.graph.nodes.size() == direct.graph.nodes.size());
  CHECK(isolated.num_classes() == 3);
  CHECK(isolated.labels == direct.labels);
  CHECK(isolated.weights_source == direct.weights_source);
  CHECK(isolated.path == scratch.file("model.h5"));
  CHECK(isolated.recorded_accuracy == 0.875);
  CHECK(isolated.preprocessing.grey);
  CHECK(isolated.preprocessing.input_height == 112);
  CHECK(isolated.preprocessing.input_width == 96);
  CHECK(isolated.preprocessing.mean == direct.preprocessing.mean);
  CHECK(isolated.preprocessing.std == direct.preprocessing.std);
  REQUIRE(isolated.parameters.size() == direct.parameters.size());
  for (const auto& [key, tensor] : direct.parameters) {
    CHECK(isolated.parameter(key).shape() == tensor.shape());
    CHECK(test::compare(isolated.parameter(key).view(), tensor.view()).max_abs == 0.0);
  }

  SECTION("the child's errors come through unchanged") {
    Model model = small_model();
    model.parameters.at("fc.bias").data()[1] = std::numeric_limits<float>::quiet_NaN();
    write_model_file(model, scratch.file("nan.h5"));
    // Past the first MiB, which the parent reads and checks apart from the rest.
    model = small_model();
    model.parameters.at("layer4.1.conv2.weight").data()[1000000] = std::numeric_limits<float>::infinity();
    write_model_file(model, scratch.file("infinity.h5"));
    for (const std::string name : {"nan.h5", "infinity.h5", "absent.h5"}) {
      std::string expected;
      try {
        read_model_file(scratch.file(name));
      } catch (const Error& error) {
        expected = error.what();
      }
      REQUIRE_FALSE(expected.empty());
      if (name == "infinity.h5") CHECK_THAT(expected, Catch::Contains("holds an infinity (element 1000000)"));
      CHECK_THROWS_WITH(read_model_file_isolated(scratch.file(name)), expected);
    }
  }
  SECTION("a file renamed into the path while the child reads it is not mixed with the one opened before") {
    write_model_file(test::random_model("resnet18", 3, 12), scratch.file("other.h5"));
    const std::string path = scratch.file("model.h5"), other = scratch.file("other.h5");
    const auto replacing_first = [&](const std::string& read_path, ValuesInFile* left_in_file) {
      fs::rename(other, read_path);  // in the child, after the parent opened the file
      return read_model_file(read_path, left_in_file);
    };
    CHECK_THROWS_WITH(read_model_file_isolated(path, replacing_first),
                      Catch::Contains("model.h5: the file was replaced while it was being read"));
  }
  SECTION("a reader that crashes costs the child, and the message names the file") {
    // The default actions, as in the command-line tool: Catch's (and a sanitizer's) handlers for
    // these signals would report from inside the child.
    const auto aborting = [](const std::string&, ValuesInFile*) -> Model {
      std::signal(SIGABRT, SIG_DFL);
      std::abort();
    };
    CHECK_THROWS_WITH(read_model_file_isolated(scratch.file("model.h5"), aborting),
                      Catch::Contains("model.h5: reading it crashed (signal 6") &&
                          Catch::Contains("damaged or was made to attack it"));
    const auto segfaulting = [](const std::string&, ValuesInFile*) -> Model {
      std::signal(SIGSEGV, SIG_DFL);
      std::raise(SIGSEGV);
      return Model{};
    };
    CHECK_THROWS_WITH(read_model_file_isolated(scratch.file("model.h5"), segfaulting),
                      Catch::Contains("crashed (signal 11"));
  }
}
