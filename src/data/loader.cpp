// The batch pipeline (see kiln/loader.h). Batch j of an epoch always goes through slot j % K of a
// ring of K slots. A slot cycles Free -> Filling (a worker gathers samples into its host buffers,
// then, on CUDA, enqueues the host-to-device copy on the copy stream and records `copied`) -> Ready
// -> (handed to the training loop) -> Free once the loop asks for the following batch, at which point
// an event `consumed` is recorded on the compute stream so the next copy into the slot's device
// buffers waits for the step that read them. The training loop itself only waits on a condition
// variable when no batch is ready (the data wait) and never on the device.
#include "kiln/loader.h"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "kiln/error.h"
#include "kiln/profile.h"
#include "kiln/random.h"

#if defined(KILN_WITH_CUDA)
#include "cuda/runtime.h"
#endif

namespace kiln::data {

namespace {
enum class SlotState { Free, Filling, Ready, InUse };

struct Slot {
  Tensor host_images, host_labels;  // pinned when the loader feeds a CUDA device
  Tensor dev_images, dev_labels;    // CUDA only
  SlotState state = SlotState::Free;
  std::int64_t batch = -1;
  std::int64_t count = 0;
  std::exception_ptr error;
#if defined(KILN_WITH_CUDA)
  cudaEvent_t copied = nullptr, consumed = nullptr;
  bool copy_pending = false, consumed_recorded = false;
#endif
};
}  // namespace

struct Loader::Impl {
  std::shared_ptr<const Source> src;
  LoaderOptions opt;
  std::int64_t n = 0, sample_bytes = 0, batches = 0;
  Shape image_shape;  // [C, H, W]
  std::vector<Slot> slots;
  std::vector<std::int64_t> order;

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::thread> workers;
  bool stop = false;
  std::int64_t next_fill = 0, next_consume = 0, end = 0;
  // Batches below this index have been released by the consumer. Batch b may take its slot only
  // once batch b - K is released, so a later batch can never take the slot an earlier one waits for.
  std::int64_t released = 0;
  double wait_s = 0.0;
  std::atomic<std::int64_t> skipped{0};
  std::mutex skipped_mutex;
  std::vector<std::int64_t> skipped_samples;  // source indices, in the order workers met them
  std::uint64_t epoch_seed = 0;
#if defined(KILN_WITH_CUDA)
  cudaStream_t copy_stream = nullptr;
#endif

  Impl(std::shared_ptr<const Source> s, const LoaderOptions& o) : src(std::move(s)), opt(o) {
    KILN_CHECK(src != nullptr, "loader: no source");
    KILN_CHECK(o.batch_size > 0, "loader: batch size must be positive, got ", o.batch_size);
    KILN_CHECK(o.workers >= 1 && o.workers <= 256, "loader: workers must be in [1, 256], got ", o.workers);
    n = src->size();
    KILN_CHECK(n > 0, "loader: the dataset is empty");
    image_shape = src->sample_shape();
    sample_bytes = shape_numel(image_shape);
    batches = n / o.batch_size + (!o.drop_last && n % o.batch_size != 0 ? 1 : 0);
    KILN_CHECK(batches > 0, "loader: batch size ", o.batch_size, " exceeds the dataset's ", n,
               " samples with drop_last");
    check_device_usable(o.device);
    const bool cuda = o.device.is_cuda();
#if defined(KILN_WITH_CUDA)
    if (cuda) cuda::set_device(o.device.index);  // events and streams below belong to this device
#endif
    const std::int64_t slot_batch = std::min(o.batch_size, n);  // a batch is never larger than the dataset
    Shape batch_shape{slot_batch};
    batch_shape.insert(batch_shape.end(), image_shape.begin(), image_shape.end());
    slots.resize(static_cast<std::size_t>(std::max(2, o.workers + 1)));
    for (Slot& s : slots) {
      s.host_images = Tensor::empty(batch_shape, DType::UInt8, Device::cpu(), cuda);
      s.host_labels = Tensor::empty({slot_batch}, DType::Int32, Device::cpu(), cuda);
#if defined(KILN_WITH_CUDA)
      if (cuda) {
        s.dev_images = Tensor::empty(batch_shape, DType::UInt8, o.device);
        s.dev_labels = Tensor::empty({slot_batch}, DType::Int32, o.device);
        KILN_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
        KILN_CUDA_CHECK(cudaEventCreateWithFlags(&s.consumed, cudaEventDisableTiming));
      }
#endif
    }
#if defined(KILN_WITH_CUDA)
    if (cuda) KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
#endif
  }

