// Array (framework/array.hpp): values that own their buffer, and views of a run's arena, which
// kernels read and write like any value and which are copied before they could leave the executor.
#include <doctest/doctest.h>

#include <cstddef>
#include <memory>
#include <new>

#include <kiln.hpp>

#include "tests/support/approx.hpp"
#include "tests/support/messages.hpp"

using namespace kiln;
using kiln::testing::contains;

namespace {

// An arena of `bytes` bytes, aligned like the executor's.
std::shared_ptr<std::byte> arena(std::size_t bytes) {
  constexpr std::align_val_t align{64};
  return {static_cast<std::byte*>(::operator new(bytes, align)),
          [](std::byte* p) { ::operator delete(p, align); }};
}

}  // namespace

TEST_CASE("array.a_view_of_an_arena_reads_and_writes_its_region") {
  const auto memory = arena(256);
  Array a = arena_array(memory, 64, float32, 6);
  CHECK(a.is_view());
  CHECK(a.dtype() == float32);
  CHECK(a.shape() == Shape{6});
  CHECK(a.data() == memory.get() + 64);

  // A kernel writes it with its output's dims, in place: the region is the view's.
  const auto w = a.writable<float>(std::vector<std::size_t>{2, 3});
  CHECK(static_cast<const void*>(w.data()) == memory.get() + 64);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i);
  CHECK(a.shape() == Shape{2, 3});
  CHECK(a.size() == 6);
  CHECK(a.fits(Shape{-1, 3}));
  CHECK(a.view<float>()[5] == 5.F);
  CHECK(a.to_double()(1, 2) == 5.0);

  // The memory stays while a view of it does.
  std::weak_ptr<std::byte> alive = memory;
  {
    const auto local = arena(64);
    alive = local;
    Array v = arena_array(local, 0, int32, 4);
    CHECK(!alive.expired());
  }
  CHECK(alive.expired());
}

TEST_CASE("array.a_view_never_passes_as_an_owned_array") {
  const auto memory = arena(64);
  Array a = arena_array(memory, 0, float32, 3);
  const auto w = a.writable<float>(std::vector<std::size_t>{3});
  w[0] = 1.F, w[1] = 2.F, w[2] = 3.F;

  // as<T>() hands out the owning container, which a view has not: InternalError, not a wrong value.
  CHECK(contains(kiln::testing::message_of<InternalError>([&] { (void)a.as<float>(); }),
                 "view of a run's memory"));
  CHECK_THROWS_AS((void)a.view<double>(), InvalidArgumentError);  // the dtype check comes first

  // A copy (what the executor hands the caller) owns its elements and keeps them when the region
  // is written again.
  Array copy;
  copy_into(copy, a);
  CHECK(!copy.is_view());
  w[0] = 7.F;
  CHECK(copy.as<float>() == xt::xarray<float>{1.F, 2.F, 3.F});

  // Writing a shared view copies first (into a buffer of its own), as for any shared Array.
  Array shared = a;
  const auto mine = shared.writable<float>(std::vector<std::size_t>{3});
  mine[1] = -1.F;
  CHECK(!shared.is_view());
  CHECK(a.view<float>()[1] == 2.F);
  CHECK(shared.as<float>() == xt::xarray<float>{7.F, -1.F, 3.F});

  // mutable_as: the same, even when no one shares the view.
  Array alone = arena_array(memory, 32, float32, 2);
  alone.writable<float>(std::vector<std::size_t>{2})[0] = 4.F;
  auto& owned = alone.mutable_as<float>();
  CHECK(!alone.is_view());
  CHECK(owned(0) == 4.F);
  CHECK(static_cast<const void*>(owned.data()) != memory.get() + 32);
}
