#include "introspection/server.h"

#include "introspection/vcpu_jobs.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "introspection/receiver.h"

namespace glassbox::introspection {

namespace {

void signal_fd(int fd) {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd, &one, sizeof(one));
}

void drain_fd(int fd) {
  std::uint64_t value = 0;
  [[maybe_unused]] auto n = ::read(fd, &value, sizeof(value));
}

bool readable(const pollfd& p) {
  return (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

int poll_ms(pollfd* fds, nfds_t count, std::chrono::milliseconds timeout) {
  for (;;) {
    int r = ::poll(fds, count, static_cast<int>(timeout.count()));
    if (r >= 0 || errno != EINTR) return r;
  }
}

}  // namespace

std::expected<std::unique_ptr<IntrospectionServer>, std::string> IntrospectionServer::create(
    ServerConfig config, VmTarget& vm) {
  std::optional<UnixListener> listener;
  if (config.endpoint.role == Endpoint::Role::Listen) {
    auto l = UnixListener::listen(config.endpoint.path);
    if (!l)
      return std::unexpected(
          fmt::format("--introspect {}: {}", config.endpoint.describe(), l.error()));
    listener.emplace(std::move(*l));
  }
  UniqueFd stop_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  UniqueFd wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd.valid() || !wake_fd.valid()) {
    return std::unexpected(fmt::format("eventfd: {}", std::strerror(errno)));
  }
  return std::unique_ptr<IntrospectionServer>(new IntrospectionServer(
      std::move(config), vm, std::move(listener), std::move(stop_fd), std::move(wake_fd)));
}

IntrospectionServer::IntrospectionServer(ServerConfig config, VmTarget& vm,
                                         std::optional<UnixListener> listener, UniqueFd stop_fd,
                                         UniqueFd wake_fd)
    : config_(std::move(config)),
      vm_(vm),
      listener_(std::move(listener)),
      stop_fd_(std::move(stop_fd)),
      wake_fd_(std::move(wake_fd)),
      holding_(config_.start_paused) {}

IntrospectionServer::~IntrospectionServer() {
  stop();
}

void IntrospectionServer::start() {
  spdlog::info("introspection: {} (VM '{}', uuid {}); allowed {}; KVMI dialect {}",
               config_.endpoint.describe(), config_.identity.name,
               format_uuid(config_.identity.uuid), config_.permissions.describe(),
               kvmi::dialect_name(config_.dialect));
  if (!config_.secret) {
    spdlog::warn(
        "introspection: no --secret given; any local process that can reach {} is "
        "accepted as the tool",
        config_.endpoint.path.string());
  }
  if (config_.start_paused) {
    spdlog::info(
        "introspection: --start-paused: every vCPU waits before its first instruction "
        "until a tool attaches");
  }
  thread_ = std::thread([this] { run(); });
}

void IntrospectionServer::request_unhook() {
  {
    std::lock_guard lock(session_mutex_);
    if (!session_ || session_->closed()) {
      spdlog::info("introspection: unhook requested, but no tool is attached");
      return;
    }
    unhook_target_ = session_.get();
  }
  spdlog::info("introspection: unhook requested for the attached tool");
  signal_fd(wake_fd_.get());
}

bool IntrospectionServer::take_unhook_request(const Session& session) {
  std::lock_guard lock(session_mutex_);
  bool for_this_session = unhook_target_ == &session;
  unhook_target_ = nullptr;
  return for_this_session;
}

void IntrospectionServer::stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true, std::memory_order_release);
    signal_fd(stop_fd_.get());
    if (thread_.joinable()) thread_.join();
  });
}

void IntrospectionServer::before_entry(vmm::VcpuThread& vcpu) {
  // Every vCPU passes here before its first entry. Held, it runs the jobs it is given (none come
  // before a tool does) until the first tool attaches or the VM stops.
  if (holding_.load(std::memory_order_acquire)) {
    vcpu.run_work_until([this] { return !holding_.load(std::memory_order_acquire); });
  }
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(session_mutex_);
    session = session_;
  }
  if (session && !session->closed()) pass_entry_gate(vcpu, *session);
}

bool IntrospectionServer::tool_attached() const {
  std::lock_guard lock(session_mutex_);
  return session_ != nullptr;
}

void IntrospectionServer::run() {
  while (!stopping_.load(std::memory_order_acquire)) {
    auto fd = next_connection();
    if (!fd) break;
    HandshakeOptions options{config_.secret, config_.handshake_timeout, stop_fd_.get()};
    if (auto shook = run_vmm_handshake(fd->get(), config_.identity, options); !shook) {
      spdlog::warn("introspection: refused a tool on {}: {}", config_.endpoint.describe(),
                   shook.error());
      ::shutdown(fd->get(), SHUT_RDWR);
      if (config_.endpoint.role == Endpoint::Role::Connect) {
        pause_unless_stopping(config_.reconnect_interval);
      }
      continue;
    }
    serve(std::move(*fd));
    // unix: reconnects to the tool, but not in a tight loop with a tool that hangs up at once.
    if (config_.endpoint.role == Endpoint::Role::Connect) {
      pause_unless_stopping(config_.reconnect_interval);
    }
  }
}

bool IntrospectionServer::pause_unless_stopping(std::chrono::milliseconds interval) {
  pollfd p{stop_fd_.get(), POLLIN, 0};
  return poll_ms(&p, 1, interval) == 0;
}

