#include "vmm/loader/elf_loader.h"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

namespace glassbox::vmm {

namespace {

struct ElfImage {
  std::vector<char> bytes;
  Elf64_Ehdr header{};
  std::vector<Elf64_Phdr> loads;
};

std::expected<ElfImage, std::string> read_elf(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::unexpected(fmt::format("cannot open {}", path.string()));
  ElfImage image;
  image.bytes.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  const auto& bytes = image.bytes;
  if (bytes.size() < EI_NIDENT || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) {
    return std::unexpected(fmt::format("{} is not an ELF file", path.string()));
  }
  if (bytes[EI_CLASS] != ELFCLASS64) {
    return std::unexpected(fmt::format(
        "{} is a 32-bit ELF; glassbox boots 64-bit (ELF64) x86-64 kernels", path.string()));
  }
  if (bytes.size() < sizeof(Elf64_Ehdr)) {
    return std::unexpected(fmt::format("{} is truncated (no complete ELF header)", path.string()));
  }
  std::memcpy(&image.header, bytes.data(), sizeof(Elf64_Ehdr));
  const auto& h = image.header;
  if (h.e_ident[EI_DATA] != ELFDATA2LSB || h.e_machine != EM_X86_64) {
    return std::unexpected(fmt::format("{} is not an x86-64 little-endian ELF", path.string()));
  }
  if (h.e_type != ET_EXEC) {
    return std::unexpected(fmt::format(
        "{} is not an executable ELF (type {}); link the kernel statically at fixed addresses",
        path.string(), h.e_type));
  }
  if (h.e_phentsize != sizeof(Elf64_Phdr) ||
      h.e_phoff + std::uint64_t{h.e_phnum} * sizeof(Elf64_Phdr) > bytes.size()) {
    return std::unexpected(fmt::format("{} has a corrupt program header table", path.string()));
  }
  for (int i = 0; i < h.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes.data() + h.e_phoff + i * sizeof(Elf64_Phdr), sizeof ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz || ph.p_offset + ph.p_filesz > bytes.size() ||
        ph.p_paddr + ph.p_memsz < ph.p_paddr) {
      return std::unexpected(fmt::format(
          "{}: segment {} is corrupt (sizes or offsets out of range)", path.string(), i));
    }
    image.loads.push_back(ph);
  }
  if (image.loads.empty()) {
    return std::unexpected(fmt::format("{} has no loadable segment", path.string()));
  }
  return image;
}

}  // namespace

std::expected<std::uint64_t, std::string> elf_kernel_memory_end(const std::filesystem::path& path) {
  auto image = read_elf(path);
  if (!image) return std::unexpected(image.error());
  std::uint64_t end = 0;
  for (const auto& ph : image->loads) end = std::max(end, ph.p_paddr + ph.p_memsz);
  return end;
}

std::expected<LoadedKernel, std::string> load_elf_kernel(const std::filesystem::path& path,
                                                         GuestMemory& memory,
                                                         std::uint64_t min_gpa) {
  auto image = read_elf(path);
  if (!image) return std::unexpected(image.error());
  LoadedKernel loaded;
  loaded.lowest_gpa = UINT64_MAX;
  bool entry_found = false;
  for (const auto& ph : image->loads) {
    if (ph.p_paddr < min_gpa) {
      return std::unexpected(fmt::format(
          "{}: a segment loads at {:#x}, below {:#x} where glassbox keeps boot structures",
          path.string(), ph.p_paddr, min_gpa));
    }
    auto dest = memory.span(ph.p_paddr, ph.p_memsz);
    if (dest.empty()) {
      return std::unexpected(fmt::format(
          "{}: a segment at {:#x}..{:#x} lies outside guest RAM ({} MiB); raise --memory",
          path.string(), ph.p_paddr, ph.p_paddr + ph.p_memsz, memory.size() >> 20));
    }
    std::memcpy(dest.data(), image->bytes.data() + ph.p_offset, ph.p_filesz);
    std::memset(dest.data() + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    loaded.lowest_gpa = std::min(loaded.lowest_gpa, ph.p_paddr);
    loaded.highest_gpa = std::max(loaded.highest_gpa, ph.p_paddr + ph.p_memsz);
    const auto entry = image->header.e_entry;
    if (!entry_found && entry >= ph.p_vaddr && entry - ph.p_vaddr < ph.p_memsz) {
      loaded.entry_gpa = entry - ph.p_vaddr + ph.p_paddr;
      entry_found = true;
    }
  }
  if (!entry_found) {
    return std::unexpected(fmt::format("{}: the entry point {:#x} lies in no loadable segment",
                                       path.string(), image->header.e_entry));
  }
  return loaded;
}

}  // namespace glassbox::vmm
