# Installing and packaging: the man pages and shell completion scripts,
# made at build time by the built programs from their own command-line
# parsers (xfer --help-man, xferd --help-man, xfer completion SHELL), the
# install layout, and a .deb through CPack:
#
#   cmake --build build --target package     # build/xfer_<version>_<arch>.deb
#
# The .deb holds /usr/bin/xfer and xferd, their man pages, the bash, zsh and
# fish completions, the hardened systemd unit of docs/server.md
# (packaging/xferd.service) and a postinst that creates the xferd user.

include(GNUInstallDirs)

set(XFER_GENERATED_DIR ${CMAKE_BINARY_DIR}/generated)

# xfer_generate(OUTPUT TARGET ARGS...): OUTPUT (under generated/) is what
# TARGET prints when run with ARGS.
function(xfer_generate output target)
  add_custom_command(
    OUTPUT ${XFER_GENERATED_DIR}/${output}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${XFER_GENERATED_DIR}
    COMMAND ${CMAKE_COMMAND} -DOUT=${XFER_GENERATED_DIR}/${output}
            -P ${PROJECT_SOURCE_DIR}/cmake/run_to_file.cmake -- $<TARGET_FILE:${target}> ${ARGN}
    DEPENDS ${target} ${PROJECT_SOURCE_DIR}/cmake/run_to_file.cmake
    COMMENT "Generating ${output}"
    VERBATIM)
endfunction()

xfer_generate(xfer.1 xfer_cli --help-man)
xfer_generate(xferd.1 xferd --help-man)
# Installed compressed, as Debian's policy asks (man reads them as they are).
find_program(XFER_GZIP gzip REQUIRED)
foreach(page xfer.1 xferd.1)
  add_custom_command(
    OUTPUT ${XFER_GENERATED_DIR}/${page}.gz
    COMMAND ${CMAKE_COMMAND} -DOUT=${XFER_GENERATED_DIR}/${page}.gz
            -P ${PROJECT_SOURCE_DIR}/cmake/run_to_file.cmake -- ${XFER_GZIP} -9 -n -c ${page}
    WORKING_DIRECTORY ${XFER_GENERATED_DIR}
    DEPENDS ${XFER_GENERATED_DIR}/${page}
    VERBATIM)
endforeach()
xfer_generate(xfer.bash xfer_cli completion bash)
xfer_generate(_xfer xfer_cli completion zsh)
xfer_generate(xfer.fish xfer_cli completion fish)
add_custom_target(xfer_docs ALL
  DEPENDS ${XFER_GENERATED_DIR}/xfer.1.gz ${XFER_GENERATED_DIR}/xferd.1.gz
          ${XFER_GENERATED_DIR}/xfer.bash ${XFER_GENERATED_DIR}/_xfer
          ${XFER_GENERATED_DIR}/xfer.fish)

install(TARGETS xfer_cli xferd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${XFER_GENERATED_DIR}/xfer.1.gz ${XFER_GENERATED_DIR}/xferd.1.gz
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${XFER_GENERATED_DIR}/xfer.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME xfer)
install(FILES ${XFER_GENERATED_DIR}/_xfer DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES ${XFER_GENERATED_DIR}/xfer.fish
        DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)
# The unit as docs/server.md shows it (ExecStart=/usr/bin/xferd), with
# ExecStart following the prefix it is installed under (/usr for the .deb,
# /usr/local/bin/xferd for a plain `cmake --install`). systemd reads units
# from PREFIX/lib/systemd/system for /usr and /usr/local.
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/packaging/xferd.service\" unit)
  string(REPLACE \"ExecStart=/usr/bin/xferd\"
                 \"ExecStart=\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/xferd\" unit \"\${unit}\")
  set(dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  message(STATUS \"Installing: \${dir}/xferd.service\")
  file(MAKE_DIRECTORY \"\${dir}\")
  file(WRITE \"\${dir}/xferd.service\" \"\${unit}\")
")

set(XFER_PACKAGE_MAINTAINER "xfer maintainers <xfer@example.invalid>"
    CACHE STRING "The Maintainer line of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME xfer)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${XFER_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "fast, verifiable file transfer (xfer and the xferd server)")
set(CPACK_PACKAGE_DESCRIPTION
    "xfer copies files and trees between local folders and xfer servers over parallel streams, \
verifies what it wrote and resumes an interrupted copy where it stopped. xferd serves one \
folder to xfer clients with scoped tokens, TLS and server-run jobs; a hardened systemd unit \
is included (not enabled: configure /etc/xferd/xferd.toml first).")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends from the binaries' libraries (dpkg-shlibdeps)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/packaging/postinst)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install under DESTDIR with the real prefix, so the unit's ExecStart is
# /usr/bin/xferd rather than the staging folder.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX ${CPACK_PACKAGING_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)  # the debug info stays in the build tree
include(CPack)
