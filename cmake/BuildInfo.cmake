# Generates build_info.cpp (version + git commit) on every build, rewriting it only when the
# commit changes, so /v1/version never reports a stale commit and unchanged builds stay no-ops.
set(LB_BUILD_INFO_CPP "${CMAKE_BINARY_DIR}/generated/build_info.cpp")
add_custom_target(lb_build_info_gen
  COMMAND ${CMAKE_COMMAND}
    -D SOURCE_DIR=${CMAKE_SOURCE_DIR}
    -D OUTPUT=${LB_BUILD_INFO_CPP}
    -D VERSION=${PROJECT_VERSION}
    -P ${CMAKE_SOURCE_DIR}/cmake/write_build_info.cmake
  BYPRODUCTS ${LB_BUILD_INFO_CPP}
  COMMENT "Recording git commit in build info")
