// The name of the op being executed on this thread, for error messages (out of memory, launch
// failures) that happen deep below the op that caused them.
#pragma once

namespace kiln::detail {

const char* current_op();

class OpScope {
 public:
  explicit OpScope(const char* name);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  const char* previous_;
};

}  // namespace kiln::detail
