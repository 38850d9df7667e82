// Streams and events. A stream is a real asynchronous in-order queue: a worker thread runs its
// operations one after another while the host goes on. Events are markers in that queue; a stream
// that waits on an event queues a wait. With KILN_EMU_DELAY_US each operation starts after a random
// delay, so host code that forgets a wait sees wrong data instead of passing by luck.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "internal.h"
#include "kiln_emu/control.h"
#include "schedule.h"

using Clock = std::chrono::steady_clock;

struct CUstream_st {
  unsigned flags = 0;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  std::uint64_t queued = 0, finished = 0;  // operations ever queued / finished
  bool destroyed = false;
  kiln_emu::Rng jitter{0x6a69747465720000ull};
};

struct CUevent_st {
  unsigned flags = 0;
  std::mutex mutex;
  std::condition_variable cv;
  std::uint64_t recorded = 0, reached = 0;  // records made / the latest record the stream reached
  Clock::time_point when{};
  std::atomic<int> refs{1};  // the user's handle plus each queued record
  bool destroyed = false;
};

namespace kiln_emu {

namespace {

std::atomic<unsigned> g_delay_us{[] {
  const char* s = std::getenv("KILN_EMU_DELAY_US");
  return s ? static_cast<unsigned>(std::atoi(s)) : 0u;
}()};

struct Streams {
  std::mutex mutex;
  std::set<CUstream_st*> live;
  CUstream_st* legacy = nullptr;
};
Streams& streams() {
  static Streams* s = new Streams();  // never destroyed: workers may run during static destruction
  return *s;
}

void worker(CUstream_st* s) {
  std::unique_lock<std::mutex> lock(s->mutex);
  for (;;) {
    s->cv.wait(lock, [&] { return !s->queue.empty() || s->destroyed; });
    if (s->queue.empty()) break;  // destroyed and drained
    std::function<void()> op = std::move(s->queue.front());
    s->queue.pop_front();
    const unsigned delay = g_delay_us.load(std::memory_order_relaxed);
    const auto wait_us = delay ? s->jitter.below(delay + 1) : 0;
    lock.unlock();
    if (wait_us) std::this_thread::sleep_for(std::chrono::microseconds(wait_us));
    op();
    op = nullptr;
    lock.lock();
    ++s->finished;
    s->cv.notify_all();
  }
  lock.unlock();
  delete s;
}

// At exit the device finishes its queued work first, as CUDA's context teardown does: a worker still
// running a kernel while the process tears down would touch freed state.
void drain_at_exit() {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(synchronize_all); });
}

CUstream_st* make_stream(unsigned flags) {
  drain_at_exit();
  auto* s = new CUstream_st();
  s->flags = flags;
  Streams& all = streams();
  {
    std::lock_guard<std::mutex> lock(all.mutex);
    s->jitter = Rng(0x6a69747465720000ull + all.live.size());
    all.live.insert(s);
  }
  std::thread(worker, s).detach();
  return s;
}

// The stream an API handle names: null and cudaStreamLegacy / cudaStreamPerThread are the default
// stream; anything else must be a live stream.
CUstream_st* resolve(cudaStream_t stream) {
  Streams& all = streams();
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
    std::lock_guard<std::mutex> lock(all.mutex);
    if (!all.legacy) {
      drain_at_exit();
      all.legacy = new CUstream_st();
      all.live.insert(all.legacy);
      std::thread(worker, all.legacy).detach();
    }
    return all.legacy;
  }
  std::lock_guard<std::mutex> lock(all.mutex);
  return all.live.count(stream) ? stream : nullptr;
}

// Waits until every operation queued on s so far has finished.
void drain(CUstream_st* s) {
  std::unique_lock<std::mutex> lock(s->mutex);
  const std::uint64_t target = s->queued;
  s->cv.wait(lock, [&] { return s->finished >= target; });
}

void release(CUevent_st* e) {
  if (e->refs.fetch_sub(1) == 1) delete e;
}

bool valid_event(cudaEvent_t e) { return e != nullptr; }

// Queues op on the stream as it is (event markers run even in a failed context, so that waiters
// wake up and see the error).
cudaError_t push(cudaStream_t stream, std::function<void()> op) {
  CUstream_st* s = resolve(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(s->mutex);
  s->queue.push_back(std::move(op));
  ++s->queued;
  s->cv.notify_all();
  return cudaSuccess;
}

}  // namespace

cudaError_t enqueue(cudaStream_t stream, std::function<void()> work) {
  if (cudaError_t e = sticky_error()) return e;
  return push(stream, [w = std::move(work)] {
    if (sticky_error() == cudaSuccess) w();  // a failed context runs no more work
  });
}

void synchronize_all() {
  std::vector<CUstream_st*> all;
  {
    std::lock_guard<std::mutex> lock(streams().mutex);
    all.assign(streams().live.begin(), streams().live.end());
  }
  for (CUstream_st* s : all) drain(s);
}

