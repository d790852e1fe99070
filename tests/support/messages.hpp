#pragma once
// Test helper: the message of the exception a callable throws.
#include <string>
#include <utility>

namespace kiln::testing {

/// The what() of the exception of type E that f() throws; a marker string when it throws nothing
/// (another exception type propagates, so the test fails on it).
template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(nothing thrown as the expected type)";
}

/// message_of under the name the optimizer, schedule and saver tests use.
template <class E, class F>
std::string error_of(F f) {
  return message_of<E>(std::move(f));
}

}  // namespace kiln::testing
