#include "framework/errors.hpp"

namespace kiln::detail {

void rethrow_with_context(const std::string& context, bool as_build_error) {
  const auto msg = [&](const std::exception& e) { return std::string(e.what()) + context; };
  try {
    throw;
  } catch (const TypeError& e) {
    throw TypeError(msg(e));
  } catch (const ValueError& e) {
    throw ValueError(msg(e));
  } catch (const InvalidArgumentError& e) {
    if (as_build_error) throw ValueError(msg(e));
    throw InvalidArgumentError(msg(e));
  } catch (const NotFoundError& e) {
    throw NotFoundError(msg(e));
  } catch (const LookupError& e) {
    throw LookupError(msg(e));
  } catch (const FailedPreconditionError& e) {
    throw FailedPreconditionError(msg(e));
  } catch (const UnimplementedError& e) {
    throw UnimplementedError(msg(e));
  } catch (const ResourceExhaustedError& e) {
    throw ResourceExhaustedError(msg(e));
  } catch (const InternalError& e) {
    throw InternalError(msg(e));
  } catch (const Error& e) {
    throw Error(msg(e));
  }
}

}  // namespace kiln::detail
