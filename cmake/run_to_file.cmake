# cmake -DOUT=FILE -P run_to_file.cmake -- PROGRAM ARGS...
# Runs PROGRAM with ARGS and writes its standard output to FILE; fails the
# build when it fails. The programs run as a user would, with no config
# file of the builder's (XFER_CONFIG points nowhere).
set(args "")
set(seen_dashes FALSE)
foreach(i RANGE 1 ${CMAKE_ARGC})
  if(i EQUAL CMAKE_ARGC)
    break()
  endif()
  if(seen_dashes)
    list(APPEND args "${CMAKE_ARGV${i}}")
  elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
    set(seen_dashes TRUE)
  endif()
endforeach()
set(ENV{XFER_CONFIG} "${OUT}.no-config.toml")
execute_process(COMMAND ${args} OUTPUT_FILE "${OUT}.tmp" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE "${OUT}.tmp")
  message(FATAL_ERROR "${args}: exit status ${rc}")
endif()
file(RENAME "${OUT}.tmp" "${OUT}")
