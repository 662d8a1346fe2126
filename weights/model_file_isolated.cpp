// weights/model_file_isolated.cpp: reading a model file in a child process. Fuzzing found that
// Debian 12's HDF5 (1.10.8) reads and writes out of bounds, and frees memory twice, on some
// damaged files, below anything our checks can see. In a forked child that costs the child: the
// parent gets the checked model, or the child's error message, or a clear error when the child
// dies. The child sends everything but the values through a socket. In place of the values it
// sends, for each tensor stored in the file as it lies in memory (little-endian float32 in one
// run: how the converters write them), its offset in the file, which the parent reads itself
// (plain bytes, no HDF5, through its own descriptor of the same file) and checks; for the others
// (float16) their address in the child's memory, from where the parent copies them
// (process_vm_readv: one copy, no switching between the processes), or, where the system refuses
// that (a container's seccomp policy, say), they come through the socket. Each value then lands
// in fresh memory once, not in the child's and again in the parent's: the kernel zeroing the new
// pages was most of the time (vgg16's 553 MB in a fresh process: 1.00-3.00 -> 0.27-0.39 s).
// Through a pipe they took 0.6 to 2.3 s on a busy 2-core machine. Leaves out Windows (no fork).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/error.hpp"
#include "engine/models/models.hpp"
#include "weights/model_file.hpp"

namespace prism {
namespace {

// The child's answer, in this order: a status byte, then the message (status error) or the model
// (status ok): architecture, number of classes, preprocessing, labels, provenance, then every
// parameter as name, rank, dimensions, where its float32 values are and their address there (in
// the child's memory, or an offset in the file), then the file's device and inode numbers (for the
// values in the file; zero where none are). Then the child waits for the parent's word: the
// values are copied (it exits), or send them (the values in its memory through the socket in the
// same order, then it exits). Native byte order: both ends are this program.
enum Status : uint8_t { status_ok = 0, status_error = 1 };
enum Word : uint8_t { word_copied = 0, word_send = 1 };
enum Where : uint8_t { in_child_memory = 0, in_file = 1 };

constexpr uint64_t longest_string = uint64_t{1} << 24;  // a label or a message; the format's own limit is far lower
constexpr uint64_t largest_rank = 8;

class ChannelWriter {
 public:
  explicit ChannelWriter(int fd) : fd_(fd) {}
  void bytes(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd_, p, size);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) _exit(3);  // the parent went away: nobody to tell
      p += written;
      size -= static_cast<size_t>(written);
    }
  }
  template <typename T>
  void value(T v) {
    bytes(&v, sizeof(v));
  }
  void text(const std::string& s) {
    value<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }

 private:
  int fd_;
};

class ChannelReader {
 public:
  // first_wait_ms: how long the child may take before its first byte (its whole read);
  // later waits (the transfer) get a fixed allowance.
  ChannelReader(int fd, const std::string& path, int first_wait_ms) : fd_(fd), path_(path), wait_ms_(first_wait_ms) {}
  // False when the socket ends before `size` bytes (the child died); true otherwise. Throws
  // TimedOut when no byte comes for the allowed time (the child is stuck).
  bool bytes(void* data, size_t size) {
    char* p = static_cast<char*>(data);
    while (size > 0) {
      pollfd ready{fd_, POLLIN, 0};
      const int polled = ::poll(&ready, 1, wait_ms_);
      if (polled < 0 && errno == EINTR) continue;
      if (polled == 0) throw TimedOut();
      wait_ms_ = transfer_wait_ms;
      const ssize_t got = ::read(fd_, p, size);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      p += got;
      size -= static_cast<size_t>(got);
    }
    return true;
  }
  template <typename T>
  T value() {
    T v{};
    if (!bytes(&v, sizeof(v))) throw Truncated();
    return v;
  }
  std::string text() {
    const uint64_t size = value<uint64_t>();
    if (size > longest_string)
      throw Error(path_ + ": the reading process sent a string of " + std::to_string(size) + " bytes");
    std::string s(size, '\0');
    if (!bytes(s.data(), size)) throw Truncated();
    return s;
  }
  struct Truncated {};
  struct TimedOut {};

