// The config guide (configs/README.md) and the validator agree: every key the config accepts (the
// schema its reader, writer and validator walk) has a row in the guide's key table, and every key
// the table names is accepted.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "launch/train/config_schema.h"

namespace rn::launch {
namespace {

// Every dotted key of the schema, sections walked.
struct DottedKeys {
  std::string prefix;
  std::set<std::string>* keys;
  template <typename T>
  void field(const char* key, T&) {
    keys->insert(prefix + key);
  }
  template <typename S>
  void section(const char* key, S& s) {
    DottedKeys inner{prefix + key + ".", keys};
    config_schema::visit(s, inner);
  }
};

std::set<std::string> schema_keys() {
  std::set<std::string> keys;
  Config c;
  DottedKeys v{"", &keys};
  config_schema::visit(c, v);
  return keys;
}

// The keys in the first column of the guide's key table (rows under "## Keys").
std::set<std::string> guide_keys(const std::string& path) {
  std::ifstream in(path);
  std::set<std::string> keys;
  bool in_keys = false;
  const std::regex key("`([a-z_0-9]+(\\.[a-z_0-9]+)*)`");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) in_keys = line == "## Keys";
    if (!in_keys || line.rfind("| `", 0) != 0) continue;
    const std::string first = line.substr(2, line.find(" | ") - 2);
    for (std::sregex_iterator m(first.begin(), first.end(), key), end; m != end; ++m)
      keys.insert((*m)[1]);
  }
  return keys;
}

std::string listed(const std::set<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += " " + k;
  return out;
}

TEST(ConfigGuide, NamesEveryKeyTheValidatorAcceptsAndNoOther) {
  const std::string guide = std::string(RN_SOURCE_DIR) + "/configs/README.md";
  const std::set<std::string> documented = guide_keys(guide), accepted = schema_keys();
  ASSERT_GT(documented.size(), 10u) << "no key table in " << guide;
  std::set<std::string> undocumented, unknown;
  for (const auto& k : accepted)
    if (!documented.count(k)) undocumented.insert(k);
  for (const auto& k : documented)
    if (!accepted.count(k)) unknown.insert(k);
  EXPECT_TRUE(undocumented.empty()) << guide << " has no row for:" << listed(undocumented);
  EXPECT_TRUE(unknown.empty()) << guide
                               << " names keys the config does not take:" << listed(unknown);
}

}  // namespace
}  // namespace rn::launch