void set_stream_delay_us(unsigned us) { g_delay_us = us; }

}  // namespace kiln_emu

using kiln_emu::sticky_error;

extern "C" {

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream || (flags & ~1u)) return cudaErrorInvalidValue;
  if (cudaError_t e = sticky_error()) return e;
  *stream = kiln_emu::make_stream(flags);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  CUstream_st* s = stream ? kiln_emu::resolve(stream) : nullptr;
  if (!s || s == kiln_emu::streams().legacy) return cudaErrorInvalidResourceHandle;
  {
    std::lock_guard<std::mutex> lock(kiln_emu::streams().mutex);
    kiln_emu::streams().live.erase(s);
  }
  std::lock_guard<std::mutex> lock(s->mutex);  // the worker finishes what is queued, then frees s
  s->destroyed = true;
  s->cv.notify_all();
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  CUstream_st* s = kiln_emu::resolve(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  kiln_emu::drain(s);
  return sticky_error();
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  CUstream_st* s = kiln_emu::resolve(stream);
  if (!s) return cudaErrorInvalidResourceHandle;
  if (cudaError_t e = sticky_error()) return e;
  std::lock_guard<std::mutex> lock(s->mutex);
  return s->finished == s->queued ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaDeviceSynchronize(void) {
  kiln_emu::synchronize_all();
  return sticky_error();
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!fn) return cudaErrorInvalidValue;
  return kiln_emu::enqueue(stream, [fn, user_data] { fn(user_data); });
}

// ---- events ------------------------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event || (flags & ~(cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess)))
    return cudaErrorInvalidValue;
  if (cudaError_t e = sticky_error()) return e;
  auto* ev = new CUevent_st();
  ev->flags = flags;
  *event = ev;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!kiln_emu::valid_event(event)) return cudaErrorInvalidResourceHandle;
  kiln_emu::release(event);  // pending records keep it alive until the stream reaches them
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!kiln_emu::valid_event(event)) return cudaErrorInvalidResourceHandle;
  std::uint64_t n;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    n = ++event->recorded;
  }
  event->refs.fetch_add(1);
  const cudaError_t e = kiln_emu::push(stream, [event, n] {
    {
      std::lock_guard<std::mutex> lock(event->mutex);
      event->reached = std::max(event->reached, n);
      event->when = Clock::now();
    }
    event->cv.notify_all();
    kiln_emu::release(event);
  });
  if (e != cudaSuccess) kiln_emu::release(event);
  return e;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!kiln_emu::valid_event(event)) return cudaErrorInvalidResourceHandle;
  if (cudaError_t e = sticky_error()) return e;
  std::lock_guard<std::mutex> lock(event->mutex);
  return event->reached >= event->recorded ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!kiln_emu::valid_event(event)) return cudaErrorInvalidResourceHandle;
  std::unique_lock<std::mutex> lock(event->mutex);
  const std::uint64_t target = event->recorded;
  event->cv.wait(lock, [&] { return event->reached >= target || sticky_error() != cudaSuccess; });
  return sticky_error();
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!kiln_emu::valid_event(event)) return cudaErrorInvalidResourceHandle;
  if (flags != 0 && flags != cudaEventWaitDefault) return cudaErrorInvalidValue;
  std::uint64_t target;
  {
    std::lock_guard<std::mutex> lock(event->mutex);
    target = event->recorded;  // the most recent record at the time of the call
  }
  if (target == 0) return kiln_emu::enqueue(stream, [] {});  // never recorded: nothing to wait for
  event->refs.fetch_add(1);
  const cudaError_t e = kiln_emu::push(stream, [event, target] {
    {
      std::unique_lock<std::mutex> lock(event->mutex);
      event->cv.wait(lock, [&] { return event->reached >= target || sticky_error() != cudaSuccess; });
    }
    kiln_emu::release(event);
  });
  if (e != cudaSuccess) kiln_emu::release(event);
  return e;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return cudaErrorInvalidValue;
  if (!kiln_emu::valid_event(start) || !kiln_emu::valid_event(end)) return cudaErrorInvalidResourceHandle;
  if ((start->flags | end->flags) & cudaEventDisableTiming) return cudaErrorInvalidResourceHandle;
  if (cudaError_t e = sticky_error()) return e;
  Clock::time_point a, b;
  {
    std::lock_guard<std::mutex> lock(start->mutex);
    if (start->recorded == 0) return cudaErrorInvalidResourceHandle;
    if (start->reached < start->recorded) return cudaErrorNotReady;
    a = start->when;
  }
  {
    std::lock_guard<std::mutex> lock(end->mutex);
    if (end->recorded == 0) return cudaErrorInvalidResourceHandle;
    if (end->reached < end->recorded) return cudaErrorNotReady;
    b = end->when;
  }
  *ms = std::chrono::duration<float, std::milli>(b - a).count();
  return cudaSuccess;
}

}  // extern "C"
