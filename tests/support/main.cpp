// The test runner. With no arguments it runs every test case, then the registry coverage test
// ("coverage.*") once all gradient checks have run; with arguments it behaves like doctest's main.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

int main(int argc, char** argv) {
  doctest::Context all(argc, argv);
  if (argc > 1) return all.run();
  all.addFilter("test-case-exclude", "coverage.*");
  const int first = all.run();
  doctest::Context coverage(argc, argv);
  coverage.addFilter("test-case", "coverage.*");
  const int second = coverage.run();
  return first != 0 ? first : second;
}
