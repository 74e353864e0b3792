# Common compile flags for every xfer target.
function(xfer_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor -Wno-missing-field-initializers)
  if(XFER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# xfer_test(NAME SOURCES... [LABEL label]) — one GoogleTest executable registered with CTest.
function(xfer_test name)
  cmake_parse_arguments(ARG "" "LABEL" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE xfer GTest::gtest GTest::gtest_main ${ARG_LIBS})
  xfer_target_options(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABEL}")
endfunction()
