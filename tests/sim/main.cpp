// Our own main: Debian's Catch2WithMain is built without benchmarking support.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
