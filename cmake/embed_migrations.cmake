# Turns schema/NNNN_name.sql files into a C++ table so the binary carries its own migrations
# (no schema directory to ship or to get out of step with the binary).
file(GLOB files "${SCHEMA_DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  get_filename_component(fname "${f}" NAME_WE)
  if(NOT fname MATCHES "^([0-9][0-9][0-9][0-9])_([a-z0-9_]+)$")
    message(FATAL_ERROR "migration file name must be NNNN_name.sql: ${f}")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  file(READ "${f}" sql)
  string(FIND "${sql}" ")lbsql\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )lbsql\"")
  endif()
  string(APPEND body "    {${version}, \"${name}\", R\"lbsql(${sql})lbsql\"},\n")
endforeach()
set(content "// Generated from schema/*.sql by cmake/embed_migrations.cmake; do not edit.
#include \"db/migrations.hpp\"
namespace labelbroker::db {
const std::vector<Migration>& builtin_migrations() {
  static const std::vector<Migration> migrations = {
${body}  };
  return migrations;
}
}  // namespace labelbroker::db
")
# Runs only when a schema file changed, so the output is always rewritten.
file(WRITE "${OUTPUT}" "${content}")
