#pragma once
// Test helper: the message of an expected exception.
#include <string>

namespace kiln::testing {

/// The message of the E that f() throws, or "<nothing thrown>".
template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

}  // namespace kiln::testing
