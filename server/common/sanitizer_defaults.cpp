// Linked into executables of LABELBROKER_SANITIZE builds only (see server/CMakeLists.txt). The
// sanitizer runtimes call these hooks at start-up, so every way of running a binary (ctest, by
// hand, as a child of a test) gets the same settings.

extern "C" {

// libpqxx 6.4 loses the PGresult of a query when the connection breaks mid-query (the server was
// stopped or the backend terminated): libpq allocates it in PQgetResult and libpqxx throws
// broken_connection without PQclear-ing it. It is a direct leak (no pqxx::result ever owned it),
// one per broken connection, seen only in tests that kill connections on purpose.
const char* __lsan_default_suppressions() {
  return "leak:libpq.so.5\n";
}

const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}

}  // extern "C"
