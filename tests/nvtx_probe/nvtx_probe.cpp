// kiln_nvtx_probe: an NVTX injection library that writes down every range kiln pushes and pops, so
// that tests (tests/cli/nvtx_ranges.sh, ctest cli.nvtx_ranges) can check the range names without
// Nsight and without a GPU.
//
// How it is loaded: NVTX3 is header-only; the first NVTX call in a process reads NVTX_INJECTION64_PATH,
// dlopens the library it names and calls its InitializeInjectionNvtx2(getExportTable). This library
// asks for the NVTX_ETID_CALLBACKS export table, takes the CORE and CORE2 module function tables
// (arrays of pointers to the process's NVTX function-pointer slots) and stores its own functions in
// the range push/pop slots. Every other slot stays a no-op.
//
// Output: the file named by KILN_NVTX_PROBE_OUT (appended to), one line per event, tab-separated:
//   <tid>  <domain>  push  <depth>  <name>   depth: ranges open on that thread and domain before the push
//   <tid>  <domain>  pop   <depth>           depth of the range being closed (that of its push);
//                                            -1 for a pop with no open range
// <tid> is the kernel thread id, so lines from several processes appending to one file stay apart;
// <domain> is "-" for the default domain (nvtxRangePushA/Ex, all kiln uses), else the name given to
// nvtxDomainCreateA. Each line goes out with one write(2) under a mutex: nothing is buffered, so the
// file is complete however the process ends (return from main, exit(), a crash after the range).
// Every NVTX3 instance in the process (each library that includes the headers) loads the injection
// and calls InitializeInjectionNvtx2 with its own tables; all of them write to the same file.
//
//   NVTX_INJECTION64_PATH=build/tests/libkiln_nvtx_probe.so KILN_NVTX_PROBE_OUT=ranges.txt build/kiln ...
//
// C++17, NVTX3 headers only: no CUDA runtime, no link to kiln.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <mutex>
#include <string>
#include <unordered_map>

#include <nvtx3/nvToolsExt.h>

// The opaque handle types NVTX leaves for the tool to define.
struct nvtxDomainRegistration_st {
  std::string name;
};
struct nvtxStringRegistration_st {
  std::string text;
};

