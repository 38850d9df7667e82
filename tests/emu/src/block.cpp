#include "block.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KILN_EMU_ASAN 1
#endif
#if defined(KILN_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace kiln_emu {

__thread const ThreadRegs* t_regs = nullptr;

namespace {
__thread CudaThread* t_thread = nullptr;
__thread BlockRunner* t_runner = nullptr;

bool same_site(const Site& a, const Site& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}
std::string str(const Site& s) { return std::string(s.file) + ":" + std::to_string(s.line); }
std::string str(const uint3& v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
std::string str(const dim3& v) { return str(uint3{v.x, v.y, v.z}); }

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
  }
  return "?";
}

// The lane a shuffle reads for `lane` (CUDA's rules: segments of `width` lanes; a source outside
// the caller's segment, above it for down/xor or below it for up, reads the caller's own value).
unsigned shuffle_source(WarpOp op, unsigned lane, int param, int width) {
  const unsigned w = static_cast<unsigned>(width);
  const unsigned base = lane & ~(w - 1);
  switch (op) {
    case WarpOp::ShflIdx: return base + (static_cast<unsigned>(param) & (w - 1));
    case WarpOp::ShflUp: {
      const int src = static_cast<int>(lane) - param;
      return src < static_cast<int>(base) ? lane : static_cast<unsigned>(src);
    }
    case WarpOp::ShflDown: {
      const unsigned src = lane + static_cast<unsigned>(param);
      return src >= base + w ? lane : src;
    }
    case WarpOp::ShflXor: {
      const unsigned src = lane ^ static_cast<unsigned>(param);
      return src >= base + w ? lane : src;
    }
    default: return lane;
  }
}

bool is_shuffle(WarpOp op) {
  return op == WarpOp::ShflIdx || op == WarpOp::ShflUp || op == WarpOp::ShflDown || op == WarpOp::ShflXor;
}
}  // namespace

// ---- the fiber side ------------------------------------------------------------------------------

void BlockRunner::thread_main(void* p) {
  auto* t = static_cast<CudaThread*>(p);
  (*t_runner->grid_->body)();
  t->wait = Wait::Done;
  t->fiber.finish();
}

void BlockRunner::barrier(Site site) {
  CudaThread* t = t_thread;
  t->wait = Wait::Barrier;
  t->site = site;
  t->fiber.suspend();
}

std::uint64_t BlockRunner::collective(WarpOp op, unsigned mask, std::uint64_t value, int param, int width,
                                      Site site) {
  CudaThread* t = t_thread;
  t->wait = Wait::Warp;
  t->site = site;
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->param = param;
  t->width = width;
  t->fiber.suspend();
  return t->result;
}

void syncthreads(const char* file, int line) { BlockRunner::barrier({file, line}); }

std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int param, int width, const char* file,
                              int line) {
  return BlockRunner::collective(op, mask, value, param, width, {file, line});
}

// ---- the scheduler side --------------------------------------------------------------------------

bool BlockRunner::run(const GridSpec& grid, uint3 index, std::string& error) {
  grid_ = &grid;
  index_ = index;
  error_ = &error;
  const std::uint64_t linear = index.x + static_cast<std::uint64_t>(grid.grid.x) * (index.y + grid.grid.y * index.z);
  rng_ = Rng(grid.schedule.seed ^ (linear * 0x2545F4914F6CDD1Dull) ^ static_cast<std::uint64_t>(grid.site.line));
  start_threads(index);
  BlockRunner* previous = t_runner;
  t_runner = this;
  bool ok = true;
  while (ok && done_ < threads_.size()) {
    bool progressed = false;
    ok = sweep(progressed);
    if (ok && !progressed && done_ < threads_.size()) ok = fail(deadlock());
  }
  t_runner = previous;
  t_regs = nullptr;
  t_thread = nullptr;
  if (!ok) dirty_stacks_ = true;
  return ok;
}

void BlockRunner::start_threads(uint3 index) {
  const dim3 b = grid_->block;
  const unsigned n = b.x * b.y * b.z;
  if (dirty_stacks_) {  // frames a failed block abandoned: their ASan redzones must not linger
#if defined(KILN_EMU_ASAN)
    for (unsigned i = 0; i < n; ++i) ASAN_UNPOISON_MEMORY_REGION(stacks_.get(i).base, stacks_.get(i).size);
#endif
    dirty_stacks_ = false;
  }
  threads_.resize(n);
  order_.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    CudaThread& t = threads_[i];
    t.regs = {uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)}, index, b, grid_->grid};
    t.wait = Wait::Ready;
    t.fiber.start(stacks_.get(i), &thread_main, &t);
    order_[i] = i;
  }
  if (grid_->schedule.kind == Schedule::Reverse) std::reverse(order_.begin(), order_.end());
  done_ = at_barrier_ = 0;
}

// One pass over the threads in schedule order, running each ready one until it suspends.
bool BlockRunner::sweep(bool& progressed) {
  if (grid_->schedule.kind == Schedule::Random)
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng_.below(i)]);
  for (unsigned t : order_) {
    CudaThread& th = threads_[t];
    if (th.wait != Wait::Ready) continue;
    progressed = true;
    t_regs = &th.regs;
    t_thread = &th;
    th.fiber.resume();
    if (!after_suspend(t)) return false;
  }
  return true;
}

