// Flag parsing for the subcommands.
#include "launch/cli/args.h"

#include <charconv>

#include "core/check.h"

namespace rn::launch {

namespace {
std::string list_flags(const FlagSpec& s) {
  std::string out;
  for (const auto* set : {&s.values, &s.repeated, &s.switches})
    for (const auto& n : *set) out += (out.empty() ? "--" : ", --") + n;
  return out;
}
}  // namespace

Args::Args(const std::vector<std::string>& argv, const FlagSpec& spec) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0)
      RN_FAIL("unexpected argument '" << a << "'; flags: " << list_flags(spec));
    std::string name = a.substr(2), value;
    const bool inline_value = name.find('=') != std::string::npos;
    if (inline_value) {
      value = name.substr(name.find('=') + 1);
      name = name.substr(0, name.find('='));
    }
    if (spec.switches.count(name)) {
      if (inline_value) RN_FAIL("--" << name << " takes no value");
      values_[name].push_back("");
      continue;
    }
    const bool one = spec.values.count(name), many = spec.repeated.count(name);
    if (!one && !many) RN_FAIL("unknown flag --" << name << "; flags: " << list_flags(spec));
    if (!inline_value) {
      if (i + 1 >= argv.size()) RN_FAIL("--" << name << " needs a value");
      value = argv[++i];
    }
    if (one && values_.count(name)) RN_FAIL("--" << name << " given twice");
    values_[name].push_back(value);
  }
}

bool Args::has(const std::string& name) const {
  return values_.count(name) > 0;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.front();
}

std::string Args::required(const std::string& name) const {
  if (!has(name)) RN_FAIL("--" << name << " is required");
  return get(name);
}

int Args::get_int(const std::string& name, int fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  int out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size())
    RN_FAIL("--" << name << " must be an integer, got '" << v << "'");
  return out;
}

std::vector<std::string> Args::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<int64_t> parse_dims(const std::string& text, size_t count, const std::string& what) {
  std::vector<int64_t> dims;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('x', start);
    if (end == std::string::npos) end = text.size();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + end, v);
    if (ec != std::errc() || p != text.data() + end || v <= 0)
      RN_FAIL(what << " must be " << count
                   << " positive integers joined by 'x' (e.g. 3x224x224), got '" << text << "'");
    dims.push_back(v);
    start = end + 1;
  }
  if (dims.size() != count)
    RN_FAIL(what << " must be " << count << " positive integers joined by 'x', got '" << text
                 << "'");
  return dims;
}

}  // namespace rn::launch
