// guardian: keeps the guest kernel's code, syscall table and LSTAR as they are, from outside the
// guest, with KVMI alone.
//
//   glassbox-example-guardian --guest build/release/guest/glassbox-guest.json --accept /tmp/g.sock
//   & glassbox run --kernel build/release/guest/glassbox-guest.elf --cpus 2 --cmdline attack
//       --introspect unix:/tmp/g.sock
//
// (or --connect PATH for a VMM started with --introspect listen:unix:PATH).
//
// What it does, from the guest kernel's description (guest/gen_json.py):
// * the pages of kernel text and of the syscall table lose write access (KVMI_VM_SET_PAGE_ACCESS,
//   r-x) and KVMI_EVENT_PF is enabled on every vCPU. A write there raises a PF event that is
//   answered RETRY with the restriction kept: the write is dropped (on KVM the write exit comes
//   after the instruction retired, and RETRY does not replay it).
// * writes to LSTAR are tracked on every vCPU (KVMI_VCPU_CONTROL_MSR + KVMI_EVENT_MSR). A write
//   of the kernel's own syscall entry (its boot-time setup) goes through; anything else is
//   answered CONTINUE with the old value, which blocks it without a #GP in the guest.
// * each blocked attempt is logged with the process behind it (the event's CR3 looked up in the
//   guest's process table) and its RIP.
// It keeps the guest running, exits 0 when the VM goes away, and on SIGINT/SIGTERM gives the
// pages back their rwx access and stops tracking LSTAR before it leaves.
#include <signal.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/listener.h"
#include "glassbox/client/session.h"

using namespace std::chrono_literals;
using glassbox::client::ReceivedEvent;
using glassbox::client::Session;
namespace kvmi = glassbox::kvmi;

namespace {

constexpr std::uint32_t kMsrLstar = 0xc0000082;
constexpr std::uint64_t kPage = kvmi::kPageSize;

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop(int sig) {
  g_stop_signal.store(sig);
}

std::uint64_t hex_field(const nlohmann::json& j) {
  return std::stoull(j.get<std::string>(), nullptr, 16);
}

// What the guardian needs from glassbox-guest.json.
struct GuestDescription {
  std::uint64_t text_start = 0, text_end = 0;
  std::uint64_t table_start = 0, table_size = 0;
  std::uint64_t syscall_entry = 0;  // what the kernel itself puts in LSTAR
  std::uint64_t procs = 0, proc_stride = 0;
  std::uint32_t proc_max = 0;
  std::uint32_t off_pid = 0, off_state = 0, off_cr3 = 0, off_name = 0, name_size = 16;
};

std::optional<GuestDescription> load_description(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "guardian: cannot read %s\n", path.c_str());
    return std::nullopt;
  }
  try {
    const auto j = nlohmann::json::parse(in);
    GuestDescription d;
    d.text_start = hex_field(j.at("kernel_text").at("start"));
    d.text_end = hex_field(j.at("kernel_text").at("end"));
    const auto& table = j.at("syscall_table");
    d.table_start = hex_field(table.at("address"));
    d.table_size =
        table.at("entries").get<std::uint64_t>() * table.at("entry_size").get<std::uint64_t>();
    d.syscall_entry = hex_field(j.at("syscall_entry"));
    const auto& list = j.at("process_list");
    d.procs = hex_field(list.at("address"));
    d.proc_stride = list.at("stride").get<std::uint64_t>();
    d.proc_max = list.at("max").get<std::uint32_t>();
    const auto& fields = list.at("fields");
    d.off_pid = fields.at("pid").at("offset").get<std::uint32_t>();
    d.off_state = fields.at("state").at("offset").get<std::uint32_t>();
    d.off_cr3 = fields.at("cr3").at("offset").get<std::uint32_t>();
    d.off_name = fields.at("name").at("offset").get<std::uint32_t>();
    d.name_size = fields.at("name").at("size").get<std::uint32_t>();
    if (d.text_end <= d.text_start || d.table_size == 0) throw std::runtime_error("empty ranges");
    return d;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "guardian: %s is not a glassbox guest description: %s\n", path.c_str(),
                 e.what());
    return std::nullopt;
  }
}

// A protected range of guest-physical pages and what it holds.
struct Region {
  std::string name;                  // "kernel-text", "syscall-table"
  std::vector<std::uint64_t> pages;  // GPAs, page-aligned
  bool contains(std::uint64_t gpa) const {
    return std::ranges::find(pages, gpa & ~(kPage - 1)) != pages.end();
  }
};

class Guardian {
 public:
  Guardian(Session& session, GuestDescription guest) : s_(session), guest_(guest) {}

