#include "vmm/loader/linux_loader.h"

#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace glassbox::vmm {

namespace {

// Offsets in the file and in struct boot_params (the setup header sits at the same place in
// both).
constexpr std::size_t kSetupSects = 0x1f1, kBootFlag = 0x1fe, kJump = 0x200, kHeader = 0x202,
                      kVersion = 0x206, kTypeOfLoader = 0x210, kLoadFlags = 0x211,
                      kRamdiskImage = 0x218, kRamdiskSize = 0x21c, kCmdLinePtr = 0x228,
                      kInitrdAddrMax = 0x22c, kKernelAlignment = 0x230, kRelocatable = 0x234,
                      kXLoadFlags = 0x236, kCmdlineSize = 0x238, kPrefAddress = 0x258,
                      kInitSize = 0x260;
// boot_params outside the setup header.
constexpr std::size_t kAcpiRsdpAddr = 0x070, kExtRamdiskImage = 0x0c0, kExtRamdiskSize = 0x0c4,
                      kExtCmdLinePtr = 0x0c8, kE820Entries = 0x1e8, kE820Table = 0x2d0,
                      kBootParamsSize = 0x1000;
constexpr std::size_t kE820Max = 128;
constexpr std::uint32_t kHdrS = 0x53726448;
constexpr std::uint8_t kLoadedHigh = 0x01;
constexpr std::uint16_t kXlfKernel64 = 0x01;
constexpr std::uint64_t kEntry64Offset = 0x200;

template <typename T>
T get(std::span<const std::uint8_t> b, std::size_t at) {
  T v{};
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

template <typename T>
void put(std::span<std::uint8_t> b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

std::expected<std::vector<std::uint8_t>, std::string> read_file(const std::filesystem::path& path,
                                                                const std::string& what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::unexpected(fmt::format("cannot open {} {}", what, path.string()));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                  std::istreambuf_iterator<char>());
  if (file.bad()) return std::unexpected(fmt::format("cannot read {} {}", what, path.string()));
  return bytes;
}

std::expected<std::pair<std::vector<std::uint8_t>, LinuxImage>, std::string> read_image(
    const std::filesystem::path& path) {
  auto bytes = read_file(path, "kernel");
  if (!bytes) return std::unexpected(bytes.error());
  auto image = parse_linux_image(*bytes, path.string());
  if (!image) return std::unexpected(image.error());
  return std::pair{std::move(*bytes), *image};
}

}  // namespace

bool looks_like_bzimage(std::span<const std::uint8_t> bytes) {
  return bytes.size() >= kHeader + 4 && get<std::uint16_t>(bytes, kBootFlag) == 0xaa55 &&
         get<std::uint32_t>(bytes, kHeader) == kHdrS;
}

std::expected<LinuxImage, std::string> parse_linux_image(std::span<const std::uint8_t> bytes,
                                                         const std::string& name) {
  if (!looks_like_bzimage(bytes)) {
    return std::unexpected(
        fmt::format("{} is not a Linux bzImage (no boot flag 0xAA55 and \"HdrS\" header)", name));
  }
  LinuxImage image;
  image.protocol = get<std::uint16_t>(bytes, kVersion);
  if (image.protocol < 0x020c) {
    return std::unexpected(fmt::format(
        "{} uses boot protocol {}.{:02}; glassbox needs 2.12 or newer (Linux 3.8+) for the 64-bit "
        "entry point",
        name, image.protocol >> 8, image.protocol & 0xff));
  }
  if (bytes.size() < kInitSize + 4) {
    return std::unexpected(fmt::format("{} is truncated inside its setup header", name));
  }
  const auto xloadflags = get<std::uint16_t>(bytes, kXLoadFlags);
  if (!(xloadflags & kXlfKernel64)) {
    return std::unexpected(fmt::format(
        "{} has no 64-bit entry point (XLF_KERNEL_64 clear): it is a 32-bit-only kernel; boot an "
        "x86-64 kernel",
        name));
  }
  if (!(bytes[kLoadFlags] & kLoadedHigh)) {
    return std::unexpected(
        fmt::format("{} is a zImage that loads low; glassbox boots bzImages", name));
  }
  const std::uint64_t sects = bytes[kSetupSects] == 0 ? 4 : bytes[kSetupSects];
  image.setup_bytes = (sects + 1) * 512;
  if (image.setup_bytes >= bytes.size()) {
    return std::unexpected(
        fmt::format("{} is truncated: {} bytes of setup code and no kernel after them", name,
                    image.setup_bytes));
  }
  image.pref_address = get<std::uint64_t>(bytes, kPrefAddress);
  image.init_size = get<std::uint32_t>(bytes, kInitSize);
  image.initrd_addr_max = get<std::uint32_t>(bytes, kInitrdAddrMax);
  image.cmdline_size = get<std::uint32_t>(bytes, kCmdlineSize);
  image.kernel_alignment = get<std::uint32_t>(bytes, kKernelAlignment);
  image.relocatable = bytes[kRelocatable] != 0;
  image.header_end = kHeader + static_cast<std::uint8_t>(bytes[kJump + 1]);
  if (image.header_end <= kHeader ||
      image.header_end > std::min<std::size_t>(bytes.size(), 0x290)) {
    return std::unexpected(fmt::format("{} has a corrupt setup header (length)", name));
  }
  if (image.pref_address < 0x100000 || image.pref_address % 4096 != 0) {
    return std::unexpected(
        fmt::format("{} has a corrupt preferred load address {:#x}", name, image.pref_address));
  }
  const std::uint64_t payload = bytes.size() - image.setup_bytes;
  if (image.init_size < payload) {
    return std::unexpected(
        fmt::format("{} is corrupt: init_size {:#x} is smaller than its {} bytes of kernel", name,
                    image.init_size, payload));
  }
  return image;
}

std::expected<std::uint64_t, std::string> linux_kernel_memory_end(
    const std::filesystem::path& path) {
  auto image = read_image(path);
  if (!image) return std::unexpected(image.error());
  return image->second.pref_address + image->second.init_size;
}

std::expected<LoadedLinux, std::string> load_linux_kernel(const LinuxBootRequest& request,
                                                          GuestMemory& memory) {
  auto read = read_image(request.kernel);
  if (!read) return std::unexpected(read.error());
  const auto& [bytes, image] = *read;
  const std::span<const std::uint8_t> file(bytes);

  LoadedLinux loaded;
  loaded.kernel_gpa = image.pref_address;
  const std::uint64_t kernel_end = image.pref_address + image.init_size;
  if (!memory.contains(loaded.kernel_gpa, image.init_size)) {
    return std::unexpected(fmt::format(
        "{} needs RAM up to {} MiB while it boots (loaded at {:#x}, init_size {:#x}); give "
        "--memory {}M or more",
        request.kernel.string(), (kernel_end + (1 << 20) - 1) >> 20, loaded.kernel_gpa,
        image.init_size, ((kernel_end + (1 << 20) - 1) >> 20) + 32));
  }
  const auto kernel = file.subspan(image.setup_bytes);
  memory.write(loaded.kernel_gpa, kernel.data(), kernel.size());
  loaded.entry_gpa = loaded.kernel_gpa + kEntry64Offset;

  if (request.cmdline.size() > image.cmdline_size) {
    return std::unexpected(fmt::format("--cmdline: {} bytes is longer than {} allows ({} bytes)",
                                       request.cmdline.size(), request.kernel.string(),
                                       image.cmdline_size));
  }
  memory.write(kLinuxCmdlineGpa, request.cmdline.c_str(), request.cmdline.size() + 1);

  std::vector<std::uint8_t> params(kBootParamsSize, 0);
  std::span<std::uint8_t> zero_page(params);
  std::memcpy(params.data() + kSetupSects, file.data() + kSetupSects,
              image.header_end - kSetupSects);
  zero_page[kTypeOfLoader] = 0xff;  // an unregistered boot loader
  put<std::uint32_t>(zero_page, kCmdLinePtr, static_cast<std::uint32_t>(kLinuxCmdlineGpa));
  put<std::uint32_t>(zero_page, kExtCmdLinePtr, 0);
  put<std::uint64_t>(zero_page, kAcpiRsdpAddr, request.acpi_rsdp_gpa);

  if (request.initrd) {
    auto initrd = read_file(*request.initrd, "initrd");
    if (!initrd) return std::unexpected("--initrd: " + initrd.error());
    if (initrd->empty()) {
      return std::unexpected(
          fmt::format("--initrd {}: the file is empty", request.initrd->string()));
    }
    // As high as the kernel allows, page aligned, above what the kernel occupies while booting.
    std::uint64_t top =
        std::min<std::uint64_t>(memory.size(), std::uint64_t{image.initrd_addr_max} + 1);
    const std::uint64_t size = initrd->size();
    const std::uint64_t at = top > size ? (top - size) & ~0xfffULL : 0;
    if (at < kernel_end) {
      return std::unexpected(fmt::format(
          "--initrd {}: {} MiB do not fit between the kernel (up to {} MiB) and the end of RAM; "
          "give more --memory",
          request.initrd->string(), (size + (1 << 20) - 1) >> 20, kernel_end >> 20));
    }
    memory.write(at, initrd->data(), size);
    loaded.initrd_gpa = at;
    loaded.initrd_size = size;
    put<std::uint32_t>(zero_page, kRamdiskImage, static_cast<std::uint32_t>(at));
    put<std::uint32_t>(zero_page, kRamdiskSize, static_cast<std::uint32_t>(size));
    put<std::uint32_t>(zero_page, kExtRamdiskImage, static_cast<std::uint32_t>(at >> 32));
    put<std::uint32_t>(zero_page, kExtRamdiskSize, static_cast<std::uint32_t>(size >> 32));
  }

  if (request.e820.size() > kE820Max) return std::unexpected("too many e820 entries");
  zero_page[kE820Entries] = static_cast<std::uint8_t>(request.e820.size());
  for (std::size_t i = 0; i < request.e820.size(); ++i) {
    const auto& e = request.e820[i];
    const std::size_t at = kE820Table + i * 20;
    put<std::uint64_t>(zero_page, at, e.addr);
    put<std::uint64_t>(zero_page, at + 8, e.size);
    put<std::uint32_t>(zero_page, at + 16, e.type);
  }
  memory.write(kLinuxBootParamsGpa, params.data(), params.size());
  loaded.boot_params_gpa = kLinuxBootParamsGpa;
  return loaded;
}

}  // namespace glassbox::vmm
