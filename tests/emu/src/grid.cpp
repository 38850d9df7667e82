// Kernel launches: CUDA's launch checks, then the grid queued on its stream; there its blocks are
// spread over a pool of OS threads, each running one block at a time on its own BlockRunner.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "block.h"
#include "internal.h"
#include "kiln_emu/control.h"

namespace kiln_emu {

namespace {

std::string where(const LaunchSite& s) { return std::string(s.file) + ":" + std::to_string(s.line); }

cudaError_t check_geometry(const LaunchSite& site, dim3 grid, dim3 block, std::size_t smem) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  std::string why;
  if (threads == 0 || 1ull * grid.x * grid.y * grid.z == 0) why = "a zero-size grid or block";
  else if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024)
    why = "a block of " + std::to_string(threads) + " threads (at most 1024; x, y <= 1024, z <= 64)";
  else if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    why = "a grid beyond CUDA's limits (x < 2^31, y and z <= 65535)";
  else if (smem > 48 * 1024)
    why = std::to_string(smem) + " bytes of dynamic shared memory (more than 48 KiB needs an opt-in)";
  if (why.empty()) return cudaSuccess;
  report("launch at " + where(site) + " rejected: " + why);
  return cudaErrorInvalidConfiguration;
}

cudaError_t check_pointers(const LaunchSite& site, const void* const* pointers, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const void* p = pointers[i];
    if (!p || kernel_accessible(p)) continue;
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", p);
    report("launch at " + where(site) + ": pointer argument " + std::to_string(i + 1) + " (" + addr +
           ") is not device memory: a kernel given a host pointer faults on a GPU");
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// The OS threads that run blocks. The stream worker that launched a grid runs blocks too, so a
// grid never waits for a pool thread to be free.
class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* pool = new BlockPool();  // never destroyed: stream workers outlive statics
    return *pool;
  }
  unsigned size() const { return static_cast<unsigned>(threads_.size()) + 1; }
  // Runs work() on up to `helpers` pool threads and on the caller; returns when all are done.
  void run(unsigned helpers, const std::function<void()>& work) {
    auto job = std::make_shared<Job>();
    job->work = &work;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (unsigned i = 0; i < helpers; ++i) queue_.push_back(job);
      job->pending = helpers;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    // Helpers that have not started yet are not needed any more: the caller did their share.
    for (auto it = queue_.begin(); it != queue_.end();)
      if (*it == job) {
        it = queue_.erase(it);
        --job->pending;
      } else {
        ++it;
      }
    done_cv_.wait(lock, [&] { return job->pending == 0; });
  }

 private:
  struct Job {
    const std::function<void()>* work = nullptr;
    unsigned pending = 0;
  };
  BlockPool() {
    unsigned n = std::thread::hardware_concurrency();
    if (const char* s = std::getenv("KILN_EMU_THREADS")) n = static_cast<unsigned>(std::atoi(s));
    for (unsigned i = 1; i < std::max(1u, n); ++i) threads_.emplace_back([this] { loop(); });
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return !queue_.empty(); });
      std::shared_ptr<Job> job = queue_.front();
      queue_.erase(queue_.begin());
      lock.unlock();
      (*job->work)();
      lock.lock();
      if (--job->pending == 0) done_cv_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::shared_ptr<Job>> queue_;
  std::vector<std::thread> threads_;
};

BlockRunner& this_threads_runner() {
  static thread_local BlockRunner runner;
  return runner;
}

uint3 block_index(std::uint64_t b, dim3 grid) {
  return uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
               static_cast<unsigned>(b / (1ull * grid.x * grid.y))};
}

// The order in which the grid's blocks start: forward, reversed, or shuffled by the seed.
std::vector<std::uint32_t> block_order(std::uint64_t total, const GridSpec& g) {
  std::vector<std::uint32_t> order(total);
  std::iota(order.begin(), order.end(), 0u);
  if (g.schedule.kind == Schedule::Reverse) std::reverse(order.begin(), order.end());
  if (g.schedule.kind == Schedule::Random) {
    Rng rng(g.schedule.seed ^ static_cast<std::uint64_t>(g.site.line) * 0x9E3779B97F4A7C15ull);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  }
  return order;
}

std::atomic<std::uint64_t> g_launches{0};

void run_grid(const GridSpec& g) {
  const std::uint64_t total = 1ull * g.grid.x * g.grid.y * g.grid.z;
  const std::vector<std::uint32_t> order = block_order(total, g);
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string first_error;
  const std::function<void()> work = [&] {
    BlockRunner& runner = this_threads_runner();
    std::string error;
    for (std::uint64_t k; !failed.load(std::memory_order_relaxed) && (k = next.fetch_add(1)) < total;) {
      if (runner.run(g, block_index(order[k], g.grid), error)) continue;
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!failed.exchange(true)) first_error = error;
    }
  };
  BlockPool& pool = BlockPool::get();
  const unsigned helpers = static_cast<unsigned>(std::min<std::uint64_t>(pool.size() - 1, total - 1));
  if (helpers == 0) work();
  else pool.run(helpers, work);
  if (failed) fail_context(cudaErrorLaunchFailure, first_error);
}

}  // namespace

std::uint64_t kernels_launched() { return g_launches.load(); }

cudaError_t launch(const LaunchSite& site, dim3 grid, dim3 block, std::size_t dynamic_smem, cudaStream_t stream,
                   const void* const* pointers, std::size_t n_pointers, std::function<void()> body) {
  cudaError_t e = check_geometry(site, grid, block, dynamic_smem);
  if (e == cudaSuccess) e = check_pointers(site, pointers, n_pointers);
  if (e == cudaSuccess) {
    auto spec = std::make_shared<GridSpec>(GridSpec{site, grid, block, nullptr, current_schedule()});
    auto kernel = std::make_shared<std::function<void()>>(std::move(body));
    e = enqueue(stream, [spec, kernel] {
      spec->body = kernel.get();
      run_grid(*spec);
    });
    if (e == cudaSuccess) g_launches.fetch_add(1);
  }
  set_last_error(e);
  return e;
}

}  // namespace kiln_emu
