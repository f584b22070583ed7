// `glassbox-ctl regs [--vcpu N|all] [--msr IDX]... [--no-pause]`: vCPU registers, read while the
// world is stopped (so every vCPU is seen at one moment) or, with --no-pause, on the fly.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "ctl.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

std::string msr_label(std::uint32_t index) {
  return format_msr(index);
}

struct RegsArgs {
  std::string vcpu_text = "all";
  std::vector<std::string> msr_texts;
  bool no_pause = false;
  std::uint32_t vcpu = kAllVcpus;
  std::vector<std::uint32_t> msrs;
};

std::string hex64(std::uint64_t v) {
  return fmt::format("{:#018x}", v);
}

struct Row {
  std::string name;
  std::uint64_t value;
  bool selector;  // printed as 16 bits
};

std::vector<Row> rows_of(const client::Session::Registers& r) {
  const auto& g = r.regs;
  const auto& s = r.sregs;
  return {
      {"rax", g.rax, false},       {"rbx", g.rbx, false},   {"rcx", g.rcx, false},
      {"rdx", g.rdx, false},       {"rsi", g.rsi, false},   {"rdi", g.rdi, false},
      {"rbp", g.rbp, false},       {"rsp", g.rsp, false},   {"r8", g.r8, false},
      {"r9", g.r9, false},         {"r10", g.r10, false},   {"r11", g.r11, false},
      {"r12", g.r12, false},       {"r13", g.r13, false},   {"r14", g.r14, false},
      {"r15", g.r15, false},       {"rip", g.rip, false},   {"rflags", g.rflags, false},
      {"cr0", s.cr0, false},       {"cr2", s.cr2, false},   {"cr3", s.cr3, false},
      {"cr4", s.cr4, false},       {"efer", s.efer, false}, {"cs", s.cs.selector, true},
      {"ss", s.ss.selector, true},
  };
}

nlohmann::json json_of(std::uint16_t vcpu, const client::Session::Registers& r) {
  nlohmann::json j;
  j["vcpu"] = vcpu;
  j["mode"] = r.mode;
  j["cpl"] = r.sregs.cs.selector & 3;
  for (const auto& row : rows_of(r)) {
    j[row.name] = fmt::format("{:#x}", row.value);
  }
  nlohmann::json msrs = nlohmann::json::object();
  for (const auto& m : r.msrs) msrs[fmt::format("{:#x}", m.index)] = fmt::format("{:#x}", m.data);
  j["msrs"] = msrs;
  return j;
}

std::string table_of(const std::vector<std::pair<std::uint16_t, client::Session::Registers>>& all,
                     const std::vector<std::uint32_t>& msrs) {
  std::size_t label_width = 8;
  for (auto index : msrs) label_width = std::max(label_width, msr_label(index).size() + 2);
  std::string text = fmt::format("{:<{}}", "", label_width);
  for (const auto& [vcpu, regs] : all) text += fmt::format("{:<20}", fmt::format("vcpu {}", vcpu));
  while (text.back() == ' ') text.pop_back();
  text += "\n";
  auto line = [&](const std::string& label, auto cell) {
    text += fmt::format("{:<{}}", label, label_width);
    for (const auto& [vcpu, regs] : all) text += fmt::format("{:<20}", cell(regs));
    while (!text.empty() && text.back() == ' ') text.pop_back();
    text += "\n";
  };
  const std::size_t row_count = rows_of(all.front().second).size();
  for (std::size_t i = 0; i < row_count; ++i) {
    line(rows_of(all.front().second)[i].name, [i](const client::Session::Registers& r) {
      const auto row = rows_of(r)[i];
      return row.selector ? fmt::format("{:#06x} (cpl {})", row.value, row.value & 3)
                          : hex64(row.value);
    });
  }
  line("mode", [](const client::Session::Registers& r) {
    return fmt::format("{} ({}-bit)", r.mode, r.mode * 8);
  });
  for (std::size_t m = 0; m < msrs.size(); ++m) {
    line(msr_label(msrs[m]), [m](const client::Session::Registers& r) {
      return m < r.msrs.size() ? hex64(r.msrs[m].data) : std::string("?");
    });
  }
  return text;
}

int run_regs(const RegsArgs& args, client::Session& session, const Output& out) {
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  std::vector<std::uint16_t> selected;
  for (std::uint32_t v = 0; v < *count; ++v) {
    if (args.vcpu == kAllVcpus || args.vcpu == v) selected.push_back(static_cast<std::uint16_t>(v));
  }

  std::vector<client::ReceivedEvent> paused;
  if (!args.no_pause) {
    auto events = session.pause_all(session.options().reply_timeout);
    if (!events) return out.vmm_error(events.error(), "cannot stop the world");
    paused = std::move(*events);
  }
  std::vector<std::pair<std::uint16_t, client::Session::Registers>> all;
  std::optional<client::Error> failure;
  std::string failed_context;
  for (auto v : selected) {
    auto regs = session.get_registers(v, args.msrs);
    if (!regs) {
      failure = regs.error();
      failed_context = fmt::format("registers of vCPU {}", v);
      break;
    }
    all.emplace_back(v, std::move(*regs));
  }
  // Resume before printing: the VM is stopped only as long as reading takes.
  if (!args.no_pause) {
    auto resumed = session.resume_all(paused);
    if (!resumed && !failure) {
      failure = resumed.error();
      failed_context = "resume";
    }
  }
  if (failure) return out.vmm_error(*failure, failed_context);

  if (out.json()) {
    nlohmann::json vcpus = nlohmann::json::array();
    for (const auto& [v, regs] : all) vcpus.push_back(json_of(v, regs));
    out.print_json({{"paused", !args.no_pause}, {"vcpus", vcpus}});
  } else {
    std::fputs(table_of(all, args.msrs).c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace

void add_regs_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<RegsArgs>();
  auto* sub = app.add_subcommand(
      "regs", "Show vCPU registers (GPRs, RIP, RFLAGS, CRs, EFER, CS/SS, mode, MSRs)");
  sub->add_option("--vcpu", args->vcpu_text, "vCPU index, or 'all'")->capture_default_str();
  sub->add_option("--msr", args->msr_texts,
                  "Also read this MSR (index such as 0xc0000082, or a name such as lstar); "
                  "repeatable");
  sub->add_flag("--no-pause", args->no_pause,
                "Read running vCPUs instead of stopping the world while reading");
  sub->callback([&ctl, args] {
    args->vcpu = vcpu_argument("--vcpu", args->vcpu_text, true);
    args->msrs.clear();
    for (const auto& text : args->msr_texts) args->msrs.push_back(msr_argument("--msr", text));
    ctl.run = [args](client::Session& s, const Output& o) { return run_regs(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