  // Protects what it can; false when nothing could be protected.
  bool arm();
  // Runs until the VM goes away (true) or a signal (false).
  bool watch();
  void disarm();
  void print_summary() const;

 private:
  bool arm_pages();
  bool arm_lstar();
  std::uint64_t kernel_gpa(std::uint64_t gva);
  Region region_of(const std::string& name, std::uint64_t start, std::uint64_t end);
  kvmi::EventAction on_pf(const ReceivedEvent& event);
  std::uint64_t on_msr(const ReceivedEvent& event);
  std::string who(const ReceivedEvent& event);
  void refresh_processes();
  bool read_guest(std::uint64_t gpa, std::span<std::byte> out);
  void answer(const ReceivedEvent& event);

  Session& s_;
  GuestDescription guest_;
  std::uint32_t vcpus_ = 0;
  std::vector<Region> regions_;
  bool pf_on_ = false, msr_on_ = false;
  // CR3 (page-aligned) -> "name (pid N)", re-read from guest memory on a miss.
  std::map<std::uint64_t, std::string> processes_;
  std::map<std::string, int> blocked_;
};

// Kernel addresses are identity-mapped in this guest, but asking the vCPU's page tables keeps the
// guardian right if that ever changes; early in boot they may not map it yet.
std::uint64_t Guardian::kernel_gpa(std::uint64_t gva) {
  auto gpa = s_.translate_gva(0, gva);
  if (gpa && *gpa != kvmi::kInvalidGpa) return *gpa;
  return gva;
}

Region Guardian::region_of(const std::string& name, std::uint64_t start, std::uint64_t end) {
  Region region{name, {}};
  for (std::uint64_t page = start & ~(kPage - 1); page < end; page += kPage) {
    region.pages.push_back(kernel_gpa(page) & ~(kPage - 1));
  }
  return region;
}

bool Guardian::arm() {
  auto count = s_.get_vcpu_count();
  if (!count) {
    std::fprintf(stderr, "guardian: %s\n", count.error().message.c_str());
    return false;
  }
  vcpus_ = *count;
  regions_.push_back(region_of("kernel-text", guest_.text_start, guest_.text_end));
  regions_.push_back(
      region_of("syscall-table", guest_.table_start, guest_.table_start + guest_.table_size));

  // Each protection stands on its own: a VMM that cannot do one still gets the other, with a
  // warning, rather than no guardian at all.
  const bool pages = arm_pages();
  const bool lstar = arm_lstar();
  if (!pages && !lstar) return false;
  const std::uint32_t msrs[] = {kMsrLstar};
  auto regs = s_.get_registers(0, msrs);
  const std::uint64_t now = regs && !regs->msrs.empty() ? regs->msrs[0].data : 0;
  std::printf("guardian: LSTAR is %#llx (the kernel's entry is %#llx); writes %s\n",
              static_cast<unsigned long long>(now),
              static_cast<unsigned long long>(guest_.syscall_entry),
              lstar ? ("tracked on " + std::to_string(vcpus_) + " vCPUs").c_str() : "NOT tracked");
  refresh_processes();
  std::fflush(stdout);
  return true;
}

bool Guardian::arm_pages() {
  // Events before restrictions, so no violation can slip between the two.
  for (std::uint16_t v = 0; v < vcpus_; ++v) {
    if (auto r = s_.control_vcpu_events(v, kvmi::EventId::Pf, true); !r) {
      std::fprintf(stderr,
                   "guardian: warning: kernel pages left unprotected: PF events on vCPU %u: %s\n",
                   v, r.error().message.c_str());
      return false;
    }
    pf_on_ = true;
  }
  for (const auto& region : regions_) {
    std::vector<kvmi::PageAccessEntry> entries;
    for (auto page : region.pages) {
      kvmi::PageAccessEntry e{};
      e.gpa = page;
      e.access = kvmi::kPageAccessR | kvmi::kPageAccessX;
      entries.push_back(e);
    }
    if (auto r = s_.set_page_access(entries); !r) {
      std::fprintf(stderr, "guardian: warning: cannot write-protect the %s: %s\n",
                   region.name.c_str(), r.error().message.c_str());
      return false;
    }
    std::printf("guardian: %s %#llx-%#llx (%zu page%s) is now r-x\n", region.name.c_str(),
                static_cast<unsigned long long>(region.pages.front()),
                static_cast<unsigned long long>(region.pages.back() + kPage), region.pages.size(),
                region.pages.size() == 1 ? "" : "s");
  }
  return true;
}

