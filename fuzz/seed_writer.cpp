// Writes the receiver_fuzz seed corpus: one input per KVMI message id (well-formed, so the fuzzer
// starts inside every handler rather than having to discover framing), plus the handshake cases
// and the spec §1.5/§1.6 edge cases. Run by hand when the protocol grows; the output is committed
// under fuzz/corpus/receiver/. Usage: receiver_seed_writer DIR
#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "glassbox/kvmi/handshake.h"
#include "glassbox/kvmi/ids.h"
#include "glassbox/kvmi/messages.h"
#include "glassbox/kvmi/names.h"

namespace {

using namespace glassbox;
using Bytes = std::vector<std::uint8_t>;

template <typename T>
void put(Bytes& out, std::size_t offset, T value) {
  if (out.size() < offset + sizeof(T)) out.resize(offset + sizeof(T));
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

Bytes message(std::uint16_t id, const Bytes& payload, std::uint32_t seq, int size_override = -1) {
  Bytes out;
  kvmi::MsgHdr hdr{
      id, static_cast<std::uint16_t>(size_override >= 0 ? size_override : int(payload.size())),
      seq};
  put(out, 0, hdr);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// A request payload for `id` that passes validation, sized per spec §2.5.
Bytes payload_for(std::uint16_t id) {
  using M = kvmi::MessageId;
  Bytes p;
  switch (static_cast<M>(id)) {
    case M::GetVersion:
    case M::VmGetInfo:
    case M::VmGetMaxGfn:
      return p;
    case M::VmCheckCommand:
      put<std::uint16_t>(p, 0, 7);
      put<std::uint16_t>(p, 6, 0);
      return p;
    case M::VmCheckEvent:
      put<std::uint16_t>(p, 0, 9);
      put<std::uint16_t>(p, 6, 0);
      return p;
    case M::VmControlEvents:
      put(p, 0, kvmi::VmControlEvents{0, 1, 0, 0});
      return p;
    case M::VmReadPhysical:
      put(p, 0, kvmi::VmReadPhysical{0x7000, 64});
      return p;
    case M::VmWritePhysical:
      put(p, 0, kvmi::VmWritePhysical{0x8000, 8});
      put<std::uint64_t>(p, 16, 0x5858464f53534c47ull);
      return p;
    case M::VmSetPageAccess:
      put(p, 0, kvmi::VmSetPageAccess{1, 0, 0});
      put(p, 8, kvmi::PageAccessEntry{0x8000, kvmi::kPageAccessR, 0, 0, 0});
      return p;
    case M::EventReply:
      // kvmi_vcpu_hdr, then kvmi_event_reply {action, event, padding}.
      put(p, 0, kvmi::VcpuHdr{0, 0, 0});
      put<std::uint8_t>(p, 8, 0);
      put<std::uint8_t>(p, 9, 1);
      put<std::uint64_t>(p, 10, 0);
      p.resize(16);
      return p;
    default:
      break;
  }
  // vCPU commands: the vCPU header for vCPU 0, then the command's struct with its key fields set.
  put(p, 0, kvmi::VcpuHdr{0, 0, 0});
  switch (static_cast<M>(id)) {
    case M::VcpuGetInfo:
    case M::VcpuGetXsave:
      break;
    case M::VcpuPause:
      put<std::uint8_t>(p, 8, 1);
      p.resize(16);
      break;
    case M::VcpuControlEvents:
      put<std::uint16_t>(p, 8, 3);  // breakpoint
      put<std::uint8_t>(p, 10, 1);
      p.resize(16);
      break;
    case M::VcpuGetRegisters:
      put<std::uint16_t>(p, 8, 1);
      p.resize(16);
      put<std::uint32_t>(p, 16, 0xc0000080);
      break;
    case M::VcpuSetRegisters:
      p.resize(8 + 144);
      break;
    case M::VcpuControlCr:
      put<std::uint8_t>(p, 8, 1);
      put<std::uint32_t>(p, 12, 3);
      break;
    case M::VcpuInjectException:
      put<std::uint8_t>(p, 8, 14);
      put<std::uint64_t>(p, 16, 0xdead000);
      break;
    case M::VcpuControlMsr:
      put<std::uint8_t>(p, 8, 1);
      put<std::uint32_t>(p, 12, 0xc0000082);
      break;
    case M::VcpuControlSinglestep:
      put<std::uint8_t>(p, 8, 1);
      p.resize(16);
      break;
    case M::VcpuTranslateGva:
    case M::VcpuGetMtrrType:
    case M::VcpuGetCpuid:
      put<std::uint64_t>(p, 8, 0x1000);
      break;
    default:
      p.resize(16);
      break;
  }
  return p;
}

Bytes answer(bool with_secret) {
  kvmi::ToolAnswer a{};
  a.struct_size = kvmi::kToolAnswerSize;
  if (with_secret) {
    unsigned len = 0;
    EVP_Digest(fuzz::kFuzzSecret.data(), fuzz::kFuzzSecret.size(), a.cookie_hash, &len, EVP_sha1(),
               nullptr);
  }
  Bytes out;
  put(out, 0, a);
  return out;
}

void append(Bytes& out, const Bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

void write_seed(const std::filesystem::path& dir, const std::string& name, std::uint8_t mode,
                const Bytes& stream) {
  std::ofstream f(dir / name, std::ios::binary);
  f.put(static_cast<char>(mode));
  f.write(reinterpret_cast<const char*>(stream.data()),
          static_cast<std::streamsize>(stream.size()));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  Bytes everything;
  for (std::uint16_t id = 0; id < kvmi::kNumMessages; ++id) {
    Bytes m = message(id, payload_for(id), 100 + id);
    char name[64];
    std::snprintf(name, sizeof name, "id%02u-%s", id,
                  lower(kvmi::message_name(id)).c_str() + std::strlen("kvmi_"));
    write_seed(dir, name, 0, m);
    append(everything, m);
  }
  write_seed(dir, "all-ids-pipelined", 0, everything);

  // The handshake paths (spec §5.3), each followed by a command so success reaches the receiver.
  const Bytes version = message(2, {}, 1);
  Bytes s = answer(false);
  append(s, version);
  write_seed(dir, "hs-no-secret", fuzz::kRunHandshake, s);
  s = answer(true);
  append(s, everything);
  write_seed(dir, "hs-secret-then-all-ids", fuzz::kRunHandshake | fuzz::kRequireSecret, s);
  s = answer(false);
  append(s, version);
  write_seed(dir, "hs-wrong-secret", fuzz::kRunHandshake | fuzz::kRequireSecret, s);
  s = answer(false);
  put<std::uint32_t>(s, 0, 200);  // announces more than it sends
  write_seed(dir, "hs-long-answer-truncated", fuzz::kRunHandshake, s);
  s = answer(false);
  put<std::uint32_t>(s, 0, 8);
  write_seed(dir, "hs-short-answer", fuzz::kRunHandshake, s);

  // Permission checks with only the always-allowed commands.
  write_seed(dir, "perm-none-all-ids", fuzz::kAllowNone, everything);

  // §1.5 / §1.6 edge cases.
  write_seed(dir, "edge-oversized-header", 0, message(2, {}, 1, 8185));
  write_seed(dir, "edge-truncated-header", 0, Bytes{2, 0, 0});
  write_seed(dir, "edge-truncated-payload", 0, message(7, {1, 2, 3}, 1, 16));
  write_seed(dir, "edge-unknown-id-64", 0, message(64, {}, 1));
  write_seed(dir, "edge-unknown-id-ffff", 0, message(0xffff, {0, 0, 0, 0}, 1));
  Bytes padded;
  put<std::uint16_t>(padded, 0, 7);
  put<std::uint16_t>(padded, 2, 1);
  put<std::uint32_t>(padded, 4, 0);
  write_seed(dir, "edge-nonzero-padding", 0, message(3, padded, 1));
  Bytes crossing;
  put(crossing, 0, kvmi::VmReadPhysical{0x7ff8, 16});
  write_seed(dir, "edge-read-crossing-page", 0, message(7, crossing, 1));
  Bytes unbacked;
  put(unbacked, 0, kvmi::VmReadPhysical{fuzz::kGuestMemorySize + 0x1000, 8});
  write_seed(dir, "edge-read-unbacked", 0, message(7, unbacked, 1));
  Bytes short_write;
  put(short_write, 0, kvmi::VmWritePhysical{0x8000, 64});
  write_seed(dir, "edge-write-short-payload", 0, message(8, short_write, 1));
  Bytes big_read;
  put(big_read, 0, kvmi::VmReadPhysical{0x0, 4096});
  Bytes reads;
  for (std::uint32_t i = 0; i < 64; ++i) append(reads, message(7, big_read, i));
  write_seed(dir, "read-64-pages-pipelined", 0, reads);
  Bytes bad_vcpu = payload_for(9);
  put<std::uint16_t>(bad_vcpu, 0, 7);
  write_seed(dir, "edge-vcpu-out-of-range", 0, message(9, bad_vcpu, 1));
  return 0;
}
