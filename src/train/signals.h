// Internal: the stop request set by SIGINT/SIGTERM/SIGHUP (request_stop() in kiln/train.h) and read by the
// training loop between steps.
#pragma once

namespace kiln::train::detail {

bool stop_requested();
// The request has been handled (checkpoint written): a later fit() in this process starts afresh.
void clear_stop();

}  // namespace kiln::train::detail
