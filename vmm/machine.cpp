#include "vmm/machine.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <poll.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "glassbox/boot/boot_info.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/power.h"
#include "vmm/devices/sink_port.h"
#include "vmm/loader/elf_loader.h"
#include "vmm/loader/linux_loader.h"
#include "vmm/msr_filter.h"
#include "vmm/x86/acpi_tables.h"
#include "vmm/x86/boot_setup.h"

namespace glassbox::vmm {

namespace {
// Placed outside RAM below 4 GiB, as Firecracker and kvmtool do (only VMX uses them).
constexpr std::uint64_t kTssGpa = 0xfffbd000;
constexpr std::uint64_t kIdentityMapGpa = 0xfffbc000;
constexpr std::uint64_t kMinMemory = 2ULL << 20;
}  // namespace

std::optional<std::uint64_t> parse_size(const std::string& text) {
  std::size_t pos = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
  if (pos == 0 || pos > 15) return std::nullopt;
  std::uint64_t value = std::stoull(text.substr(0, pos));
  std::string unit = text.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB")
    shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB")
    shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB")
    shift = 30;
  else
    return std::nullopt;
  if (value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::expected<std::unique_ptr<Machine>, std::string> Machine::create(
    const MachineConfig& config, const kvm::System& system, const kvm::HostQuirks& quirks) {
  if (!quirks.sync_regs) {
    return std::unexpected(
        "this host's KVM lacks KVM_CAP_SYNC_REGS (Linux 4.15 or newer has it); glassbox needs it");
  }
  const int max_cpus = std::min(quirks.max_vcpus, GLASSBOX_MAX_VCPUS);
  if (config.cpus < 1 || config.cpus > max_cpus) {
    return std::unexpected(
        fmt::format("--cpus {}: must be between 1 and {} on this host", config.cpus, max_cpus));
  }
  auto protocol = detect_boot_protocol(config.kernel);
  if (!protocol) return std::unexpected("--kernel: " + protocol.error());
  const bool linux_guest = *protocol == BootProtocol::kLinux;
  if (config.initrd && !linux_guest) {
    return std::unexpected(
        fmt::format("--initrd: {} is a glassbox ELF kernel; an initrd is for a Linux bzImage",
                    config.kernel.string()));
  }
  auto kernel_end =
      linux_guest ? linux_kernel_memory_end(config.kernel) : elf_kernel_memory_end(config.kernel);
  if (!kernel_end) return std::unexpected("--kernel: " + kernel_end.error());
  const std::uint64_t needed =
      std::max<std::uint64_t>(kMinMemory, (*kernel_end + (1 << 20) - 1) & ~((1ULL << 20) - 1));
  if (config.memory_bytes < needed) {
    return std::unexpected(fmt::format(
        "--memory {} MiB is too small: the kernel needs at least {} MiB (use --memory {}M or more)",
        config.memory_bytes >> 20, needed >> 20, needed >> 20));
  }
  if (config.memory_bytes > GuestMemory::kLowRamLimit) {
    return std::unexpected(fmt::format("--memory {} MiB is too large: at most {} MiB for now",
                                       config.memory_bytes >> 20, GuestMemory::kLowRamLimit >> 20));
  }
  if (config.memory_bytes % GuestMemory::kPageSize != 0) {
    return std::unexpected("--memory: must be a multiple of 4 KiB");
  }
  if (config.cmdline.size() >= GLASSBOX_CMDLINE_MAX) {
    return std::unexpected(fmt::format("--cmdline: {} bytes is too long (at most {})",
                                       config.cmdline.size(), GLASSBOX_CMDLINE_MAX - 1));
  }

  auto vm = system.create_vm();
  if (!vm) return std::unexpected(vm.error().message());
  if (auto r = vm->set_tss_addr(kTssGpa); !r) return std::unexpected(r.error().message());
  if (auto r = vm->set_identity_map_addr(kIdentityMapGpa); !r) {
    spdlog::debug("{} (not needed on this host)", r.error().message());
  }
  if (auto r = vm->create_irqchip(); !r) return std::unexpected(r.error().message());
  // Linux calibrates and, without a TSC deadline timer, ticks with the PIT; the bundled guest
  // never programs one, so it gets none (nothing changes for it).
  if (linux_guest) {
    if (auto r = vm->create_pit2(); !r) return std::unexpected(r.error().message());
  }

  auto memory = GuestMemory::create(config.memory_bytes);
  if (!memory) return std::unexpected(memory.error().message());
  if (auto r = memory->register_slots(*vm); !r) return std::unexpected(r.error().message());

  std::unique_ptr<Machine> machine(new Machine(config, std::move(*vm), std::move(*memory), quirks));
  auto supported = system.supported_cpuid();
  if (!supported) return std::unexpected(supported.error().message());
  machine->supported_cpuid_ = std::move(*supported);

  machine->boot_.protocol = *protocol;
  machine->boot_.cpuid.glassbox_leaves = !linux_guest;
  machine->boot_.cpuid.tsc_deadline_timer =
      linux_guest && machine->vm_.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  // VMCALL is offered to the guest only where it reaches us: hardware KVM with the Xen intercept.
  // Not to Linux: the intercept takes every hypercall from KVM, and Linux makes KVM's own (PV
  // IPIs, spinlock kicks), which must stay in the kernel.
  machine->boot_.cpuid.cpuid_flags = GLASSBOX_CPUID_FLAG_DOORBELL;
  if (quirks.vmcall_reaches_vmm && !linux_guest) {
    kvm_xen_hvm_config xen{};
    xen.flags = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL;
    if (ioctl(machine->vm_.fd(), KVM_XEN_HVM_CONFIG, &xen) == 0) {
      machine->boot_.cpuid.cpuid_flags |= GLASSBOX_CPUID_FLAG_VMCALL;
    } else {
      spdlog::warn("KVM_XEN_HVM_CONFIG failed; guests will use the doorbell port only");
    }
  }

  // An instruction KVM cannot emulate (an AVX store to a write-protected page, a fetch from a
  // page taken out of the slots) comes to user space with its bytes at every CPL, instead of a
  // #UD that KVM would queue for the guest at CPL3: the introspection intercepts explain most of
  // them as page-access events; the exit loop gives the rest the #UD KVM would have.
  if (quirks.exit_on_emulation_failure) {
    if (auto r = machine->vm_.enable_cap(KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1); !r) {
      spdlog::debug("{}: emulation failures at CPL3 stay with KVM", r.error().message());
    }
  }

  // Filtered WRMSRs exit to user space (KVMI_EVENT_MSR). Only the filter's reason: MSRs KVM does
  // not know keep raising #GP in the guest as they always did. Enabled once, before any filter;
  // without it a filter would turn intercepted writes into #GPs.
  if (quirks.msr_filter) {
    if (auto r = machine->vm_.enable_cap(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER);
        r) {
      machine->msr_exits_ = true;
    } else {
      spdlog::debug("{}: MSR write interception unavailable", r.error().message());
    }
  } else {
    spdlog::debug("host has no MSR filter: MSR write interception unavailable");
  }

  if (linux_guest) {
    if (auto r = machine->load_linux(); !r) return std::unexpected(r.error());
  } else {
    auto loaded = load_elf_kernel(config.kernel, machine->memory_, GLASSBOX_KERNEL_MIN_GPA);
    if (!loaded) return std::unexpected("--kernel: " + loaded.error());
    machine->boot_.entry_gpa = loaded->entry_gpa;
  }

  auto stop = [m = machine.get()](StopRequest r) { m->request_stop(std::move(r)); };
  // COM1's interrupt is ISA IRQ 4: an edge on the in-kernel PIC and IOAPIC.
  auto com1_irq = [m = machine.get()] {
    constexpr std::uint32_t kCom1Irq = 4;
    if (auto r = m->vm_.irq_line(kCom1Irq, true); !r) {
      spdlog::warn("serial interrupt: {}", r.error().message());
      return;
    }
    (void)m->vm_.irq_line(kCom1Irq, false);
  };
  machine->serial_ = std::make_shared<Serial8250>(config.console_fd, com1_irq);
  machine->doorbell_ = std::make_shared<Doorbell>();
  // The KVMI hypercall through the doorbell: the answer lands in RAX, as a hypercall's would.
  machine->doorbell_->set_listener([m = machine.get()](const AccessContext& ctx) {
    if (ctx.vcpu == nullptr) return;
    const std::uint64_t result = m->intercepts().on_hypercall(*ctx.vcpu);
    ctx.vcpu->mutable_regs().rax = result;
  });
  machine->io_bus_.add(GLASSBOX_PORT_COM1, 8, machine->serial_);
  machine->io_bus_.add(GLASSBOX_PORT_POWER, 4, std::make_shared<PowerOffPort>(stop));
  machine->io_bus_.add(GLASSBOX_PORT_RESET, 1, std::make_shared<ResetControl>(stop));
  machine->io_bus_.add(GLASSBOX_PORT_DOORBELL, 4, machine->doorbell_);
  machine->io_bus_.add(I8042::kDataPort, 5, std::make_shared<I8042>(stop));
  machine->io_bus_.add(AcpiPm::kBasePort, AcpiPm::kLength, std::make_shared<AcpiPm>(stop));
  // Port 0x80 (POST codes) is where Linux's outb_p() pauses: accepted and ignored, silently.
  machine->io_bus_.add(0x80, 1, std::make_shared<SinkPort>("post-code"));

  std::uint64_t tsc_khz = 0;
  for (int i = 0; i < config.cpus; ++i) {
    auto vcpu = machine->vm_.create_vcpu(i);
    if (!vcpu) return std::unexpected(vcpu.error().message());
    // The guest wants the TSC rate in its boot info before any vCPU runs, so this one ioctl is
    // issued here, before the vCPU's thread exists (nothing else can touch the vCPU yet).
    if (i == 0) {
      if (auto khz = vcpu->get_tsc_khz()) tsc_khz = *khz;
    }
    machine->vcpus_.push_back(std::make_unique<VcpuThread>(*machine, std::move(*vcpu)));
  }
  if (!linux_guest) {
    x86::BootParameters params{.cmdline = config.cmdline,
                               .vcpu_count = config.cpus,
                               .cpuid_flags = machine->boot_.cpuid.cpuid_flags,
                               .tsc_khz = tsc_khz};
    auto cr3 = x86::write_boot_structures(machine->memory_, params);
    if (!cr3) return std::unexpected(cr3.error());
    machine->boot_.cr3 = *cr3;
  }
  return machine;
}

std::expected<BootProtocol, std::string> Machine::detect_boot_protocol(
    const std::filesystem::path& kernel) {
  std::ifstream file(kernel, std::ios::binary);
  if (!file) return std::unexpected(fmt::format("cannot open {}", kernel.string()));
  std::vector<std::uint8_t> head(0x300);
  file.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(file.gcount()));
  if (head.size() >= 4 && std::memcmp(head.data(),
                                      "\x7f"
                                      "ELF",
                                      4) == 0) {
    return BootProtocol::kGlassboxElf;
  }
  if (looks_like_bzimage(head)) return BootProtocol::kLinux;
  return std::unexpected(fmt::format(
      "{} is neither an ELF64 kernel nor a Linux bzImage (no ELF magic, no \"HdrS\" boot "
      "header)",
      kernel.string()));
}

std::expected<void, std::string> Machine::load_linux() {
  // The PC memory map: low RAM, the EBDA/BIOS area (holding the ACPI tables) reserved, RAM from
  // 1 MiB to the end.
  constexpr std::uint64_t kLowRamEnd = 0x9fc00, kHighRamStart = 0x100000;
  const std::vector<E820Entry> e820 = {
      {0, kLowRamEnd, 1},
      {kLowRamEnd, kHighRamStart - kLowRamEnd, 2},
      {kHighRamStart, memory_.size() - kHighRamStart, 1},
  };
  const auto acpi = x86::write_acpi_tables(memory_, config_.cpus);
  LinuxBootRequest request{.kernel = config_.kernel,
                           .initrd = config_.initrd,
                           .cmdline = config_.cmdline,
                           .e820 = e820,
                           .acpi_rsdp_gpa = acpi.rsdp_gpa};
  auto loaded = load_linux_kernel(request, memory_);
  if (!loaded) {
    return std::unexpected(loaded.error().starts_with("--") ? loaded.error()
                                                            : "--kernel: " + loaded.error());
  }
  boot_.entry_gpa = loaded->entry_gpa;
  boot_.boot_params_gpa = loaded->boot_params_gpa;
  boot_.cr3 = x86::write_linux_boot_structures(memory_);
  spdlog::debug("Linux: kernel at {:#x}, entry {:#x}, initrd {:#x} ({} bytes), ACPI RSDP {:#x}",
                loaded->kernel_gpa, loaded->entry_gpa, loaded->initrd_gpa, loaded->initrd_size,
                acpi.rsdp_gpa);
  return {};
}

Machine::Machine(MachineConfig config, kvm::Vm vm, GuestMemory memory,
                 const kvm::HostQuirks& quirks)
    : config_(std::move(config)),
      vm_(std::move(vm)),
      memory_(std::move(memory)),
      quirks_(quirks),
      stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Machine::~Machine() {
  if (!stop_requested()) request_stop({StopKind::kVmmError, kVmmErrorStatus, "machine destroyed"});
  for (auto& v : vcpus_) v->join();
  if (console_input_.joinable()) console_input_.join();
}

void Machine::start() {
  VcpuThread::install_kick_handler();
  for (auto& v : vcpus_) v->start();
  if (config_.console_input_fd >= 0) console_input_ = std::thread([this] { pump_console_input(); });
}

void Machine::pump_console_input() {
  std::uint8_t buffer[256];
  std::size_t have = 0, done = 0;
  while (!stop_requested()) {
    if (done < have) {
      done += serial_->receive(std::span(buffer + done, have - done));
      // The guest reads at its own pace; wait for room, and look at the stop flag meanwhile.
      if (done < have) serial_->wait_for_room(100);
      continue;
    }
    pollfd fds[2] = {{config_.console_input_fd, POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (!fds[0].revents) continue;
    const ssize_t n = ::read(config_.console_input_fd, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // end of input: the guest sees no more bytes, and runs on
    have = static_cast<std::size_t>(n);
    done = 0;
  }
}

void Machine::request_stop(StopRequest request) {
  {
    std::lock_guard lock(stop_mutex_);
    if (!stop_) stop_ = std::move(request);
    stop_requested_.store(true, std::memory_order_seq_cst);
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
  for (auto& v : vcpus_) v->kick();
}

StopRequest Machine::wait_for_stop() {
  for (auto& v : vcpus_) v->join();
  if (console_input_.joinable()) console_input_.join();
  if (serial_) serial_->flush();
  std::lock_guard lock(stop_mutex_);
  return stop_.value_or(StopRequest{StopKind::kVmmError, kVmmErrorStatus, "vCPUs ended"});
}

bool Machine::set_msr_write_intercepts(const std::set<std::uint32_t>& msrs) {
  // Without user-space MSR exits no filter was ever installed: nothing to remove, nothing to add.
  if (!msr_exits_) return msrs.empty();
  for (std::uint32_t msr : msrs) {
    if (!MsrWriteFilter::filterable(msr)) return false;
  }
  const MsrWriteFilter filter(msrs);
  // A VM ioctl, valid from any thread; the lock makes concurrent replacements (vCPU threads
  // running CONTROL_MSR, the receiving thread undoing a session) take effect one whole set at a
  // time.
  std::lock_guard lock(msr_filter_mutex_);
  if (auto r = vm_.set_msr_filter(filter.filter()); !r) {
    spdlog::warn("{} ({} MSRs)", r.error().message(), msrs.size());
    return false;
  }
  return true;
}

}  // namespace glassbox::vmm