  ~Impl() {
    stop_workers();
#if defined(KILN_WITH_CUDA)
    if (copy_stream) {
      KILN_CUDA_WARN(cudaStreamSynchronize(copy_stream));
      KILN_CUDA_WARN(cudaStreamDestroy(copy_stream));
    }
    for (Slot& s : slots) {
      if (s.copied) KILN_CUDA_WARN(cudaEventDestroy(s.copied));
      if (s.consumed) KILN_CUDA_WARN(cudaEventDestroy(s.consumed));
    }
#endif
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
  }

  void shuffle(std::int64_t epoch) {
    order.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    if (!opt.shuffle) return;
    // Fisher-Yates driven by the counter-based RNG: the order depends on (seed, epoch) only.
    for (std::int64_t i = n - 1; i > 0; --i) {
      const std::uint64_t counter = (static_cast<std::uint64_t>(epoch) << 40) | static_cast<std::uint64_t>(i);
      const std::uint64_t r = philox::philox4x32(counter, opt.seed ^ 0x6b696c6e6c6f6164ull).x;
      std::swap(order[static_cast<std::size_t>(i)], order[r % static_cast<std::uint64_t>(i + 1)]);
    }
  }

  // Loads source sample `idx` into row k of the slot; false (and counted) when it cannot be produced.
  bool load_sample(Slot& s, std::int64_t k, std::int64_t idx, std::int64_t pos) {
    const std::uint64_t rng = (epoch_seed << 32) ^ static_cast<std::uint64_t>(pos);
    if (src->load(idx, s.host_images.data<std::uint8_t>() + k * sample_bytes, rng)) {
      s.host_labels.data<std::int32_t>()[k] = src->label(idx);
      return true;
    }
    skipped.fetch_add(1);
    std::lock_guard<std::mutex> lock(skipped_mutex);
    skipped_samples.push_back(idx);
    return false;
  }

  void fill(Slot& s, std::int64_t batch) {
    profile::Range range("loader batch assembly");
    const std::int64_t first = batch * opt.batch_size;
    const std::int64_t count = std::min(opt.batch_size, n - first);
    std::int64_t rows = 0;
    for (std::int64_t k = 0; k < count; ++k) {
      const std::int64_t pos = first + k;
      if (opt.unloadable == Unloadable::Drop) {
        rows += load_sample(s, rows, order[static_cast<std::size_t>(pos)], pos) ? 1 : 0;
        continue;
      }
      // Replace: the next samples in the epoch's order are tried in its place.
      bool ok = false;
      for (std::int64_t t = 0; t < std::min<std::int64_t>(n, 64) && !ok; ++t)
        ok = load_sample(s, rows, order[static_cast<std::size_t>((pos + t) % n)], pos);
      KILN_CHECK(ok, "loader: 64 samples in a row could not be loaded (see the skipped-file count); is the data readable?");
      ++rows;
    }
    s.count = rows;
#if defined(KILN_WITH_CUDA)
    if (copy_stream) {
      profile::Range copy_range("loader H2D copy");
      // Do not overwrite the device buffers before the step that read them has finished.
      if (s.consumed_recorded) KILN_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, s.consumed, 0));
      KILN_CUDA_CHECK(cudaMemcpyAsync(s.dev_images.raw_data(), s.host_images.raw_data(),
                                      static_cast<std::size_t>(s.count * sample_bytes), cudaMemcpyHostToDevice,
                                      copy_stream));
      KILN_CUDA_CHECK(cudaMemcpyAsync(s.dev_labels.raw_data(), s.host_labels.raw_data(),
                                      static_cast<std::size_t>(s.count) * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                      copy_stream));
      KILN_CUDA_CHECK(cudaEventRecord(s.copied, copy_stream));
      s.copy_pending = true;
    }
#endif
  }

  void worker_loop() {
    // A failure here (a broken CUDA context) reaches the training loop through the slots, like any
    // other worker error: exceptions must not escape a std::thread.
    std::exception_ptr setup_error;
#if defined(KILN_WITH_CUDA)
    try {
      if (copy_stream) cuda::set_device(opt.device.index);
    } catch (...) {
      setup_error = std::current_exception();
    }
#endif
    for (;;) {
      std::int64_t batch;
      Slot* s;
      {
        std::unique_lock<std::mutex> lock(mutex);
        if (stop || next_fill >= end) return;
        batch = next_fill++;
        s = &slots[static_cast<std::size_t>(batch) % slots.size()];
        const std::int64_t K = static_cast<std::int64_t>(slots.size());
        cv.wait(lock, [&] { return stop || (s->state == SlotState::Free && batch < released + K); });
        if (stop) return;
        s->state = SlotState::Filling;
      }
      std::exception_ptr error = setup_error;
      if (!error) try {
#if defined(KILN_WITH_CUDA)
        // The previous copy out of this slot's pinned buffer must be done before it is overwritten.
        if (s->copy_pending) KILN_CUDA_CHECK(cudaEventSynchronize(s->copied));
#endif
        fill(*s, batch);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        s->batch = batch;
        s->error = error;
        s->state = SlotState::Ready;
      }
      cv.notify_all();
    }
  }

  void release_previous() {
    if (next_consume == 0) return;
    Slot& prev = slots[static_cast<std::size_t>(next_consume - 1) % slots.size()];
    if (prev.state != SlotState::InUse) return;
    released = next_consume;
#if defined(KILN_WITH_CUDA)
    if (copy_stream) {
      KILN_CUDA_CHECK(cudaEventRecord(prev.consumed, cuda::current_stream(opt.device.index)));
      prev.consumed_recorded = true;
    }
#endif
    prev.state = SlotState::Free;
  }
};

