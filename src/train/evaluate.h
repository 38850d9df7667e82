// Internal: one pass over an evaluation loader, the loss and accuracy summed on the device.
#pragma once

#include "kiln/loader.h"
#include "kiln/train.h"

namespace kiln::train::detail {

EvalResult run_eval(nn::Module& model, const ModelSpec& spec, data::Loader& loader);

}  // namespace kiln::train::detail
