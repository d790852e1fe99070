// Fails when a differentiable op type of the registry has no gradient check anywhere in the suite
// (the runtime form of ggml's static_assert on its op count). Runs after every other test case.
#include <doctest/doctest.h>

#include <string>

#include "autodiff/gradient_checker.hpp"
#include "framework/op_registry.hpp"

TEST_CASE("coverage.every_differentiable_op_has_a_gradient_check") {
  const auto& checked = kiln::gradient_checked_op_types();
  std::string missing;
  for (const kiln::OpDef* d : kiln::op_registry().all())
    if (d->gradient && !checked.count(d->type)) missing += " " + d->type;
  INFO("differentiable ops without a gradient check:" << missing);
  CHECK(missing.empty());
}
