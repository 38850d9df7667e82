// Internal: where a training run stands, and its encoding in a checkpoint's metadata — the one
// place both directions are written, so a resumed run continues exactly where the saved one stopped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/train.h"
#include "train/checkpoint.h"

namespace kiln::train::detail {

struct RunState {
  int epoch = 0;                   // epochs completed
  std::int64_t batch = 0;          // batches done in the current (incomplete) epoch
  std::int64_t global_step = 0;    // optimizer steps since the run began
  double loss_sum = 0, elapsed = 0, wait = 0;  // partial-epoch tallies: summed loss, seconds, data-wait seconds
  std::int64_t correct = 0, seen = 0;
  std::uint64_t seed = 0;          // shuffling and dropout continue from it
  std::uint64_t dropout_offset = 0;  // the dropout generator's position
  std::int64_t batch_size = 0;
  std::int64_t train_images = 0;   // the training set's size (0: a checkpoint from before it was saved)
  std::vector<EpochMetrics> history;  // every completed epoch
};

// Writes `state`, the model spec and what identifies the run (optimizer, dataset, config) into `md`.
void encode_run_state(const RunState& state, const Config& config, const ModelSpec& spec, Metadata& md);
// Reads the state back; kiln::Error naming `path` and the key when something is missing or malformed.
RunState decode_run_state(const Metadata& md, const std::string& path);

}  // namespace kiln::train::detail