 private:
  static constexpr int transfer_wait_ms = 30000;
  int fd_;
  const std::string& path_;
  int wait_ms_;
};

void send_model(ChannelWriter& out, const Model& model, const ValuesInFile& left_in_file) {
  out.value<uint8_t>(status_ok);
  out.text(model.graph.architecture);
  out.value<int64_t>(model.num_classes());
  const Preprocessing& p = model.preprocessing;
  out.value<int64_t>(p.input_height);
  out.value<int64_t>(p.input_width);
  for (int c = 0; c < 3; ++c) out.value<float>(p.mean[c]);
  for (int c = 0; c < 3; ++c) out.value<float>(p.std[c]);
  out.value<uint8_t>(p.grey ? 1 : 0);
  out.text(model.weights_source);
  out.value<double>(model.recorded_accuracy);
  out.value<uint64_t>(model.labels.size());
  for (const std::string& label : model.labels) out.text(label);
  out.value<uint64_t>(model.parameters.size());
  for (const auto& [name, tensor] : model.parameters) {
    out.text(name);
    out.value<uint64_t>(tensor.shape().size());
    for (int64_t d : tensor.shape()) out.value<int64_t>(d);
    const auto offset = left_in_file.offsets.find(name);
    const bool there = offset != left_in_file.offsets.end();
    out.value<uint8_t>(there ? in_file : in_child_memory);
    out.value<uint64_t>(there ? offset->second : reinterpret_cast<uintptr_t>(tensor.data()));
  }
  out.value<uint64_t>(left_in_file.device);
  out.value<uint64_t>(left_in_file.inode);
}

// The child, its model sent: waits for the parent's word and does what it says. A parent that
// went away reads as "copied".
void serve_values(ChannelWriter& out, int word_fd, const Model& model, const ValuesInFile& left_in_file) {
  uint8_t word = word_copied;
  while (::read(word_fd, &word, 1) < 0 && errno == EINTR) {
  }
  if (word != word_send) return;
  for (const auto& [name, tensor] : model.parameters) {
    if (left_in_file.offsets.count(name) == 0)
      out.bytes(tensor.data(), static_cast<size_t>(tensor.numel()) * sizeof(float));
  }
}

// A received tensor: where its values go, and where they are (in the child, or in the file).
struct PendingValues {
  std::string key;
  float* to;
  uint64_t from;
  uint64_t bytes;
};

// The values still to come: those in the child's memory, those in the file, and which file the
// child read (device and inode).
struct Pending {
  std::vector<PendingValues> from_child, from_file;
  uint64_t device = 0, inode = 0;
};