namespace {

struct Sink {
  std::mutex mutex;
  int fd = -1;
};
// Never destroyed: ranges may still end while static objects are being torn down at exit.
Sink& sink() {
  static Sink* s = new Sink();
  return *s;
}

struct ThreadState {
  long tid = static_cast<long>(::syscall(SYS_gettid));
  std::unordered_map<const void*, int> depth;  // per domain; nullptr is the default domain
};
ThreadState& thread_state() {
  thread_local ThreadState t;
  return t;
}

void write_line(const std::string& line) {
  Sink& s = sink();
  std::lock_guard<std::mutex> lock(s.mutex);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(s.fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to report it; the checker sees the missing lines
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// One line per event: keep tabs and newlines out of names.
std::string clean(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string narrow(const wchar_t* w) {
  if (!w) return "(null)";
  std::string s;
  for (; *w; ++w) s += (*w > 0 && *w < 128) ? static_cast<char>(*w) : '?';
  return s;
}

std::string message_of(const nvtxEventAttributes_t* a) {
  if (!a) return "(no attributes)";
  switch (a->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII: return a->message.ascii ? a->message.ascii : "(null)";
    case NVTX_MESSAGE_TYPE_UNICODE: return narrow(a->message.unicode);
    case NVTX_MESSAGE_TYPE_REGISTERED:
      return a->message.registered ? a->message.registered->text : std::string("(null registered string)");
    default: return "(no message)";
  }
}

std::string prefix(const ThreadState& t, nvtxDomainHandle_t domain) {
  return std::to_string(t.tid) + "\t" + (domain ? clean(domain->name) : std::string("-")) + "\t";
}

int push(nvtxDomainHandle_t domain, const std::string& message) {
  ThreadState& t = thread_state();
  int& d = t.depth[domain];
  const int level = d++;
  write_line(prefix(t, domain) + "push\t" + std::to_string(level) + "\t" + clean(message) + "\n");
  return level;
}

int pop(nvtxDomainHandle_t domain) {
  ThreadState& t = thread_state();
  int& d = t.depth[domain];
  const int level = d > 0 ? --d : -1;
  write_line(prefix(t, domain) + "pop\t" + std::to_string(level) + "\n");
  return level;
}

// The functions stored in NVTX's slots.
int NVTX_API probe_RangePushA(const char* message) { return push(nullptr, message ? message : "(null)"); }
int NVTX_API probe_RangePushW(const wchar_t* message) { return push(nullptr, narrow(message)); }
int NVTX_API probe_RangePushEx(const nvtxEventAttributes_t* attr) { return push(nullptr, message_of(attr)); }
int NVTX_API probe_RangePop() { return pop(nullptr); }
int NVTX_API probe_DomainRangePushEx(nvtxDomainHandle_t domain, const nvtxEventAttributes_t* attr) {
  return push(domain, message_of(attr));
}
int NVTX_API probe_DomainRangePop(nvtxDomainHandle_t domain) { return pop(domain); }
// Domains and registered strings get handles of ours so their names can be written out. They are
// never freed (a handful per process); nvtxDomainDestroy stays a no-op.
nvtxDomainHandle_t NVTX_API probe_DomainCreateA(const char* name) {
  return new nvtxDomainRegistration_st{name ? name : "(null)"};
}
nvtxDomainHandle_t NVTX_API probe_DomainCreateW(const wchar_t* name) { return new nvtxDomainRegistration_st{narrow(name)}; }
nvtxStringHandle_t NVTX_API probe_DomainRegisterStringA(nvtxDomainHandle_t, const char* text) {
  return new nvtxStringRegistration_st{text ? text : "(null)"};
}
nvtxStringHandle_t NVTX_API probe_DomainRegisterStringW(nvtxDomainHandle_t, const wchar_t* text) {
  return new nvtxStringRegistration_st{narrow(text)};
}

template <typename F>
bool install(NvtxFunctionTable table, unsigned int size, unsigned int id, F fn) {
  if (!table || id > size || !table[id]) return false;
  *table[id] = reinterpret_cast<NvtxFunctionPointer>(fn);
  return true;
}

int fail(const char* why) {
  std::fprintf(stderr, "kiln_nvtx_probe: %s; NVTX ranges are not recorded\n", why);
  return 0;  // injection failed: NVTX stays a no-op
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int NVTX_API
InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_export_table) {
  const char* path = std::getenv("KILN_NVTX_PROBE_OUT");
  if (!path || !*path) return fail("KILN_NVTX_PROBE_OUT is not set (it names the file to append the ranges to)");
  if (!get_export_table) return fail("no NVTX export table function");
  const auto* callbacks = static_cast<const NvtxExportTableCallbacks*>(get_export_table(NVTX_ETID_CALLBACKS));
  if (!callbacks || callbacks->struct_size < sizeof(NvtxExportTableCallbacks) || !callbacks->GetModuleFunctionTable)
    return fail("NVTX offers no callbacks export table");

  NvtxFunctionTable core = nullptr, core2 = nullptr;
  unsigned int core_size = 0, core2_size = 0;
  if (!callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &core, &core_size) || !core)
    return fail("NVTX has no CORE function table");
  if (!callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &core2, &core2_size)) core2 = nullptr;

  {
    // Opened once, by the first NVTX instance to initialise; later ones share it.
    Sink& s = sink();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.fd < 0) {
      s.fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (s.fd < 0) {
        const std::string why = std::string("cannot open KILN_NVTX_PROBE_OUT=") + path + ": " + std::strerror(errno);
        return fail(why.c_str());
      }
    }
  }

  // Push/pop in the default domain are required; without them the probe is useless.
  if (!install(core, core_size, NVTX_CBID_CORE_RangePushA, &probe_RangePushA) ||
      !install(core, core_size, NVTX_CBID_CORE_RangePop, &probe_RangePop))
    return fail("NVTX's CORE table lacks the RangePushA/RangePop slots");
  install(core, core_size, NVTX_CBID_CORE_RangePushW, &probe_RangePushW);
  install(core, core_size, NVTX_CBID_CORE_RangePushEx, &probe_RangePushEx);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainRangePushEx, &probe_DomainRangePushEx);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainRangePop, &probe_DomainRangePop);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainCreateA, &probe_DomainCreateA);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainCreateW, &probe_DomainCreateW);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainRegisterStringA, &probe_DomainRegisterStringA);
  install(core2, core2_size, NVTX_CBID_CORE2_DomainRegisterStringW, &probe_DomainRegisterStringW);
  return 1;
}