bool Guardian::arm_lstar() {
  for (std::uint16_t v = 0; v < vcpus_; ++v) {
    msr_on_ = true;  // whatever got through is undone by disarm()
    auto tracked = s_.control_msr(v, kMsrLstar, true);
    auto enabled = tracked ? s_.control_vcpu_events(v, kvmi::EventId::Msr, true) : tracked;
    if (!enabled) {
      std::fprintf(stderr, "guardian: warning: LSTAR left unprotected: vCPU %u: %s\n", v,
                   enabled.error().message.c_str());
      return false;
    }
  }
  return true;
}

bool Guardian::read_guest(std::uint64_t gpa, std::span<std::byte> out) {
  // One page per KVMI read.
  while (!out.empty()) {
    const std::size_t n = std::min<std::uint64_t>(out.size(), kPage - (gpa & (kPage - 1)));
    if (!s_.read_physical(gpa, out.first(n))) return false;
    out = out.subspan(n);
    gpa += n;
  }
  return true;
}

void Guardian::refresh_processes() {
  const std::uint64_t base = kernel_gpa(guest_.procs);
  const std::size_t header = std::max({guest_.off_pid + 4, guest_.off_state + 4, guest_.off_cr3 + 8,
                                       guest_.off_name + guest_.name_size});
  std::vector<std::byte> bytes(header);
  for (std::uint32_t i = 0; i < guest_.proc_max; ++i) {
    if (!read_guest(base + i * guest_.proc_stride, bytes)) return;
    std::uint32_t pid = 0, state = 0;
    std::uint64_t cr3 = 0;
    std::memcpy(&pid, bytes.data() + guest_.off_pid, 4);
    std::memcpy(&state, bytes.data() + guest_.off_state, 4);
    std::memcpy(&cr3, bytes.data() + guest_.off_cr3, 8);
    if (state == 0 || cr3 == 0) continue;  // an unused slot
    std::string name(reinterpret_cast<const char*>(bytes.data() + guest_.off_name),
                     guest_.name_size);
    name.resize(std::strlen(name.c_str()));
    processes_[cr3 & ~(kPage - 1)] = name + " (pid " + std::to_string(pid) + ")";
  }
}

std::string Guardian::who(const ReceivedEvent& event) {
  const auto& sregs = event.common().arch.sregs;
  const std::uint64_t cr3 = sregs.cr3 & ~(kPage - 1);
  if (!processes_.contains(cr3)) refresh_processes();
  char where[96];
  std::snprintf(where, sizeof where, ", cr3 %#llx, cpl %u, rip %#llx, vCPU %u",
                static_cast<unsigned long long>(sregs.cr3), sregs.cs.selector & 3u,
                static_cast<unsigned long long>(event.common().arch.regs.rip), event.vcpu());
  auto it = processes_.find(cr3);
  return (it != processes_.end() ? it->second : std::string("an unknown context")) + where;
}

kvmi::EventAction Guardian::on_pf(const ReceivedEvent& event) {
  const auto pf = event.specific_as<kvmi::EventPf>();
  for (const auto& region : regions_) {
    if (!region.contains(pf.gpa)) continue;
    if (pf.access != kvmi::kPageAccessW) break;  // reads and fetches stay allowed
    ++blocked_[region.name];
    std::printf("guardian: blocked a write to the %s at gpa %#llx by %s\n", region.name.c_str(),
                static_cast<unsigned long long>(pf.gpa), who(event).c_str());
    std::fflush(stdout);
    return kvmi::EventAction::Retry;  // restriction kept: the write is dropped
  }
  return kvmi::EventAction::Continue;
}

std::uint64_t Guardian::on_msr(const ReceivedEvent& event) {
  const auto msr = event.specific_as<kvmi::EventMsr>();
  if (msr.msr != kMsrLstar || msr.new_value == guest_.syscall_entry) return msr.new_value;
  ++blocked_["lstar"];
  std::printf("guardian: blocked LSTAR %#llx -> %#llx by %s\n",
              static_cast<unsigned long long>(msr.old_value),
              static_cast<unsigned long long>(msr.new_value), who(event).c_str());
  std::fflush(stdout);
  return msr.old_value;
}

void Guardian::answer(const ReceivedEvent& event) {
  switch (static_cast<kvmi::EventId>(event.event_id())) {
    case kvmi::EventId::Pf:
      (void)s_.reply_event(event, on_pf(event));
      break;
    case kvmi::EventId::Msr:
      (void)s_.reply_msr_event(event, kvmi::EventAction::Continue, on_msr(event));
      break;
    case kvmi::EventId::Unhook:
      break;  // answered by leaving
    default:
      (void)s_.reply_event(event, kvmi::EventAction::Continue);
  }
}

bool Guardian::watch() {
  while (g_stop_signal.load() == 0) {
    auto event = s_.wait_event(200ms);
    if (!event) {
      if (event.error().kind == glassbox::client::ErrorKind::Timeout) continue;
      return true;  // the VM went away
    }
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::Unhook)) return false;
    answer(*event);
  }
  return false;
}

