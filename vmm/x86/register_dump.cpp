#include "vmm/x86/register_dump.h"

#include <fmt/format.h>

#include "vmm/x86/page_walk.h"

namespace glassbox::vmm::x86 {

namespace {
std::string segment(const char* name, const kvm_segment& s) {
  return fmt::format(
      "{:<3} sel={:#06x} base={:#018x} limit={:#010x} type={:#x} dpl={} p={} l={} db={}\n", name,
      s.selector, s.base, s.limit, s.type, s.dpl, s.present, s.l, s.db);
}
}  // namespace

std::string dump_vcpu_state(const kvm::Vcpu& vcpu, const GuestMemory& memory) {
  std::string out = fmt::format("vCPU {} state:\n", vcpu.index());
  auto regs = vcpu.get_regs();
  auto sregs = vcpu.get_sregs();
  if (!regs || !sregs) {
    return out + "  (registers unavailable: " +
           (regs ? sregs.error().message() : regs.error().message()) + ")\n";
  }
  const auto& r = *regs;
  out += fmt::format(
      "  rip={:#018x} rflags={:#010x}\n"
      "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n"
      "  rsi={:#018x} rdi={:#018x} rbp={:#018x} rsp={:#018x}\n"
      "  r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}\n"
      "  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}\n",
      r.rip, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10,
      r.r11, r.r12, r.r13, r.r14, r.r15);
  const auto& s = *sregs;
  out += fmt::format("  cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}\n", s.cr0, s.cr2, s.cr3,
                     s.cr4, s.efer);
  out += fmt::format("  gdt base={:#x} limit={:#x}  idt base={:#x} limit={:#x}\n", s.gdt.base,
                     s.gdt.limit, s.idt.base, s.idt.limit);
  for (auto [name, seg] : {std::pair{"cs", &s.cs}, {"ss", &s.ss}, {"ds", &s.ds}, {"tr", &s.tr}}) {
    out += "  " + segment(name, *seg);
  }
  // The instruction bytes at RIP help tell a wild jump from a bad instruction.
  const bool paging = (s.cr0 & 0x80000000) != 0;
  const bool five_level = (s.cr4 & (1u << 12)) != 0;
  auto where = paging ? translate(memory, s.cr3, r.rip, five_level)
                      : std::optional<Translation>(Translation{.gpa = r.rip});
  std::uint8_t code[16];
  if (where && memory.read(where->gpa, code, sizeof code)) {
    out += fmt::format("  code at rip (gpa {:#x}):", where->gpa);
    for (auto b : code) out += fmt::format(" {:02x}", b);
    out += "\n";
  } else {
    out += "  code at rip: not mapped in guest RAM\n";
  }
  return out;
}

}  // namespace glassbox::vmm::x86
