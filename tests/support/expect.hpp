#pragma once
// message_of<E>(f): the message of the E that f() throws, or a marker string when it throws
// nothing (another exception type propagates, failing the test with its own message).
#include <string>

namespace kiln::testing {

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception of the expected type>";
}

}  // namespace kiln::testing
