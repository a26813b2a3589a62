// The message of the rn::Error a call throws: what the error-path tests compare.
#pragma once

#include <functional>
#include <string>

#include "core/check.h"

namespace rn::test {

// The message of the rn::Error that `fn` throws, or "" when it throws none (another exception
// goes through, and fails the test).
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace rn::test