std::optional<UniqueFd> IntrospectionServer::next_connection() {
  bool told = false;
  while (!stopping_.load(std::memory_order_acquire)) {
    drain_fd(wake_fd_.get());

    if (listener_) {
      pollfd fds[2] = {{stop_fd_.get(), POLLIN, 0}, {listener_->fd(), POLLIN, 0}};
      if (poll_ms(fds, 2, std::chrono::milliseconds(-1)) < 0) {
        spdlog::error("introspection: poll: {}", std::strerror(errno));
        return std::nullopt;
      }
      if (readable(fds[0])) return std::nullopt;
      if (!readable(fds[1])) continue;
      UniqueFd fd(::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd.valid()) return fd;
      spdlog::warn("introspection: accept on {}: {}", config_.endpoint.describe(),
                   std::strerror(errno));
      continue;
    }

    auto fd = connect_unix(config_.endpoint.path);
    if (fd) return std::move(*fd);
    if (!told) {
      spdlog::info("introspection: no tool listening on {} yet ({}); retrying every {} ms",
                   config_.endpoint.path.string(), std::strerror(fd.error()),
                   config_.reconnect_interval.count());
      told = true;
    }
    if (!pause_unless_stopping(config_.reconnect_interval)) return std::nullopt;
  }
  return std::nullopt;
}

void IntrospectionServer::serve(UniqueFd fd) {
  UniqueFd ended(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ended.valid()) {
    spdlog::error("introspection: eventfd: {}; dropping the tool", std::strerror(errno));
    return;
  }
  auto session = std::make_shared<Session>(std::move(fd), vm_, config_.permissions, event_seq_,
                                           config_.dialect);
  {
    std::lock_guard lock(session_mutex_);
    session_ = session;
    if (holding_.load(std::memory_order_relaxed)) release_held_vcpus(*session);
  }
  spdlog::info("introspection: tool attached on {}", config_.endpoint.describe());

  // The receiving thread of this connection (spec §6.1).
  std::string reason;
  std::thread receiver([&session, &reason, ended_fd = ended.get()] {
    reason = run_receiver(*session);
    signal_fd(ended_fd);
  });

  for (;;) {
    // listen: a second tool is not accepted meanwhile; its connection waits in the backlog and
    // gets its hello once this tool has left (one tool at a time, without racing the close).
    pollfd fds[3] = {
        {ended.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (poll_ms(fds, 3, std::chrono::milliseconds(-1)) < 0) {
      session->close(fmt::format("poll: {}", std::strerror(errno)));
      break;
    }
    if (readable(fds[0])) break;
    if (readable(fds[1])) {
      unhook(*session, ended.get());
      break;
    }
    if (readable(fds[2])) {
      drain_fd(wake_fd_.get());
      if (take_unhook_request(*session)) {
        unhook(*session, ended.get());
        break;
      }
    }
  }

  receiver.join();
  // Every vCPU still waiting on this tool continues as if it had answered CONTINUE, pending
  // pauses and injections are dropped (spec §6.5), and no new event is raised for it.
  session->close(reason);
  release_vcpus(session);
  undo_vm_interceptions(*session);
  {
    std::lock_guard lock(session_mutex_);
    session_.reset();
    unhook_target_ = nullptr;  // asked for a session that is gone: nothing left to unhook
  }
  spdlog::info("introspection: connection closed: {}", reason);
}

void IntrospectionServer::release_held_vcpus(Session& session) {
  const std::uint32_t count = vm_.vcpu_count();
  // The pauses are in place before any vCPU can see that the hold is over.
  for (std::uint32_t i = 0; i < count; ++i) {
    session.vcpu_state(i).pending_pauses.store(1, std::memory_order_release);
  }
  holding_.store(false, std::memory_order_release);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (vmm::VcpuThread* vcpu = vm_.vcpu_thread(i)) {
      vcpu->request_gate();
      vcpu->post([](vmm::VcpuThread&) {});  // wakes a vCPU waiting in before_entry()
    }
  }
  spdlog::info("introspection: the {} held vCPU(s) now wait for the tool in a PAUSE_VCPU event",
               count);
}

void IntrospectionServer::unhook(Session& session, int ended_fd) {
  auto sent = session.send_unhook_event();
  if (!sent) {
    session.close(
        fmt::format("unhook: sending KVMI_EVENT_UNHOOK failed: {}", std::strerror(sent.error())));
    return;
  }
  if (!*sent) {
    session.close("unhooked by the VMM (the tool had not enabled KVMI_EVENT_UNHOOK)");
    return;
  }
  spdlog::info("introspection: sent KVMI_EVENT_UNHOOK; waiting up to {} ms for the tool to close",
               config_.unhook_timeout.count());
  // The tool removes its hooks while the guest runs, then closes (spec §5.4).
  pollfd p{ended_fd, POLLIN, 0};
  if (poll_ms(&p, 1, config_.unhook_timeout) > 0) {
    session.close("unhook: the tool closed the connection after KVMI_EVENT_UNHOOK");
  } else {
    session.close(fmt::format("unhook: the tool did not close within {} ms of KVMI_EVENT_UNHOOK",
                              config_.unhook_timeout.count()));
  }
}

}  // namespace glassbox::introspection