Model receive_model(ChannelReader& in, const std::string& path, Pending& pending) {
  Model model;
  model.path = path;
  const std::string architecture = in.text();
  const int64_t num_classes = in.value<int64_t>();
  if (!is_architecture(architecture) || num_classes <= 0) {
    throw Error(path + ": the reading process sent architecture '" + architecture + "' with " +
                std::to_string(num_classes) + " classes");
  }
  model.graph = build_architecture(architecture, num_classes);
  Preprocessing& p = model.preprocessing;
  p.input_height = in.value<int64_t>();
  p.input_width = in.value<int64_t>();
  for (int c = 0; c < 3; ++c) p.mean[c] = in.value<float>();
  for (int c = 0; c < 3; ++c) p.std[c] = in.value<float>();
  p.grey = in.value<uint8_t>() != 0;
  model.weights_source = in.text();
  model.recorded_accuracy = in.value<double>();
  const uint64_t labels = in.value<uint64_t>();
  if (labels > static_cast<uint64_t>(num_classes)) throw Error(path + ": the reading process sent too many labels");
  for (uint64_t i = 0; i < labels; ++i) model.labels.push_back(in.text());

  // Every shape is checked against the architecture before its values are allocated.
  std::map<std::string, Shape> expected;
  for (const ParameterSpec& spec : model.graph.parameters()) expected[spec.key] = spec.shape;
  const uint64_t count = in.value<uint64_t>();
  if (count != expected.size())
    throw Error(path + ": the reading process sent " + std::to_string(count) + " parameters");
  for (uint64_t i = 0; i < count; ++i) {
    const std::string name = in.text();
    const uint64_t rank = in.value<uint64_t>();
    if (rank > largest_rank) throw Error(path + ": the reading process sent a tensor of rank " + std::to_string(rank));
    Shape shape(rank);
    for (int64_t& d : shape) d = in.value<int64_t>();
    const auto wanted = expected.find(name);
    if (wanted == expected.end() || wanted->second != shape) {
      throw Error(path + ": the reading process sent " + name + " " + shape_to_string(shape) +
                  ", which the architecture does not have");
    }
    const uint8_t where = in.value<uint8_t>();
    const uint64_t from = in.value<uint64_t>();
    if (where != in_child_memory && where != in_file) {
      throw Error(path + ": the reading process sent values from place " + std::to_string(where));
    }
    Tensor tensor = Tensor::uninitialized(shape, Device::cpu, Lifetime::lasting);
    (where == in_file ? pending.from_file : pending.from_child)
        .push_back({name, tensor.data(), from, static_cast<uint64_t>(tensor.numel()) * sizeof(float)});
    model.parameters.emplace(name, std::move(tensor));
  }
  pending.device = in.value<uint64_t>();
  pending.inode = in.value<uint64_t>();
  return model;
}

// The values straight from the child's memory. False when the system does not allow it at all
// (then nothing was copied); an Error when the child's addresses do not hold what it said.
bool copy_from_child(pid_t child, const std::string& path, const std::vector<PendingValues>& pending) {
  bool first = true;
  for (const PendingValues& values : pending) {
    uint64_t done = 0;
    while (done < values.bytes) {
      iovec local{reinterpret_cast<char*>(values.to) + done, values.bytes - done};
      iovec remote{reinterpret_cast<void*>(values.from + done), values.bytes - done};
      const ssize_t got = process_vm_readv(child, &local, 1, &remote, 1, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && first && (errno == EPERM || errno == EACCES || errno == ENOSYS)) return false;
      if (got < 0 && errno == ESRCH) throw ChannelReader::Truncated();  // the child died: its status says how
      if (got <= 0) {
        throw Error(path + ": the reading process sent the address of values it does not hold (" +
                    std::string(got < 0 ? std::strerror(errno) : "nothing read") + ")");
      }
      first = false;
      done += static_cast<uint64_t>(got);
    }
  }
  return true;
}

std::string describe_death(int status) {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    const char* name = strsignal(signal);
    return "crashed (signal " + std::to_string(signal) + (name ? std::string(", ") + name : std::string()) + ")";
  }
  if (WIFEXITED(status)) return "stopped with exit code " + std::to_string(WEXITSTATUS(status));
  return "stopped";
}

}  // namespace

