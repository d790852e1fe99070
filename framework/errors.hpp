#pragma once
// kiln's exception hierarchy (API.md "errors"). Every message names the operation, variable or
// layer involved and the shapes, so that a user can find the line that built it.
#include <stdexcept>
#include <string>

namespace kiln {

/// Base of every error kiln throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Graph-construction mistake with a bad value (Python's ValueError in TF).
class ValueError : public Error {
 public:
  using Error::Error;
};
/// Graph-construction mistake with a wrong type (Python's TypeError in TF).
class TypeError : public Error {
 public:
  using Error::Error;
};
/// Bad values at run time: feed dtype or shape, dead fetches, bad data.
class InvalidArgumentError : public Error {
 public:
  using Error::Error;
};
/// A well-formed name that names nothing.
class NotFoundError : public Error {
 public:
  using Error::Error;
};
/// No gradient registered for an op on a differentiation path.
class LookupError : public Error {
 public:
  using Error::Error;
};
/// Reading a variable before it was initialized.
class FailedPreconditionError : public Error {
 public:
  using Error::Error;
};
/// A combination kiln does not support.
class UnimplementedError : public Error {
 public:
  using Error::Error;
};
/// Memory ran out while an op ran (TF's ResourceExhaustedError, "OOM when allocating").
class ResourceExhaustedError : public Error {
 public:
  using Error::Error;
};
/// A broken internal invariant (a kiln bug): thrown, never aborted.
class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
/// The one place op context is added to errors, at build time and at run time: rethrows the
/// kiln::Error being handled as the same type with `context` appended to its message. With
/// `as_build_error`, an InvalidArgumentError becomes a ValueError (a graph-construction mistake).
/// Must be called inside a catch block.
[[noreturn]] void rethrow_with_context(const std::string& context, bool as_build_error = false);
}  // namespace detail

}  // namespace kiln
