# Guests are freestanding x86-64 ELF images built with the host C compiler. They are built by
# custom commands, not targets, so that host-only flags (sanitizers, PIE) never reach them.
set(GLASSBOX_GUEST_CC ${CMAKE_C_COMPILER})
set(GLASSBOX_GUEST_FLAGS
    -ffreestanding -nostdlib -nostartfiles -static -fno-pie -no-pie -fno-pic
    -mno-red-zone -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables
    -fcf-protection=none -O2 -g -Wall -Wextra -Wl,--build-id=none -Wl,-n
    -Wl,--no-warn-rwx-segments
    -I${PROJECT_SOURCE_DIR}/include)

# glassbox_add_guest(NAME LINKER_SCRIPT file SOURCES files... [FLAGS flags...] [DEPENDS files...])
# Produces ${CMAKE_CURRENT_BINARY_DIR}/NAME.elf and a target guest_NAME built with ALL.
function(glassbox_add_guest NAME)
  cmake_parse_arguments(G "" "LINKER_SCRIPT" "SOURCES;FLAGS;DEPENDS" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${NAME}.elf)
  set(sources)
  foreach(s IN LISTS G_SOURCES)
    list(APPEND sources ${CMAKE_CURRENT_SOURCE_DIR}/${s})
  endforeach()
  set(ld ${CMAKE_CURRENT_SOURCE_DIR}/${G_LINKER_SCRIPT})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${GLASSBOX_GUEST_CC} ${GLASSBOX_GUEST_FLAGS} ${G_FLAGS} -T ${ld} -o ${out} ${sources}
    DEPENDS ${sources} ${ld} ${G_DEPENDS} ${PROJECT_SOURCE_DIR}/include/glassbox/boot/boot_info.h
    COMMENT "Building guest ${NAME}"
    VERBATIM)
  add_custom_target(guest_${NAME} ALL DEPENDS ${out})
  # Every guest, for targets that build a subset of the tests (tests/CMakeLists.txt).
  set_property(GLOBAL APPEND PROPERTY GLASSBOX_GUEST_TARGETS guest_${NAME})
endfunction()