Loader::Loader(const Dataset& dataset, const LoaderOptions& options)
    : impl_(std::make_unique<Impl>(in_memory(dataset), options)) {}

Loader::Loader(std::shared_ptr<const Source> source, const LoaderOptions& options)
    : impl_(std::make_unique<Impl>(std::move(source), options)) {}

Loader::~Loader() = default;

void Loader::start_epoch(std::int64_t epoch, std::int64_t first_batch) {
  Impl& m = *impl_;
  KILN_CHECK(first_batch >= 0 && first_batch <= m.batches, "loader: first batch ", first_batch,
             " outside the epoch's ", m.batches, " batches");
  m.stop_workers();
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    // A slot left in use by the previous epoch may still be read by the compute stream.
    for (Slot& s : m.slots) {
      s.state = SlotState::Free;
      s.error = nullptr;
    }
    m.shuffle(epoch);
    m.epoch_seed = m.opt.seed * 1000003ull + static_cast<std::uint64_t>(epoch);
    m.skipped = 0;
    {
      std::lock_guard<std::mutex> skipped_lock(m.skipped_mutex);
      m.skipped_samples.clear();
    }
    m.stop = false;
    m.next_fill = m.next_consume = m.released = first_batch;
    m.end = m.batches;
    m.wait_s = 0.0;
  }
  // Slots freed above without passing through release_previous: make the next copy into each wait
  // for everything queued on the compute stream so far.
#if defined(KILN_WITH_CUDA)
  if (m.copy_stream)
    for (Slot& s : m.slots) {
      KILN_CUDA_CHECK(cudaEventRecord(s.consumed, cuda::current_stream(m.opt.device.index)));
      s.consumed_recorded = true;
    }
#endif
  const int nworkers = static_cast<int>(std::min<std::int64_t>(m.opt.workers, std::max<std::int64_t>(m.batches - first_batch, 1)));
  for (int i = 0; i < nworkers; ++i) m.workers.emplace_back([&m] { m.worker_loop(); });
}

bool Loader::next(Batch& batch) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lock(m.mutex);
  m.release_previous();
  m.cv.notify_all();
  if (m.next_consume >= m.end) return false;
  const std::int64_t j = m.next_consume;
  Slot& s = m.slots[static_cast<std::size_t>(j) % m.slots.size()];
  const auto t0 = std::chrono::steady_clock::now();
  m.cv.wait(lock, [&] { return s.state == SlotState::Ready && s.batch == j; });
  m.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s.error) {
    std::exception_ptr e = s.error;
    s.error = nullptr;
    s.state = SlotState::Free;
    m.next_consume = m.end;  // the epoch cannot continue
    lock.unlock();
    std::rethrow_exception(e);
  }
  s.state = SlotState::InUse;
  ++m.next_consume;
#if defined(KILN_WITH_CUDA)
  if (m.copy_stream) {
    // The compute stream (not the host) waits for the copy.
    KILN_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(m.opt.device.index), s.copied, 0));
    batch.images = s.dev_images.narrow0(0, s.count);
    batch.labels = s.dev_labels.narrow0(0, s.count);
    batch.index = j;
    return true;
  }
#endif
  batch.images = s.host_images.narrow0(0, s.count);
  batch.labels = s.host_labels.narrow0(0, s.count);
  batch.index = j;
  return true;
}

std::int64_t Loader::batches_per_epoch() const { return impl_->batches; }
std::int64_t Loader::dataset_size() const { return impl_->n; }
double Loader::wait_seconds() const { return impl_->wait_s; }
std::int64_t Loader::skipped() const { return impl_->skipped.load(); }

std::vector<std::int64_t> Loader::skipped_samples() const {
  std::lock_guard<std::mutex> lock(impl_->skipped_mutex);
  std::vector<std::int64_t> v = impl_->skipped_samples;
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());  // Replace may try a bad sample more than once
  return v;
}

}  // namespace kiln::data