void Guardian::disarm() {
  // A vCPU command queues behind the answers already sent to that vCPU, so once it has replied
  // the last RETRY has been taken in; lifting a page before that would let the dropped write land.
  for (std::uint16_t v = 0; v < vcpus_; ++v) (void)s_.get_vcpu_tsc_speed(v);
  for (const auto& region : regions_) {
    std::vector<kvmi::PageAccessEntry> entries;
    for (auto page : region.pages) {
      kvmi::PageAccessEntry e{};
      e.gpa = page;
      e.access = kvmi::kPageAccessRwx;
      entries.push_back(e);
    }
    (void)s_.set_page_access(entries);
  }
  for (std::uint16_t v = 0; v < vcpus_; ++v) {
    if (msr_on_) {
      (void)s_.control_vcpu_events(v, kvmi::EventId::Msr, false);
      (void)s_.control_msr(v, kMsrLstar, false);
    }
    if (pf_on_) (void)s_.control_vcpu_events(v, kvmi::EventId::Pf, false);
  }
  // Attempts that were already waiting are still attempts made under protection.
  while (auto event = s_.poll_event()) answer(*event);
}

void Guardian::print_summary() const {
  auto count = [this](const char* name) {
    auto it = blocked_.find(name);
    return it == blocked_.end() ? 0 : it->second;
  };
  std::printf("guardian: blocked %d kernel-text, %d syscall-table and %d LSTAR write(s)\n",
              count("kernel-text"), count("syscall-table"), count("lstar"));
  std::fflush(stdout);
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --guest GUEST.json (--accept PATH | --connect PATH)\n"
               "  --guest    the guest kernel's description (glassbox-guest.json)\n"
               "  --accept   listen on PATH for a VMM started with --introspect unix:PATH\n"
               "  --connect  connect to a VMM started with --introspect listen:unix:PATH\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string guest_path, accept_path, connect_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    if (arg == "--guest") {
      guest_path = argv[++i];
    } else if (arg == "--accept") {
      accept_path = argv[++i];
    } else if (arg == "--connect") {
      connect_path = argv[++i];
    } else {
      return usage(argv[0]);
    }
  }
  if (guest_path.empty() || accept_path.empty() == connect_path.empty()) return usage(argv[0]);
  auto guest = load_description(guest_path);
  if (!guest) return 2;

  struct sigaction action {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // the session's reader thread may be the one interrupted
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::unique_ptr<Session> session;
  if (!accept_path.empty()) {
    auto listener = glassbox::client::Listener::listen(accept_path);
    if (!listener) {
      std::fprintf(stderr, "guardian: %s\n", listener.error().message.c_str());
      return 1;
    }
    std::printf("guardian: waiting for the VMM on %s\n", accept_path.c_str());
    std::fflush(stdout);
    while (!session && g_stop_signal.load() == 0) {
      auto accepted = listener->accept({}, 500ms);
      if (accepted) {
        session = std::move(*accepted);
      } else if (accepted.error().kind != glassbox::client::ErrorKind::Timeout) {
        std::fprintf(stderr, "guardian: %s\n", accepted.error().message.c_str());
        return 1;
      }
    }
  } else {
    // The VMM may still be starting: its socket appears a moment after it does.
    for (int i = 0; i < 100 && !session && g_stop_signal.load() == 0; ++i) {
      if (auto s = Session::connect(connect_path)) {
        session = std::move(*s);
      } else {
        std::this_thread::sleep_for(100ms);
      }
    }
  }
  if (!session) {
    std::fprintf(stderr, "guardian: no VMM to guard\n");
    return 1;
  }
  std::printf("guardian: attached to VM \"%s\"\n", session->vm().name.c_str());
  std::fflush(stdout);

  // The world stays stopped while the guardian arms, so nothing in the guest (an attacker that
  // happens to run right now) slips between setting up the event and restricting the page.
  auto paused = session->pause_all();
  if (!paused) {
    std::fprintf(stderr, "guardian: cannot pause the VM: %s\n", paused.error().message.c_str());
    return 1;
  }
  Guardian guardian(*session, *guest);
  const bool armed = guardian.arm();
  if (!armed) guardian.disarm();
  if (auto r = session->resume_all(*paused); !r) {
    std::fprintf(stderr, "guardian: cannot resume the VM: %s\n", r.error().message.c_str());
    return 1;
  }
  if (!armed) return 1;
  const bool vm_gone = guardian.watch();
  if (vm_gone) {
    std::printf("guardian: the VM went away\n");
  } else {
    guardian.disarm();
    std::printf("guardian: protections lifted; detaching\n");
  }
  guardian.print_summary();
  session->close();
  return 0;
}
