// glassbox-ctl: a command-line KVMI tool over the client library.
//
// Adding a subcommand: write commands/NAME.cpp with add_NAME_command(), declare it in ctl.h and
// call it below.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "ctl.h"

namespace {

using namespace glassbox::ctl;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "glassbox-ctl: %s\nRun 'glassbox-ctl --help' for usage.\n", message.c_str());
  return kExitUsage;
}

int run(int argc, char** argv) {
  Ctl ctl;
  CLI::App app{"glassbox-ctl: inspect and control a glassbox VM over KVMI", "glassbox-ctl"};
  // At most one command; none is reported below with the list. An unknown word then fails as an
  // unexpected argument that CLI11 names, instead of as "a subcommand is required".
  app.require_subcommand(0, 1);
  app.add_option("--connect", ctl.options.connect,
                 "unix:PATH of a VMM started with --introspect listen:unix:PATH");
  app.add_option("--accept", ctl.options.accept,
                 "unix:PATH to listen on for a VMM started with --introspect unix:PATH");
  app.add_option("--secret", ctl.options.secret_file,
                 "File whose bytes are the shared secret (the VMM's --secret)");
  app.add_flag("--json", ctl.options.json, "Print results (and errors) as JSON on stdout");
  app.add_option("--timeout", ctl.options.timeout_seconds,
                 "Seconds to wait for the VMM: accept, handshake and each reply")
      ->capture_default_str();

  add_info_command(app, ctl);
  add_read_command(app, ctl);
  add_write_command(app, ctl);
  add_dump_command(app, ctl);
  add_regs_command(app, ctl);
  add_pause_command(app, ctl);
  add_resume_command(app, ctl);
  add_translate_command(app, ctl);
  add_inject_command(app, ctl);
  add_watch_command(app, ctl);
  add_protect_command(app, ctl);
  add_msr_command(app, ctl);
  add_break_command(app, ctl);
  add_step_command(app, ctl);

  try {
    app.parse(argc, argv);
    if (!ctl.run && !ctl.run_local) {
      return usage_error(
          "no command given; use info, read, write, dump, regs, pause, resume, translate, "
          "inject, watch, protect, msr, break or step");
    }
    check_global_options(ctl.options);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  } catch (const UsageError& e) {
    return usage_error(e.what());
  }
  Output out(ctl.options.json);
  if (ctl.run_local) return ctl.run_local(out);
  auto session = open_session(ctl.options);
  if (!session) return out.vmm_error(session.error(), "cannot open a KVMI session");
  int status = ctl.run(**session, out);
  (*session)->close();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // Only allocation failures and the like get here; commands report their own errors.
    std::fprintf(stderr, "glassbox-ctl: internal error: %s\n", e.what());
    return kExitVmm;
  }
}
