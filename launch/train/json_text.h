// Text inside JSON strings, for the reports that commands and the ensemble scorer print.
#pragma once

#include <string>

namespace rn::launch {

// `s` as the inside of a JSON string (quotes, backslashes and control characters escaped).
std::string json_escape(const std::string& s);

}  // namespace rn::launch