Model read_model_file_isolated(const std::string& path, const ModelFileReader& read, IsolatedValues values) {
  // A socket pair rather than a pipe: the parent's word to a child that has died fails with an
  // error (MSG_NOSIGNAL), not a SIGPIPE.
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw Error(path + ": cannot make a channel to read it in a child process: " + std::strerror(errno));
  }
  // This process's own descriptor of the file, opened before the child reads it. The values the
  // child leaves in the file are read through it, once the child's file has proved to be the same
  // one: a file renamed into the path in between (a conversion finishing) would otherwise mix two
  // files' bytes without a word.
  struct Descriptor {
    int fd;
    ~Descriptor() {
      if (fd >= 0) close(fd);
    }
  };
  const Descriptor file{values == IsolatedValues::from_file_where_plain ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC)
                                                                        : -1};
  // Whatever stdio holds would otherwise be written twice, once by each process.
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    throw Error(path + ": cannot start a child process to read it: " + std::strerror(errno));
  }
  if (child == 0) {
    // The child: read, send, and leave without running any of the parent's exit handlers.
    close(fds[0]);
    ChannelWriter out(fds[1]);
    std::string message;
    try {
      ValuesInFile left_in_file;
      const Model model = read(path, file.fd >= 0 ? &left_in_file : nullptr);
      send_model(out, model, left_in_file);
      serve_values(out, fds[1], model, left_in_file);
    } catch (const Error& error) {
      message = error.what();  // names the file already
    } catch (const std::exception& error) {
      message = path + ": " + error.what();  // std::bad_alloc from an absurd size, say
    }
    if (!message.empty()) {
      out.value<uint8_t>(status_error);
      out.text(message);
    }
    close(fds[1]);
    _exit(0);
  }

  close(fds[1]);
  // Fuzzing found a file on which HDF5 loops forever (tests/fuzz/regressions/): the child gets 10 s
  // plus a second per 10 MB of file (a slow disk) to answer; a real model file takes well under that.
  std::error_code size_error;
  const auto file_bytes = std::filesystem::file_size(path, size_error);
  const int64_t allowed_ms = 10000 + (size_error ? 0 : static_cast<int64_t>(file_bytes / 10000));
  ChannelReader in(fds[0], path, static_cast<int>(std::min<int64_t>(allowed_ms, 3600000)));
  Model model;
  std::string failure;  // the child's own error message, or what went wrong receiving
  bool complete = false;
  try {
    const uint8_t status = in.value<uint8_t>();
    if (status == status_error) {
      failure = in.text();
    } else if (status == status_ok) {
      Pending pending;
      model = receive_model(in, path, pending);
      const bool copied = values != IsolatedValues::through_socket && copy_from_child(child, path, pending.from_child);
      const uint8_t word = copied ? word_copied : word_send;
      if (send(fds[0], &word, 1, MSG_NOSIGNAL) != 1) throw ChannelReader::Truncated();
      for (size_t i = 0; !copied && i < pending.from_child.size(); ++i) {
        if (!in.bytes(pending.from_child[i].to, pending.from_child[i].bytes)) throw ChannelReader::Truncated();
      }
      // Plain bytes at offsets the child found, in the file it read; read_values_in_file checks
      // them as the child checks what it reads.
      if (!pending.from_file.empty()) {
        struct stat opened {};
        if (fstat(file.fd, &opened) != 0 || static_cast<uint64_t>(opened.st_dev) != pending.device ||
            static_cast<uint64_t>(opened.st_ino) != pending.inode) {
          throw Error(path + ": the file was replaced while it was being read; read it again");
        }
        for (const PendingValues& part : pending.from_file) {
          read_values_in_file(file.fd, path, part.key, part.from, part.bytes, part.to);
        }
      }
      complete = true;
    } else {
      failure = path + ": the reading process sent status " + std::to_string(status);
    }
  } catch (const ChannelReader::Truncated&) {
    // The child died mid-answer: its exit status says how.
  } catch (const ChannelReader::TimedOut&) {
    failure = path + ": reading it took more than " + std::to_string(allowed_ms / 1000) +
              " s inside the HDF5 library without an answer: the file is damaged or was made to attack it; "
              "convert the checkpoint again (prism convert)";
  } catch (const Error& error) {
    failure = error.what();
  }
  close(fds[0]);
  if (!failure.empty() || !complete) kill(child, SIGKILL);  // it may still be writing; harmless if gone
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!failure.empty()) throw Error(failure);
  if (!complete || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error(path + ": reading it " + describe_death(status) +
                " inside the HDF5 library: the file is damaged or was made to attack it; convert the "
                "checkpoint again (prism convert)");
  }
  return model;
}

}  // namespace prism
