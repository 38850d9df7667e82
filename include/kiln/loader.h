// kiln/loader.h — the batch pipeline: worker threads assemble shuffled batches into a ring of
// preallocated (pinned) host buffers; on a CUDA device each batch is copied on a dedicated copy
// stream while the compute stream still runs the previous step, and the compute stream waits on the
// copy's event — the host never blocks on the device. Batches travel as uint8 and are normalised
// on the device (normalize_images).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/data.h"
#include "kiln/tensor.h"

namespace kiln::data {

struct Batch {
  Tensor images;  // uint8 [B, C, H, W] on the loader's device
  Tensor labels;  // int32 [B] on the loader's device
  std::int64_t index = 0;  // batch number within the epoch
};

// What becomes of a sample the source cannot produce (a file that fails to decode).
enum class Unloadable {
  Replace,  // the next sample of the epoch's order takes its place: batches stay full (training)
  Drop,     // it is left out of its batch, which may end up empty: each sample counts once (evaluation)
};

struct LoaderOptions {
  std::int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  std::uint64_t seed = 0;
  int workers = 2;  // worker threads; the ring holds max(2, workers + 1) buffers
  Device device = Device::cpu();
  Unloadable unloadable = Unloadable::Replace;
};

class Loader {
 public:
  // `dataset` must outlive the loader.
  Loader(const Dataset& dataset, const LoaderOptions& options);
  Loader(std::shared_ptr<const Source> source, const LoaderOptions& options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts epoch `epoch` (its order is a pure function of seed and epoch), from batch `first_batch`
  // (to resume mid-epoch). Stops any epoch in flight.
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0);
  // The next batch, or false at the end of the epoch. The batch's tensors stay valid until the next
  // call. A worker's exception is rethrown here.
  bool next(Batch& batch);

  std::int64_t batches_per_epoch() const;
  std::int64_t dataset_size() const;
  // Seconds next() spent waiting for a batch since start_epoch (the data-wait time).
  double wait_seconds() const;
  // Samples the source could not produce since start_epoch (replaced or dropped, as
  // LoaderOptions::unloadable says), and their indices in the source, in ascending order.
  std::int64_t skipped() const;
  std::vector<std::int64_t> skipped_samples() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::data
