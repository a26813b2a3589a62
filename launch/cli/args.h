// Command-line flags of a subcommand: `--name value`, repeatable `--name value`, and `--flag`;
// an unknown or malformed flag is an error that lists the valid ones.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace rn::launch {

struct FlagSpec {
  std::set<std::string> values;    // take one value
  std::set<std::string> repeated;  // take one value, may repeat
  std::set<std::string> switches;  // take none
};

class Args {
 public:
  // `argv` starts after the subcommand name.
  Args(const std::vector<std::string>& argv, const FlagSpec& spec);
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::string required(const std::string& name) const;
  int get_int(const std::string& name, int fallback) const;
  std::vector<std::string> all(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }

 private:
  std::map<std::string, std::vector<std::string>> values_;
};

// "3x224x224" -> {3, 224, 224}; `what` names the flag in errors.
std::vector<int64_t> parse_dims(const std::string& text, size_t count, const std::string& what);

}  // namespace rn::launch
