#pragma once
// Test helpers: the message of the exception a callable throws; a check that it names the op.
#include <doctest/doctest.h>

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

/// CHECKs that f() throws E whose message names the op ('<op_name>') and its type (the context
/// ops add when built and when run); fails when it throws nothing.
template <class E, class F>
void check_throws_naming(F f, const std::string& op_name, const std::string& op_type) {
  try {
    f();
    FAIL("expected an exception naming '" << op_name << "'");
  } catch (const E& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("'" + op_name + "'") != std::string::npos);
    CHECK(msg.find(op_type) != std::string::npos);
  }
}

}  // namespace kiln::testing
