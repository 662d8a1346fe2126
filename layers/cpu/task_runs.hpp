// layers/cpu/task_runs.hpp: tasks [0, count) shared out to the threads of a parallel region as
// runs of consecutive tasks, one run a thread, each taken from its front by its own thread and
// from its back by any thread whose own run is done. A thread keeps its run's order (and so what
// it can fetch ahead), and a thread on a slower CPU does fewer tasks instead of holding up the
// others at the region's end. The two CPUs of the shared host bench/ measures on run at different
// speeds for minutes at a time: over 200 passes of ResNet-50 at batch 1 with static shares, one
// thread was busy 2.27 s in the direct convolution's steps and the other 2.79 s for the same work
// (docs/design.md, "Measuring on the shared 2-core host").
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "engine/error.hpp"

namespace prism {

class TaskRuns {
 public:
  // Thread t's run is [count * t / threads, count * (t + 1) / threads).
  TaskRuns(int64_t count, int threads) : count_(count), threads_(threads), runs_(new Run[threads]) {
    if (count < 0 || count >= (int64_t{1} << 31)) throw Error("TaskRuns: task count out of range");
    for (int t = 0; t < threads; ++t) runs_[t].bounds.store(pack(own_begin(t), own_begin(t + 1)));
  }

  // The first task of thread t's own run, whether or not it is still there.
  int64_t own_begin(int thread) const { return count_ * thread / threads_; }

  // The next task for thread `thread` (its own run's front, else another run's back), or -1 when
  // none is left. `stolen` says which.
  int64_t next(int thread, bool* stolen = nullptr) {
    int64_t task = take(runs_[thread], true);
    if (stolen) *stolen = false;
    for (int i = 1; task < 0 && i < threads_; ++i) {
      task = take(runs_[(thread + i) % threads_], false);
      if (stolen) *stolen = true;
    }
    return task;
  }

  // Whether task `task` is still waiting at the front of thread t's run (so that t may fetch its
  // data ahead).
  bool is_next_of(int thread, int64_t task) const {
    const uint64_t bounds = runs_[thread].bounds.load(std::memory_order_relaxed);
    return front(bounds) == task && task < back(bounds);
  }

 private:
  // Each run's [front, back) in one word, on a cache line of its own: a claim is one
  // compare-and-swap, by the owner at the front or a helper at the back, and the owner's
  // claims touch no other thread's line.
  struct alignas(64) Run {
    std::atomic<uint64_t> bounds{0};
  };
  static uint64_t pack(int64_t front, int64_t back) {
    return static_cast<uint64_t>(front) << 32 | static_cast<uint64_t>(back);
  }
  static int64_t front(uint64_t bounds) { return static_cast<int64_t>(bounds >> 32); }
  static int64_t back(uint64_t bounds) { return static_cast<int64_t>(bounds & 0xffffffffu); }

  static int64_t take(Run& run, bool from_front) {
    uint64_t bounds = run.bounds.load(std::memory_order_relaxed);
    while (front(bounds) < back(bounds)) {
      const uint64_t taken = from_front ? pack(front(bounds) + 1, back(bounds)) : pack(front(bounds), back(bounds) - 1);
      if (run.bounds.compare_exchange_weak(bounds, taken, std::memory_order_relaxed)) {
        return from_front ? front(bounds) : back(bounds) - 1;
      }
    }
    return -1;
  }

  int64_t count_;
  int threads_;
  std::unique_ptr<Run[]> runs_;
};

}  // namespace prism