bool BlockRunner::after_suspend(unsigned t) {
  CudaThread& th = threads_[t];
  switch (th.wait) {
    case Wait::Done: {
      if (done_++ == 0) first_done_ = t;
      if (at_barrier_ > 0)
        return fail(who(t) + " exited while " + std::to_string(at_barrier_) +
                    " threads wait at __syncthreads() at " + str(barrier_site_));
      const unsigned warp = t / 32, lane = t % 32;
      for (unsigned l = 0; l < lanes_in_warp(warp); ++l) {
        const CudaThread& o = threads_[warp * 32 + l];
        if (o.wait == Wait::Warp && (o.mask >> lane & 1u))
          return fail(who(t) + " exited while " + who(warp * 32 + l) + " waits for it at " + op_name(o.op) + " at " +
                      str(o.site));
      }
      return true;
    }
    case Wait::Barrier: return arrive_at_barrier(t);
    case Wait::Warp: return arrive_at_collective(t);
    case Wait::Ready: return true;
  }
  return true;
}

bool BlockRunner::arrive_at_barrier(unsigned t) {
  CudaThread& th = threads_[t];
  if (done_ > 0)
    return fail(who(t) + " reached __syncthreads() at " + str(th.site) + " after " + who(first_done_) +
                " exited: the barrier can never complete");
  if (at_barrier_ > 0 && !same_site(th.site, barrier_site_))
    return fail(who(t) + " waits at __syncthreads() at " + str(th.site) + " while " + std::to_string(at_barrier_) +
                " threads wait at the one at " + str(barrier_site_));
  barrier_site_ = th.site;
  if (++at_barrier_ < threads_.size()) return true;
  for (CudaThread& o : threads_) o.wait = Wait::Ready;
  at_barrier_ = 0;
  return true;
}

bool BlockRunner::arrive_at_collective(unsigned t) {
  CudaThread& th = threads_[t];
  const unsigned warp = t / 32, lane = t % 32, lanes = lanes_in_warp(warp);
  const std::string call = std::string(op_name(th.op)) + " at " + str(th.site);
  if (!(th.mask >> lane & 1u)) return fail(who(t) + " calls " + call + " with a mask that leaves out its own lane");
  if (lanes < 32 && (th.mask >> lanes) != 0)
    return fail(who(t) + " calls " + call + " with mask 0x" + [&] {
      std::ostringstream o;
      o << std::hex << th.mask;
      return o.str();
    }() + ", which names lanes that do not exist (the warp has " + std::to_string(lanes) + " threads)");
  if (is_shuffle(th.op) && (th.width < 1 || th.width > 32 || (th.width & (th.width - 1)) != 0))
    return fail(who(t) + " calls " + call + " with width " + std::to_string(th.width) +
                " (a power of two up to 32 is required)");
  bool complete = true;
  for (unsigned l = 0; l < lanes; ++l) {
    if (!(th.mask >> l & 1u)) continue;
    const CudaThread& o = threads_[warp * 32 + l];
    if (o.wait == Wait::Done) return fail(who(t) + " calls " + call + " but lane " + std::to_string(l) + " has exited");
    if (o.wait != Wait::Warp) {
      complete = false;
      continue;
    }
    if (o.op != th.op || !same_site(o.site, th.site) || o.mask != th.mask)
      return fail(who(t) + " calls " + call + " while " + who(warp * 32 + l) + " waits at " + op_name(o.op) + " at " +
                  str(o.site) + (o.mask != th.mask ? " with a different mask" : ""));
  }
  if (complete) complete_collective(warp, th.mask);
  return true;
}

void BlockRunner::complete_collective(unsigned warp, unsigned mask) {
  CudaThread* lanes = &threads_[warp * 32];
  const unsigned n = lanes_in_warp(warp);
  std::uint64_t votes = 0;
  for (unsigned l = 0; l < n; ++l)
    if ((mask >> l & 1u) && lanes[l].value != 0) votes |= 1ull << l;
  for (unsigned l = 0; l < n; ++l) {
    if (!(mask >> l & 1u)) continue;
    CudaThread& th = lanes[l];
    switch (th.op) {
      case WarpOp::Ballot: th.result = votes; break;
      case WarpOp::Any: th.result = votes != 0; break;
      case WarpOp::All: th.result = votes == (mask & ((n == 32) ? ~0u : ((1u << n) - 1))); break;
      case WarpOp::Sync: th.result = 0; break;
      default: {
        const unsigned src = shuffle_source(th.op, l, th.param, th.width);
        // A source outside the mask (or the warp) does not take part: CUDA leaves the value undefined.
        th.result = (src < n && (mask >> src & 1u)) ? lanes[src].value : 0xDEADBEEFDEADBEEFull;
      }
    }
  }
  for (unsigned l = 0; l < n; ++l)
    if (mask >> l & 1u) lanes[l].wait = Wait::Ready;
}

unsigned BlockRunner::lanes_in_warp(unsigned warp) const {
  return std::min<unsigned>(32, static_cast<unsigned>(threads_.size()) - warp * 32);
}

std::string BlockRunner::who(unsigned t) const {
  return "thread " + str(threads_[t].regs.thread_idx) + " (warp " + std::to_string(t / 32) + ", lane " +
         std::to_string(t % 32) + ")";
}

std::string BlockRunner::deadlock() const {
  std::string s = "deadlock: no thread can run;";
  unsigned shown = 0;
  for (unsigned t = 0; t < threads_.size() && shown < 4; ++t) {
    const CudaThread& th = threads_[t];
    if (th.wait == Wait::Done || th.wait == Wait::Ready) continue;
    s += " " + who(t) + " waits at " + (th.wait == Wait::Barrier ? "__syncthreads()" : op_name(th.op)) + " at " +
         str(th.site) + ";";
    ++shown;
  }
  return s;
}

bool BlockRunner::fail(const std::string& what) {
  *error_ = "kernel launched at " + str(Site{grid_->site.file, grid_->site.line}) + " (grid " + str(grid_->grid) +
            ", block " + str(grid_->block) + ", schedule " + schedule_name(grid_->schedule) + "), block " +
            str(index_) + ": " + what;
  return false;
}

}  // namespace kiln_emu
