// Turning the global options into a connected, handshaken session.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "ctl.h"
#include "glassbox/client/listener.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

std::chrono::milliseconds timeout_of(const GlobalOptions& options) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(options.timeout_seconds * 1000.0));
}

}  // namespace

void check_global_options(const GlobalOptions& options) {
  if (options.connect.empty() == options.accept.empty()) {
    if (options.connect.empty()) {
      throw UsageError("--connect/--accept", "no VMM to talk to",
                       "pass --connect unix:PATH (glassbox --introspect listen:unix:PATH) or "
                       "--accept unix:PATH (glassbox --introspect unix:PATH)");
    }
    throw UsageError("--connect/--accept", "both were given", "pass exactly one of them");
  }
  const bool connecting = !options.connect.empty();
  auto endpoint = parse_endpoint(connecting ? options.connect : options.accept);
  if (!endpoint) {
    throw UsageError(connecting ? "--connect" : "--accept", endpoint.error(),
                     "write it as unix:/path/to/socket");
  }
  if (!(options.timeout_seconds > 0.0)) {
    throw UsageError("--timeout", "must be positive", "pass a number of seconds such as 10");
  }
}

client::Result<std::unique_ptr<client::Session>> open_session(const GlobalOptions& options) {
  client::SessionOptions session_options;
  session_options.handshake_timeout = timeout_of(options);
  session_options.reply_timeout = timeout_of(options);
  if (!options.secret_file.empty()) {
    auto secret = client::read_secret_file(options.secret_file);
    if (!secret) return std::unexpected(std::move(secret.error()));
    session_options.secret = std::move(*secret);
  }
  if (!options.connect.empty()) {
    return client::Session::connect(parse_endpoint(options.connect)->path,
                                    std::move(session_options));
  }
  auto listener = client::Listener::listen(parse_endpoint(options.accept)->path);
  if (!listener) return std::unexpected(std::move(listener.error()));
  if (!options.json) {
    // A human waiting on --accept wants to know the tool is ready for the VMM.
    std::fprintf(stderr, "waiting for the VMM on %s ...\n", listener->path().c_str());
  }
  return listener->accept(std::move(session_options), timeout_of(options));
}

std::uint64_t size_argument(const std::string& argument, const std::string& text) {
  auto value = parse_size(text);
  if (!value) {
    throw UsageError(argument, value.error(),
                     "use a decimal or 0x-hex number, optionally with K, M or G (e.g. 0x7000, 4K)");
  }
  return *value;
}

std::uint32_t msr_argument(const std::string& argument, const std::string& text) {
  auto value = parse_msr(text);
  if (!value) {
    throw UsageError(argument, value.error(),
                     "give an MSR index such as 0xc0000082 or a name such as lstar");
  }
  return *value;
}

std::string socket_path(const GlobalOptions& options) {
  auto endpoint = parse_endpoint(options.connect.empty() ? options.accept : options.connect);
  return endpoint ? endpoint->path : std::string();
}

std::string pause_pid_path(const GlobalOptions& options) {
  return socket_path(options) + ".pause-pid";
}

std::uint32_t vcpu_argument(const std::string& argument, const std::string& text, bool allow_all) {
  if (allow_all && text == "all") return kAllVcpus;
  auto value = parse_size(text);
  if (!value || *value > 0xfffe) {
    throw UsageError(
        argument, value ? "'" + text + "' is too large" : value.error(),
        allow_all ? "give a vCPU index (0, 1, ...) or 'all'" : "give a vCPU index (0, 1, ...)");
  }
  return static_cast<std::uint32_t>(*value);
}

std::expected<std::uint32_t, int> checked_vcpu_count(client::Session& session, const Output& out,
                                                     const std::string& argument,
                                                     std::uint32_t vcpu) {
  auto count = session.get_vcpu_count();
  if (!count) return std::unexpected(out.vmm_error(count.error(), "cannot get the vCPU count"));
  if (vcpu != kAllVcpus && vcpu >= *count) {
    // Only the VMM knows the count, so this usage error is found after connecting.
    std::fprintf(stderr, "glassbox-ctl: %s: vCPU %u does not exist; the VM has %u (0-%u)\n",
                 argument.c_str(), vcpu, *count, *count - 1);
    if (out.json()) {
      out.print_json({{"error",
                       {{"kind", "usage"},
                        {"message", fmt::format("{}: vCPU {} does not exist; the VM has {}",
                                                argument, vcpu, *count)}}}});
    }
    return std::unexpected(kExitUsage);
  }
  return *count;
}

void Output::print_json(const nlohmann::json& value) const {
  std::fputs((value.dump(2) + "\n").c_str(), stdout);
}

int Output::vmm_error(const client::Error& error, const std::string& context) const {
  std::string text = context.empty() ? error.message : context + ": " + error.message;
  if (error.kind == client::ErrorKind::Closed) {
    // The §5.3 handshake has no refusal message: a VMM that rejects the cookie just closes, and
    // the tool only learns it at its first command.
    text +=
        " (the VMM closed the connection; if it runs with --secret, pass the same file "
        "with --secret)";
  }
  std::fprintf(stderr, "glassbox-ctl: %s\n", text.c_str());
  if (json_) {
    nlohmann::json j;
    j["error"] = {{"kind", std::string(client::error_kind_name(error.kind))},
                  {"code", error.code},
                  {"message", text}};
    print_json(j);
  }
  return kExitVmm;
}

}  // namespace glassbox::ctl
